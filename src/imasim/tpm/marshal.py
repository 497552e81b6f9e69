"""TPM 2.0 Part 2 structures used by quotes: marshal and unmarshal, big-endian.

TPMS_ATTEST (with TPMS_CLOCK_INFO and TPMS_QUOTE_INFO), TPML_PCR_SELECTION,
TPMT_SIGNATURE and TPMT_PUBLIC / TPM2B_PUBLIC for RSA and ECC signing keys. Every
``parse_*`` raises only :class:`~imasim.errors.ParseError` (with the byte offset).

>>> sel = PcrSelection({HashAlgorithm.SHA256: (0, 7, 10)})
>>> sel.to_bytes().hex()
'00000001000b03810400'
>>> parse_pcr_selection(sel.to_bytes()) == sel
True
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from .._wire import Reader, Writer
from ..algorithms import HashAlgorithm
from ..errors import ParseError, UnsupportedAlgorithmError

__all__ = [
    "TPM_GENERATED_VALUE",
    "TPM_ST_ATTEST_QUOTE",
    "Attest",
    "BankSelection",
    "ClockInfo",
    "PcrSelection",
    "PublicArea",
    "SigScheme",
    "Signature",
    "parse_attest",
    "parse_pcr_selection",
    "parse_public",
    "parse_signature",
]

TPM_GENERATED_VALUE: Final = 0xFF544347
TPM_ST_ATTEST_QUOTE: Final = 0x8018
TPM_ALG_RSA: Final = 0x0001
TPM_ALG_ECC: Final = 0x0023
TPM_ALG_NULL: Final = 0x0010
TPM_ECC_NIST_P256: Final = 0x0003
#: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign
AK_ATTRIBUTES: Final = 0x00050072
PCR_SELECT_SIZE: Final = 3
NUM_PCRS: Final = 24


class SigScheme(enum.IntEnum):
    """TPM_ALG_ID of the signature schemes imasim signs and verifies."""

    RSASSA = 0x0014
    RSAPSS = 0x0016
    ECDSA = 0x0018


def _hash_alg(r: Reader, field_name: str) -> HashAlgorithm:
    start = r.offset
    alg_id = r.u16(field_name)
    try:
        return HashAlgorithm.from_tpm_alg_id(alg_id)
    except UnsupportedAlgorithmError:
        raise ParseError(f"unknown hash algorithm {alg_id:#06x}", offset=start,
                         field=field_name) from None


class BankSelection(NamedTuple):
    """One TPMS_PCR_SELECTION as written: a bank, its PCRs (ascending) and sizeofSelect.

    A TPML_PCR_SELECTION is a sequence of these, in order and duplicates kept, which is
    what a quote's pcrDigest follows (:class:`PcrSelection` merges a bank named twice).
    """

    alg: HashAlgorithm
    pcrs: tuple[int, ...]
    size_of_select: int = PCR_SELECT_SIZE

    def __str__(self) -> str:
        return f"{self.alg.kernel_name}:{','.join(map(str, self.pcrs)) or 'none'}"


def read_bank_selections(r: Reader, *, max_select: int = 4) -> tuple[BankSelection, ...]:
    """Read a TPML_PCR_SELECTION (in ``r``'s byte order) entry by entry, duplicates kept."""
    count = r.u32("pcrSelections.count")
    if count > 16:
        raise ParseError("too many PCR selections", offset=r.offset - 4,
                         field="pcrSelections.count", expected="<= 16", actual=count)
    out: list[BankSelection] = []
    for _ in range(count):
        alg = _hash_alg(r, "pcrSelections.hash")
        size = r.u8("sizeofSelect")
        if size > max_select:
            raise ParseError("sizeofSelect above TPM2_PCR_SELECT_MAX", offset=r.offset - 1,
                             field="sizeofSelect", expected=f"<= {max_select}", actual=size)
        bitmap = r.take(size, "pcrSelect")
        out.append(BankSelection(alg, _bits(bitmap), size))
    return tuple(out)


def _bits(bitmap: bytes) -> tuple[int, ...]:
    return tuple(i for i in range(len(bitmap) * 8) if bitmap[i // 8] >> (i % 8) & 1)


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """TPML_PCR_SELECTION: banks in order, each with its selected PCR indices (ascending)."""

    banks: Mapping[HashAlgorithm, tuple[int, ...]]
    size_of_select: int = PCR_SELECT_SIZE

    def __init__(self, banks: Mapping[HashAlgorithm, Sequence[int]] | Sequence[
            tuple[HashAlgorithm, Sequence[int]]], size_of_select: int = PCR_SELECT_SIZE) -> None:
        items = banks.items() if isinstance(banks, Mapping) else banks
        norm: dict[HashAlgorithm, tuple[int, ...]] = {}
        for alg, pcrs in items:
            idx = tuple(sorted(set(pcrs)))
            if any(not 0 <= p < size_of_select * 8 for p in idx):
                raise ParseError("PCR index outside the selection", field="pcrSelect",
                                 actual=idx)
            norm[alg] = idx
        object.__setattr__(self, "banks", norm)
        object.__setattr__(self, "size_of_select", size_of_select)

    def __hash__(self) -> int:
        return hash((tuple(self.banks.items()), self.size_of_select))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PcrSelection):
            return NotImplemented
        return (list(self.banks.items()) == list(other.banks.items())
                and self.size_of_select == other.size_of_select)

    def items(self) -> list[tuple[HashAlgorithm, tuple[int, ...]]]:
        return list(self.banks.items())

    def write(self, w: Writer) -> None:
        w.u32(len(self.banks))
        for alg, pcrs in self.banks.items():
            assert alg.tpm_alg_id is not None
            bitmap = bytearray(self.size_of_select)
            for p in pcrs:
                bitmap[p // 8] |= 1 << (p % 8)
            w.u16(alg.tpm_alg_id).u8(self.size_of_select).raw(bitmap)

    def to_bytes(self) -> bytes:
        w = Writer(order=">")
        self.write(w)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> PcrSelection:
        return cls.from_entries(read_bank_selections(r))

    @classmethod
    def from_entries(cls, entries: Sequence[BankSelection]) -> PcrSelection:
        """The merged view of TPMS_PCR_SELECTION entries (the largest sizeofSelect)."""
        size = max((e.size_of_select for e in entries), default=PCR_SELECT_SIZE)
        return cls([(e.alg, e.pcrs) for e in entries], size)

    def entries(self) -> tuple[BankSelection, ...]:
        """One :class:`BankSelection` per bank, in order."""
        return tuple(BankSelection(a, p, self.size_of_select) for a, p in self.banks.items())

    def __str__(self) -> str:
        """tpm2-tools spelling: ``sha256:0,1,10+sha1:10``."""
        return "+".join(f"{a.kernel_name}:{','.join(map(str, p))}" for a, p in self.banks.items())

    @classmethod
    def from_string(cls, text: str) -> PcrSelection:
        """Parse tpm2-tools' ``-l`` syntax, e.g. ``sha256:0,1,10+sha1:all``."""
        banks: list[tuple[HashAlgorithm, list[int]]] = []
        for part in text.split("+"):
            alg_name, sep, pcr_text = part.partition(":")
            if not sep:
                raise ParseError("expected ALG:PCRS", field="pcr-list", actual=part)
            try:
                alg = HashAlgorithm.from_name(alg_name)
            except UnsupportedAlgorithmError:
                raise ParseError("unknown bank", field="pcr-list", actual=alg_name) from None
            if pcr_text == "all":
                pcrs = list(range(NUM_PCRS))
            else:
                try:
                    pcrs = [int(p, 0) for p in pcr_text.split(",") if p]
                except ValueError:
                    raise ParseError("bad PCR index", field="pcr-list", actual=pcr_text) from None
            banks.append((alg, pcrs))
        return cls(banks)


def parse_pcr_selection(data: bytes) -> PcrSelection:
    """Unmarshal a TPML_PCR_SELECTION (the whole input)."""
    r = Reader(data, order=">")
    sel = PcrSelection.read(r)
    r.expect_end("TPML_PCR_SELECTION")
    return sel


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockInfo:
    """TPMS_CLOCK_INFO."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Attest:
    """TPMS_ATTEST of a quote (type TPM_ST_ATTEST_QUOTE); ``raw`` is what was signed."""

    magic: int = TPM_GENERATED_VALUE
    type: int = TPM_ST_ATTEST_QUOTE
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    pcr_select: PcrSelection
    pcr_digest: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)
    #: the TPML_PCR_SELECTION entry by entry as signed (duplicates kept); empty for a
    #: built Attest, whose selection is ``pcr_select``
    pcr_entries: tuple[BankSelection, ...] = field(default=(), compare=False, repr=False)

    @property
    def selection_entries(self) -> tuple[BankSelection, ...]:
        """The quoted TPMS_PCR_SELECTIONs in order, as the pcrDigest covers them."""
        return self.pcr_entries or self.pcr_select.entries()

    def to_bytes(self) -> bytes:
        if self.raw:
            return self.raw
        w = Writer(order=">")
        w.u32(self.magic).u16(self.type)
        w.sized(self.qualified_signer, width=2).sized(self.extra_data, width=2)
        ci = self.clock_info
        w.u64(ci.clock).u32(ci.reset_count).u32(ci.restart_count).u8(int(ci.safe))
        w.u64(self.firmware_version)
        self.pcr_select.write(w)
        w.sized(self.pcr_digest, width=2)
        return w.getvalue()


def parse_attest(data: bytes) -> Attest:
    """Unmarshal a TPMS_ATTEST (``tpm2_quote -m``); only quote attestations are accepted."""
    r = Reader(data, order=">", path=("TPMS_ATTEST",))
    magic = r.u32("magic")
    if magic != TPM_GENERATED_VALUE:
        raise ParseError("magic is not TPM_GENERATED_VALUE", offset=0, field="magic",
                         expected=hex(TPM_GENERATED_VALUE), actual=hex(magic))
    typ = r.u16("type")
    if typ != TPM_ST_ATTEST_QUOTE:
        raise ParseError("not a quote attestation", offset=4, field="type",
                         expected=hex(TPM_ST_ATTEST_QUOTE), actual=hex(typ))
    signer = bytes(r.sized("qualifiedSigner.size", "qualifiedSigner", width=2))
    extra = bytes(r.sized("extraData.size", "extraData", width=2))
    clock = r.u64("clock")
    reset = r.u32("resetCount")
    restart = r.u32("restartCount")
    safe = r.u8("safe")
    fw = r.u64("firmwareVersion")
    entries = read_bank_selections(r)
    sel = PcrSelection.from_entries(entries)
    digest = bytes(r.sized("pcrDigest.size", "pcrDigest", width=2))
    r.expect_end("TPMS_ATTEST")
    return Attest(magic=magic, type=typ, qualified_signer=signer, extra_data=extra,
                  clock_info=ClockInfo(clock=clock, reset_count=reset, restart_count=restart,
                                       safe=bool(safe)),
                  firmware_version=fw, pcr_select=sel, pcr_digest=digest, raw=bytes(data),
                  pcr_entries=entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """TPMT_SIGNATURE for RSASSA, RSAPSS (``sig``) or ECDSA (``r``, ``s``)."""

    scheme: SigScheme
    hash_alg: HashAlgorithm
    sig: bytes = b""
    r: bytes = b""
    s: bytes = b""

    def to_bytes(self) -> bytes:
        assert self.hash_alg.tpm_alg_id is not None
        w = Writer(order=">").u16(self.scheme).u16(self.hash_alg.tpm_alg_id)
        if self.scheme is SigScheme.ECDSA:
            w.sized(self.r, width=2).sized(self.s, width=2)
        else:
            w.sized(self.sig, width=2)
        return w.getvalue()


def parse_signature(data: bytes) -> Signature:
    """Unmarshal a TPMT_SIGNATURE (``tpm2_quote -s``, the default "tss" format)."""
    r = Reader(data, order=">", path=("TPMT_SIGNATURE",))
    alg = r.u16("sigAlg")
    try:
        scheme = SigScheme(alg)
    except ValueError:
        raise ParseError("unsupported signature scheme", offset=0, field="sigAlg",
                         actual=hex(alg)) from None
    h = _hash_alg(r, "hash")
    if scheme is SigScheme.ECDSA:
        sr = bytes(r.sized("signatureR.size", "signatureR", width=2))
        ss = bytes(r.sized("signatureS.size", "signatureS", width=2))
        out = Signature(scheme=scheme, hash_alg=h, r=sr, s=ss)
    else:
        out = Signature(scheme=scheme, hash_alg=h,
                        sig=bytes(r.sized("sig.size", "sig", width=2)))
    r.expect_end("TPMT_SIGNATURE")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicArea:
    """TPMT_PUBLIC of an RSA or ECC restricted signing key (an AK)."""

    type: int
    name_alg: HashAlgorithm
    attributes: int
    scheme: SigScheme
    scheme_hash: HashAlgorithm
    # RSA
    key_bits: int = 0
    exponent: int = 0
    modulus: bytes = b""
    # ECC
    curve: int = 0
    x: bytes = b""
    y: bytes = b""
    auth_policy: bytes = b""
    #: the TPMT_PUBLIC bytes as parsed (a non-NULL symmetric or kdf included): what the
    #: Name hashes; empty for a built key
    raw: bytes = field(default=b"", compare=False, repr=False)

    def to_bytes(self) -> bytes:
        """The marshalled TPMT_PUBLIC (what the Name hashes)."""
        if self.raw:
            return self.raw
        assert self.name_alg.tpm_alg_id is not None and self.scheme_hash.tpm_alg_id is not None
        w = Writer(order=">").u16(self.type).u16(self.name_alg.tpm_alg_id).u32(self.attributes)
        w.sized(self.auth_policy, width=2)
        w.u16(TPM_ALG_NULL)  # symmetric
        w.u16(self.scheme).u16(self.scheme_hash.tpm_alg_id)
        if self.type == TPM_ALG_RSA:
            w.u16(self.key_bits).u32(self.exponent).sized(self.modulus, width=2)
        else:
            w.u16(self.curve).u16(TPM_ALG_NULL)  # kdf
            w.sized(self.x, width=2).sized(self.y, width=2)
        return w.getvalue()

    def to_tpm2b(self) -> bytes:
        """TPM2B_PUBLIC (``tpm2_createak -u``)."""
        body = self.to_bytes()
        return len(body).to_bytes(2, "big") + body

    @property
    def name(self) -> bytes:
        """Name = nameAlg || H_nameAlg(TPMT_PUBLIC)."""
        assert self.name_alg.tpm_alg_id is not None
        return self.name_alg.tpm_alg_id.to_bytes(2, "big") + self.name_alg.hash(self.to_bytes())


def parse_public(data: bytes) -> PublicArea:
    """Unmarshal a TPM2B_PUBLIC (RSA or ECC signing key)."""
    r = Reader(data, order=">", path=("TPM2B_PUBLIC",))
    body = r.sized("size", "publicArea", width=2)
    r.expect_end("TPM2B_PUBLIC")
    r = Reader(body, order=">", base=2, path=("TPMT_PUBLIC",))
    typ = r.u16("type")
    if typ not in (TPM_ALG_RSA, TPM_ALG_ECC):
        raise ParseError("only RSA and ECC keys are supported", offset=2, field="type",
                         actual=hex(typ))
    name_alg = _hash_alg(r, "nameAlg")
    attrs = r.u32("objectAttributes")
    policy = bytes(r.sized("authPolicy.size", "authPolicy", width=2))
    sym = r.u16("symmetric")
    if sym != TPM_ALG_NULL:
        r.u16("symmetric.keyBits")
        r.u16("symmetric.mode")
    scheme_id = r.u16("scheme")
    try:
        scheme = SigScheme(scheme_id)
    except ValueError:
        raise ParseError("unsupported signing scheme", offset=r.offset - 2, field="scheme",
                         actual=hex(scheme_id)) from None
    scheme_hash = _hash_alg(r, "scheme.hashAlg")
    if typ == TPM_ALG_RSA:
        bits = r.u16("keyBits")
        exp = r.u32("exponent")
        mod = bytes(r.sized("unique.size", "unique.rsa", width=2))
        out = PublicArea(type=typ, name_alg=name_alg, attributes=attrs, scheme=scheme,
                         scheme_hash=scheme_hash, key_bits=bits, exponent=exp, modulus=mod,
                         auth_policy=policy, raw=bytes(body))
    else:
        curve = r.u16("curveID")
        kdf = r.u16("kdf.scheme")
        if kdf != TPM_ALG_NULL:
            r.u16("kdf.hashAlg")
        x = bytes(r.sized("unique.x.size", "unique.x", width=2))
        y = bytes(r.sized("unique.y.size", "unique.y", width=2))
        out = PublicArea(type=typ, name_alg=name_alg, attributes=attrs, scheme=scheme,
                         scheme_hash=scheme_hash, curve=curve, x=x, y=y, auth_policy=policy,
                         raw=bytes(body))
    r.expect_end("TPMT_PUBLIC")
    return out
