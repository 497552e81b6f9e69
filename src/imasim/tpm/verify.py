"""The verifier's side of a quote, and every file form tpm2-tools reads and writes for one.

:func:`verify_quote` makes the checks ``tpm2_checkquote`` (tpm2-tools 5.7 and later) makes,
and raises a distinct error for each failure:

* :class:`~imasim.errors.SignatureInvalidError`: the signature does not verify over
  H(TPMS_ATTEST) with the AK;
* :class:`~imasim.errors.NonceMismatchError`: extraData is not the verifier's nonce;
* :class:`~imasim.errors.PcrMismatchError`: the PCR values given select other PCRs or
  banks than the quote, or do not hash to its pcrDigest.

It returns a :class:`VerifiedQuote` whose :attr:`~VerifiedQuote.pcrs` holds exactly the
values the quote's pcrDigest covers, labelled by the quote's own (signed) selection: a
:class:`~imasim.tpm.pcrs.PcrBanks` with ``source=PcrSource.QUOTE``. Nothing else a PCR
file says is passed on.

What a PCR file says, before any check, is a :class:`PcrFile`: its selection entry by entry
(:class:`~imasim.tpm.marshal.BankSelection`, in file order, duplicates kept) and its
digests in that order. :func:`read_pcr_file` reads the three forms tpm2-tools writes
(``serialized``, the default of ``tpm2_quote -o``; ``values`` with a ``-l`` selection;
``marshaled``, tpm2-tools 5.7+) and :func:`parse_pcrread_yaml` the YAML ``tpm2_pcrread``
and ``tpm2_quote`` print. :func:`read_signature` reads a TPMT_SIGNATURE or a plain
(``-f plain``) signature, telling them apart as ``tpm2_checkquote`` does.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from .._wire import Reader
from ..algorithms import HashAlgorithm
from ..errors import (
    NonceMismatchError,
    ParseError,
    PcrMismatchError,
    SignatureInvalidError,
    UnsupportedAlgorithmError,
    UsageError,
)
from . import _pkverify as _pk
from .marshal import (
    TPM_ALG_RSA,
    Attest,
    BankSelection,
    PcrSelection,
    PublicArea,
    Signature,
    SigScheme,
    parse_attest,
    parse_public,
    read_bank_selections,
)
from .pcrs import PcrBanks, PcrSource

if TYPE_CHECKING:  # cryptography is imported only where a key needs it (a cold start)
    from typing import TypeAlias

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

__all__ = [
    "PcrFile",
    "PlainSignature",
    "PublicKey",
    "VerifiedQuote",
    "load_ak_public",
    "parse_pcr_file",
    "parse_pcr_list",
    "parse_pcrread_yaml",
    "read_pcr_file",
    "read_signature",
    "verify_quote",
    "write_pcr_file",
]

PcrFileForm = Literal["serialized", "values", "marshaled"]

_MAX_BANKS: Final = 16           # TPM2_NUM_PCR_BANKS
_MAX_BLOCKS: Final = 32          # ARRAY_LEN(tpm2_pcrs.pcr_values) = TPM2_MAX_PCRS
_SELECT_MAX: Final = 4           # TPM2_PCR_SELECT_MAX
_SEL_STRUCT: Final = struct.Struct("<HB4sx")  # TPMS_PCR_SELECTION as a host struct
_DIGESTS_PER_BLOCK: Final = 8
_TPMU_HA_SIZE: Final = 64
_TPM2B_DIGEST_SIZE: Final = 2 + _TPMU_HA_SIZE
#: sizeof(TPMT_SIGNATURE) (sigAlg + the RSA arm: hash, size, 512 bytes): a larger file is
#: not tried as one (tpm2-tools files_load_signature_silent)
_TPMT_SIGNATURE_SIZE: Final = 2 + 2 + 2 + 512
#: TPM2B_MAX_BUFFER: the largest plain signature tpm2_checkquote reads
_MAX_PLAIN_SIG: Final = 1024
#: TPMU_SIGNATURE arms tss2's Tss2_MU_TPMT_SIGNATURE_Unmarshal knows
_TPM_ALG_HMAC, _TPM_ALG_NULL = 0x0005, 0x0010
_TPM_ALG_SM2, _TPM_ALG_ECSCHNORR, _TPM_ALG_ECDAA = 0x001B, 0x001C, 0x001A


def __getattr__(name: str) -> Any:
    if name == "PublicKey":  # the type alias, built on first use (it needs cryptography)
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        return rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ak_public(data: bytes) -> PublicKey:
    """An AK public key from PEM, DER (SubjectPublicKeyInfo) or a TPM2B_PUBLIC."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            try:
                key = serialization.load_der_public_key(data)
            except ValueError:
                return _public_from_area(parse_public(data))
    except (ValueError, TypeError) as exc:
        raise ParseError(f"not a public key: {exc}", field="ak_public") from None
    except UnsupportedAlgorithm as exc:
        raise UnsupportedAlgorithmError(f"AK must be an RSA or EC key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise UnsupportedAlgorithmError("AK must be an RSA or EC key")
    return key


def _public_from_area(area: PublicArea) -> PublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if area.type == TPM_ALG_RSA:
        return rsa.RSAPublicNumbers(area.exponent or 65537,
                                    int.from_bytes(area.modulus, "big")).public_key()
    return ec.EllipticCurvePublicNumbers(int.from_bytes(area.x, "big"),
                                         int.from_bytes(area.y, "big"),
                                         ec.SECP256R1()).public_key()


def _cold_start() -> bool:
    """Is cryptography still unloaded? Then the integer-only verifier saves a process its
    import (``imasim tpm checkquote``); once loaded, OpenSSL verifies faster. The two give
    the same verdicts (tests/tpm/test_pkverify.py, tests/tpm/test_checkquote_differential.py)."""
    return "cryptography.hazmat.primitives.asymmetric.rsa" not in sys.modules


def _fast_key(ak_public: PublicKey | bytes) -> _pk.RsaKey | _pk.EcKey | None:
    """The key for the integer-only verifier, or None (then cryptography verifies)."""
    if not _cold_start():
        return None
    if isinstance(ak_public, bytes):
        return _pk.load_key(ak_public)
    from cryptography.hazmat.primitives.asymmetric import rsa

    if isinstance(ak_public, rsa.RSAPublicKey):
        nums = ak_public.public_numbers()
        return _pk.RsaKey(nums.n, nums.e)
    curve = {"secp256r1": _pk.P256, "secp384r1": _pk.P384}.get(ak_public.curve.name)
    if curve is None:
        return None
    pt = ak_public.public_numbers()
    return _pk.EcKey(curve, pt.x, pt.y)


# -- what a PCR file says ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PcrFile:
    """What a PCR file claims, unverified: its selection and its digests, in file order.

    ``selection`` is the TPML_PCR_SELECTION entry by entry (duplicates kept), ``digests``
    one per selected PCR in that order (a serialized file may give a digest any size up
    to 64 bytes; tpm2_checkquote hashes the bytes as they are).

    >>> from imasim.algorithms import HashAlgorithm as H
    >>> f = PcrFile.from_values({H.SHA256: {10: bytes(32), 0: bytes(32)}})
    >>> [str(e) for e in f.selection], len(f.digests)
    (['sha256:0,10'], 2)
    """

    selection: tuple[BankSelection, ...]
    digests: tuple[bytes, ...]

    @classmethod
    def from_values(cls, values: Mapping[HashAlgorithm, Mapping[int, bytes]]) -> PcrFile:
        """The file a bank -> PCR -> value mapping stands for (banks in mapping order)."""
        sel: list[BankSelection] = []
        digests: list[bytes] = []
        for alg, bank in values.items():
            if not isinstance(alg, HashAlgorithm):
                raise UsageError(f"bank {alg!r} is not a HashAlgorithm")
            idx = tuple(sorted(bank))
            if any(not isinstance(i, int) or not 0 <= i < 8 * _SELECT_MAX for i in idx):
                raise UsageError(f"{alg.kernel_name} PCR index out of range: {idx}")
            sel.append(BankSelection(alg, idx))
            digests += (bytes(bank[i]) for i in idx)
        return cls(tuple(sel), tuple(digests))

    @property
    def count(self) -> int:
        """How many PCRs the selection selects (how many digests it needs)."""
        return sum(len(e.pcrs) for e in self.selection)

    def unauthenticated(self) -> PcrBanks:
        """The file's values under its own labels, vouched for by nothing."""
        return PcrBanks.unauthenticated(self._by_bank(self.selection, "the PCR file"))

    def _by_bank(self, selection: Sequence[BankSelection],
                 what: str) -> dict[HashAlgorithm, dict[int, bytes]]:
        stream = b"".join(self.digests)
        need = sum(e.alg.digest_size * len(e.pcrs) for e in selection)
        if len(stream) != need or len(self.digests) != self.count:
            raise PcrMismatchError(f"{what} holds {len(stream)} bytes of PCR values in "
                                   f"{len(self.digests)} digests; "
                                   f"{_sel_text(selection)} needs {need}")
        out: dict[HashAlgorithm, dict[int, bytes]] = {}
        pos = 0
        for e in selection:
            size = e.alg.digest_size
            bank = out.setdefault(e.alg, {})
            for i in e.pcrs:
                bank[i] = stream[pos:pos + size]
                pos += size
        return out


def _sel_text(selection: Sequence[BankSelection]) -> str:
    return "+".join(map(str, selection)) or "nothing"


_PCR_ID: Final = r"0[xX]([0-9a-fA-F]+)|(0[0-7]*)|[1-9][0-9]*"  # compiled on first use


def parse_pcr_list(text: str) -> tuple[BankSelection, ...]:
    """A ``-l`` selection as tpm2-tools parses it (``sha256:0,1+sha1:all``).

    Entries stay in order and a bank named twice stays twice (``pcr_parse_selections``);
    ``all`` is PCRs 0-23, ``none`` selects nothing; sizeofSelect is 3.

    >>> [str(e) for e in parse_pcr_list("sha256:10,0+sha1:none")]
    ['sha256:0,10', 'sha1:none']
    """
    out: list[BankSelection] = []
    for part in text.split("+"):
        alg_name, sep, pcr_text = part.partition(":")
        if not sep or not pcr_text:
            raise ParseError("expected BANK:PCRS", field="pcr-list", actual=part)
        try:
            alg = HashAlgorithm.from_name(alg_name)
        except UnsupportedAlgorithmError:
            raise ParseError("unknown bank", field="pcr-list", actual=alg_name) from None
        if pcr_text.startswith("all"):
            pcrs: set[int] = set(range(24))
        elif pcr_text.startswith("none"):
            pcrs = set()
        else:
            pcrs = set()
            for p in pcr_text.split(","):
                m = re.fullmatch(_PCR_ID, p) if len(p) <= 3 else None  # strtoul(p, 0), 3 chars
                i = -1 if m is None else int(p, 16 if m.group(1) else 8 if m.group(2) else 10)
                if not 0 <= i < 24:
                    raise ParseError("bad PCR index", field="pcr-list", actual=p)
                pcrs.add(i)
        out.append(BankSelection(alg, tuple(sorted(pcrs))))
        if len(out) > _MAX_BANKS:
            raise ParseError("too many banks", field="pcr-list", expected=f"<= {_MAX_BANKS}")
    return tuple(out)


def read_pcr_file(data: bytes, *, selection: str | Sequence[BankSelection] | None = None,
                  form: PcrFileForm = "serialized") -> PcrFile:
    """Read a PCR file as ``tpm2_checkquote -f FILE [-l SELECTION] [-F FORM]`` does.

    With ``selection`` (``-l``) the file is raw digests in selection order (the ``values``
    form), whatever ``form`` says; without it, ``form`` is ``serialized`` (tpm2-tools'
    little-endian struct dump, also when ``values`` is asked for, as tpm2_checkquote does)
    or ``marshaled`` (TPM byte order, tpm2-tools 5.7+). Bytes after the digests the
    selection needs are ignored, as tpm2_checkquote ignores them.
    """
    if selection is not None:
        sel = parse_pcr_list(selection) if isinstance(selection, str) else tuple(selection)
        r = Reader(data, path=("pcr values",))
        digests = [r.take(e.alg.digest_size, f"{e.alg.kernel_name}:{i}")
                   for e in sel for i in e.pcrs]
        return PcrFile(sel, tuple(digests))
    if form == "marshaled":
        return _read_marshaled(data)
    if form not in ("serialized", "values"):
        raise UsageError(f"unknown PCR file form {form!r}")
    return _read_serialized(data)


def _read_serialized(data: bytes) -> PcrFile:
    r = Reader(data, order="<", path=("pcr file",))
    count = r.u32("pcrSelections.count")
    if count > _MAX_BANKS:
        raise ParseError("too many PCR selections", offset=0, field="pcrSelections.count",
                         expected=f"<= {_MAX_BANKS}", actual=count)
    sel: list[BankSelection] = []
    for k in range(_MAX_BANKS):
        start = r.offset
        alg_id, size, bitmap = _SEL_STRUCT.unpack(r.take(_SEL_STRUCT.size, "pcrSelections"))
        if k >= count:
            continue
        if size > _SELECT_MAX:
            raise ParseError("sizeofSelect above TPM2_PCR_SELECT_MAX", offset=start + 2,
                             field="sizeofSelect", expected=f"<= {_SELECT_MAX}", actual=size)
        sel.append(BankSelection(_bank(alg_id, start), _bits(bitmap[:size]), size))
    return PcrFile(tuple(sel), _read_blocks(r, sel, "<"))


def _read_marshaled(data: bytes) -> PcrFile:
    r = Reader(data, order=">", path=("pcr file",))
    sel = read_bank_selections(r, max_select=_SELECT_MAX)
    return PcrFile(sel, _read_blocks(r, sel, ">"))


def _read_blocks(r: Reader, sel: Sequence[BankSelection], order: str) -> tuple[bytes, ...]:
    """The TPML_DIGEST blocks, consumed one digest per selected PCR (tpm2-tools' loop)."""
    nblocks = r.u32("digest blocks")
    if nblocks > _MAX_BLOCKS:
        raise ParseError("more TPML_DIGEST blocks than tpm2_pcrs holds", offset=r.offset - 4,
                         field="digest blocks", expected=f"<= {_MAX_BLOCKS}", actual=nblocks)
    blocks: list[list[bytes]] = []
    for _ in range(nblocks):
        n = r.u32("TPML_DIGEST.count")
        if n > _DIGESTS_PER_BLOCK:
            raise ParseError("TPML_DIGEST count above 8", offset=r.offset - 4,
                             field="TPML_DIGEST.count", expected="<= 8", actual=n)
        block: list[bytes] = []
        for j in range(_DIGESTS_PER_BLOCK if order == "<" else n):
            sz = r.u16("TPM2B_DIGEST.size")
            if j < n and sz > _TPMU_HA_SIZE:
                raise ParseError("digest size above sizeof(TPMU_HA)", offset=r.offset - 2,
                                 field="TPM2B_DIGEST.size", expected="<= 64", actual=sz)
            buf = r.take(_TPMU_HA_SIZE if order == "<" else sz, "TPM2B_DIGEST.buffer")
            if j < n:
                block.append(buf[:sz])
        blocks.append(block)
    need = sum(len(e.pcrs) for e in sel)
    out: list[bytes] = []
    vi = di = 0
    while len(out) < need:
        if vi >= len(blocks) or di >= len(blocks[vi]):
            raise ParseError("the file holds fewer digests than its selection selects",
                             field="digests", expected=need, actual=len(out))
        out.append(blocks[vi][di])
        di += 1
        if di >= len(blocks[vi]):
            vi, di = vi + 1, 0
    return tuple(out)


def _bank(alg_id: int, offset: int) -> HashAlgorithm:
    try:
        return HashAlgorithm.from_tpm_alg_id(alg_id)
    except UnsupportedAlgorithmError:
        raise ParseError("unknown bank", offset=offset, field="hash",
                         actual=hex(alg_id)) from None


def _bits(bitmap: bytes) -> tuple[int, ...]:
    return tuple(i for i in range(len(bitmap) * 8) if bitmap[i // 8] >> (i % 8) & 1)


_YAML_BANK: Final = rb"[ ]{2}([a-z0-9_]+):[ \t]*\r?"
_YAML_PCR: Final = rb"[ ]{4}([0-9]{1,2})[ ]*:[ ]*0x([0-9A-Fa-f]*)[ \t]*\r?"


def parse_pcrread_yaml(data: bytes | str) -> PcrFile:
    """PCR values from the YAML ``tpm2_pcrread`` prints (and ``tpm2_quote``'s ``pcrs:``).

    ``  sha256:`` opens a bank, ``    0 : 0x3D45...`` gives a value; other top-level keys
    (``quoted:``, ``signature:``, ``calcDigest:``) are skipped. Values are unverified.

    >>> yaml = "  sha256:\\n    0 : 0x" + "00" * 32 + "\\n    10: 0x" + "AB" * 32 + "\\n"
    >>> f = parse_pcrread_yaml(yaml)
    >>> [str(e) for e in f.selection], f.digests[1][:2].hex()
    (['sha256:0,10'], 'abab')
    """
    raw = data.encode() if isinstance(data, str) else data
    banks: list[tuple[HashAlgorithm, dict[int, bytes]]] = []
    in_pcrs = True
    offset = 0
    for line in raw.split(b"\n"):
        at, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        if not line.startswith(b" "):                 # a top-level key
            in_pcrs = line.rstrip() == b"pcrs:"
            continue
        if not in_pcrs:
            continue
        if m := re.fullmatch(_YAML_BANK, line):
            try:
                alg = HashAlgorithm.from_name(m.group(1).decode())
            except UnsupportedAlgorithmError:
                raise ParseError("unknown bank", offset=at, field="bank",
                                 actual=m.group(1).decode()) from None
            if any(a is alg for a, _ in banks):
                raise ParseError("bank listed twice", offset=at, field="bank",
                                 actual=alg.kernel_name)
            banks.append((alg, {}))
        elif m := re.fullmatch(_YAML_PCR, line):
            if not banks:
                raise ParseError("a PCR value before any bank", offset=at, field="pcr")
            alg, bank = banks[-1]
            idx, hexval = int(m.group(1)), m.group(2)
            if idx >= 8 * _SELECT_MAX or idx in bank:
                raise ParseError("PCR index out of range or repeated", offset=at,
                                 field="pcr", actual=idx)
            if len(hexval) != 2 * alg.digest_size:
                raise ParseError(f"a {alg.kernel_name} value is {alg.digest_size} bytes",
                                 offset=at + m.start(2), field="value",
                                 expected=2 * alg.digest_size, actual=len(hexval))
            bank[idx] = bytes.fromhex(hexval.decode())
        else:
            raise ParseError("expected '  BANK:' or '    PCR : 0xVALUE'", offset=at,
                             field="line", actual=line[:40].decode(errors="replace"))
    if not banks:
        raise ParseError("no PCR banks", offset=0, field="pcrs")
    return PcrFile.from_values(dict(banks))


# -- legacy helpers --------------------------------------------------------------------
def write_pcr_file(selection: PcrSelection,
                   values: Sequence[bytes]) -> bytes:
    """The "serialized" PCR file of ``tpm2_quote -o`` / ``tpm2_pcrread -o -F serialized``.

    A little-endian host-struct dump (tpm2-tools lib/pcr.c ``pcr_fwrite_serialized``):
    TPML_PCR_SELECTION (u32 count + 16 x {u16 hash, u8 sizeofSelect, u8[4], pad}),
    u32 number of TPML_DIGEST blocks, then the blocks (u32 count + 8 x {u16 size, u8[64]}).
    ``values`` are the selected digests in selection order.
    """
    items = selection.items()
    out = bytearray(struct.pack("<I", len(items)))
    for alg, pcrs in items:
        bitmap = bytearray(4)
        for p in pcrs:
            bitmap[p // 8] |= 1 << (p % 8)
        assert alg.tpm_alg_id is not None
        out += _SEL_STRUCT.pack(alg.tpm_alg_id, selection.size_of_select, bytes(bitmap))
    out += bytes(_SEL_STRUCT.size * (_MAX_BANKS - len(items)))
    blocks = [values[i:i + _DIGESTS_PER_BLOCK] for i in range(0, len(values), _DIGESTS_PER_BLOCK)]
    out += struct.pack("<I", len(blocks))
    for block in blocks:
        out += struct.pack("<I", len(block))
        for v in block:
            out += struct.pack("<H", len(v)) + v.ljust(64, b"\0")
        out += bytes(_TPM2B_DIGEST_SIZE * (_DIGESTS_PER_BLOCK - len(block)))
    return bytes(out)


def parse_pcr_file(data: bytes, selection: PcrSelection | None = None
                   ) -> tuple[PcrSelection, dict[HashAlgorithm, dict[int, bytes]]]:
    """A PCR file's selection and bank -> PCR -> value, every digest its bank's size.

    Without ``selection``: the "serialized" form; with it (``-l``): raw digests in selection
    order. Unverified: :func:`read_pcr_file` and :func:`verify_quote` are the checked path.
    """
    f = read_pcr_file(data, selection=selection.entries() if selection is not None else None)
    for (alg, i), v in zip(((e.alg, i) for e in f.selection for i in e.pcrs), f.digests,
                           strict=True):
        if len(v) != alg.digest_size:
            raise ParseError(f"{alg.kernel_name} PCR {i} has {len(v)} bytes",
                             field="digest", expected=alg.digest_size, actual=len(v))
    values = f._by_bank(f.selection, "the PCR file")
    return PcrSelection.from_entries(f.selection), values


# -- signatures ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlainSignature:
    """A ``tpm2_quote -f plain`` signature: RSA signature bytes, or a DER ECDSA-Sig-Value.

    It names no hash: ``hash_alg`` is what the verifier says (``tpm2_checkquote -g``).
    """

    data: bytes
    hash_alg: HashAlgorithm


def read_signature(data: bytes, *,
                   hash_alg: HashAlgorithm = HashAlgorithm.SHA256) -> Signature | PlainSignature:
    """A quote signature in either form ``tpm2_quote -f`` writes, told apart as
    ``tpm2_checkquote`` does: a file that unmarshals as a TPMT_SIGNATURE (tss2 rules:
    at most sizeof(TPMT_SIGNATURE) bytes, trailing bytes allowed) is one, anything else of
    at most 1024 bytes is a plain signature verified with ``hash_alg``.

    >>> read_signature(bytes(256)).hash_alg.kernel_name
    'sha256'
    """
    sig = _tss_signature(data)
    if sig is not None:
        return sig
    if len(data) > _MAX_PLAIN_SIG:
        raise ParseError("a plain signature is at most 1024 bytes (TPM2B_MAX_BUFFER)",
                         offset=_MAX_PLAIN_SIG, field="signature", actual=len(data))
    return PlainSignature(bytes(data), hash_alg)


def _tss_signature(data: bytes) -> Signature | None:
    if len(data) > _TPMT_SIGNATURE_SIZE or len(data) < 4:
        return None
    r = Reader(data, order=">", path=("TPMT_SIGNATURE",))
    alg, halg_id = r.u16("sigAlg"), r.u16("hash")
    try:
        if alg in (SigScheme.RSASSA, SigScheme.RSAPSS):
            body = bytes(r.sized("sig.size", "sig", width=2))
            if len(body) > 512:
                return None
            return Signature(scheme=SigScheme(alg), hash_alg=_sig_hash(halg_id), sig=body)
        if alg in (SigScheme.ECDSA, _TPM_ALG_SM2, _TPM_ALG_ECSCHNORR, _TPM_ALG_ECDAA):
            sr = bytes(r.sized("signatureR.size", "signatureR", width=2))
            ss = bytes(r.sized("signatureS.size", "signatureS", width=2))
            if len(sr) > 128 or len(ss) > 128:
                return None
            if alg != SigScheme.ECDSA:
                raise UnsupportedAlgorithmError(f"signature scheme {alg:#06x}")
            return Signature(scheme=SigScheme.ECDSA, hash_alg=_sig_hash(halg_id), r=sr, s=ss)
    except ParseError:
        return None
    if alg in (_TPM_ALG_HMAC, _TPM_ALG_NULL):
        raise UnsupportedAlgorithmError(f"signature scheme {alg:#06x} signs no quote")
    return None


def _sig_hash(alg_id: int) -> HashAlgorithm:
    try:
        return HashAlgorithm.from_tpm_alg_id(alg_id)
    except UnsupportedAlgorithmError:
        raise UnsupportedAlgorithmError(f"signature hash {alg_id:#06x}") from None


# -- the quote -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote whose signature and nonce verified, and the PCR values its digest covers.

    ``pcrs`` holds exactly the quoted selection (banks in the quote's order) with
    ``source=PcrSource.QUOTE``, or no banks when no PCR values were given to check.
    """

    attest: Attest
    scheme: SigScheme
    hash_alg: HashAlgorithm
    pcrs: PcrBanks

    def __repr__(self) -> str:
        from .._repr import indices, short

        sel = "+".join(f"{e.alg.kernel_name}:{indices(e.pcrs)}"
                       for e in self.attest.selection_entries)
        checked = "PCR values checked" if self.pcrs else "PCR values not given"
        return (f"<VerifiedQuote of {sel or 'no PCRs'}, {self.scheme.name.lower()}/"
                f"{self.hash_alg.kernel_name}, nonce {short(self.attest.extra_data)}, "
                f"{checked}>")

    @property
    def pcr_values(self) -> PcrBanks:
        """Old name of :attr:`pcrs`."""
        return self.pcrs

    @property
    def pcrs_checked(self) -> bool:
        """Were PCR values checked against pcrDigest (is ``pcrs`` the quoted selection)?"""
        return bool(self.pcrs) or not self.attest.selection_entries


def verify_quote(
    attest: bytes,
    signature: bytes | Signature | PlainSignature,
    ak_public: PublicKey | bytes,
    *,
    nonce: bytes,
    pcrs: PcrFile | Mapping[HashAlgorithm, Mapping[int, bytes]] | None = None,
    pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]] | None = None,
    hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
) -> VerifiedQuote:
    """Verify a TPM2_Quote (``tpm2_quote -m``/``-s`` bytes) with the AK public key.

    ``pcrs`` (a :class:`PcrFile`, or bank -> PCR -> value; ``pcr_values`` is its old name)
    must select exactly the quoted PCRs: the same number of selection entries, and for
    each quoted bank one with the same sizeofSelect and PCRs (tpm2_checkquote 5.7+,
    CVE-2024-29039); the digests, hashed in the file's order with the signature's hash,
    must equal pcrDigest. The values returned are that verified byte string cut by the
    quote's own selection. ``hash_alg`` is the hash of a plain signature (``-g``).
    """
    if pcrs is not None and pcr_values is not None:
        raise UsageError("give pcrs or pcr_values, not both")
    given = pcrs if pcrs is not None else pcr_values
    fast = _fast_key(ak_public)
    key = None if fast is not None else (
        load_ak_public(ak_public) if isinstance(ak_public, bytes) else ak_public)
    att = parse_attest(attest)
    sig = read_signature(signature, hash_alg=hash_alg) if isinstance(signature, bytes) \
        else signature
    halg = sig.hash_alg
    if halg not in (HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA384,
                    HashAlgorithm.SHA512):
        raise UnsupportedAlgorithmError(f"signature hash {halg.kernel_name}")
    digest = halg.hash(attest)
    scheme = (_check_signature_fast(fast, sig, digest, halg) if fast is not None
              else _check_signature(key, sig, digest, halg))
    if att.extra_data != nonce:
        raise NonceMismatchError(
            f"extraData {att.extra_data.hex()} is not the nonce {nonce.hex()}")
    if given is None:
        return VerifiedQuote(att, scheme, halg, PcrBanks({}, source=PcrSource.QUOTE))
    pf = given if isinstance(given, PcrFile) else PcrFile.from_values(given)
    quoted = att.selection_entries
    _compare_selection(quoted, pf.selection)
    if len(pf.digests) != pf.count:
        raise PcrMismatchError(f"the PCR values give {len(pf.digests)} digests for the "
                               f"{pf.count} PCRs they select")
    if halg.hash(b"".join(pf.digests)) != att.pcr_digest:
        raise PcrMismatchError("the PCR values do not match the quote's pcrDigest")
    return VerifiedQuote(att, scheme, halg,
                         PcrBanks(pf._by_bank(quoted, "the quote"), source=PcrSource.QUOTE))


def _compare_selection(quoted: Sequence[BankSelection], given: Sequence[BankSelection]) -> None:
    """tpm2-tools' compare_pcr_selection: same entry count, each quoted bank found (first
    entry with that hash) with the same sizeofSelect and PCRs. Bank order is left to the
    digest, which follows the file's order."""
    def refuse(why: str) -> PcrMismatchError:
        return PcrMismatchError(f"{why}: the PCR values select {_sel_text(given)}, "
                                f"the quote covers {_sel_text(quoted)}")
    if len(quoted) != len(given):
        raise refuse("another number of banks")
    for q in quoted:
        g = next((e for e in given if e.alg is q.alg), None)
        if g is None:
            raise refuse(f"no {q.alg.kernel_name} bank")
        if g.size_of_select != q.size_of_select:
            raise refuse(f"{q.alg.kernel_name} sizeofSelect {g.size_of_select} is not "
                         f"{q.size_of_select}")
        if g.pcrs != q.pcrs:
            extra = sorted(set(g.pcrs) - set(q.pcrs))
            missing = sorted(set(q.pcrs) - set(g.pcrs))
            parts = ([f"PCRs {extra} not quoted"] if extra else []) + (
                [f"PCRs {missing} missing"] if missing else [])
            raise refuse(f"{q.alg.kernel_name} {' and '.join(parts)}")


def _check_signature_fast(key: _pk.RsaKey | _pk.EcKey, sig: Signature | PlainSignature,
                          digest: bytes, halg: HashAlgorithm) -> SigScheme:
    """The checks of :func:`_check_signature`, with the integer-only verifier."""
    scheme: SigScheme
    if isinstance(sig, PlainSignature):
        if isinstance(key, _pk.EcKey):
            rs = _pk.decode_ecdsa_der(sig.data)
            ok, scheme = rs is not None and _pk.verify_ecdsa(key, *rs, digest), SigScheme.ECDSA
        elif _pk.verify_pkcs1v15(key, sig.data, digest, halg):  # 5.7+: PKCS#1 v1.5, then PSS
            ok, scheme = True, SigScheme.RSASSA
        else:
            ok, scheme = _pk.verify_pss(key, sig.data, digest, halg), SigScheme.RSAPSS
    elif sig.scheme is SigScheme.ECDSA:
        if not isinstance(key, _pk.EcKey):
            raise SignatureInvalidError("an ECDSA signature needs an EC key")
        ok, scheme = _pk.verify_ecdsa(key, int.from_bytes(sig.r, "big"),
                                      int.from_bytes(sig.s, "big"), digest), sig.scheme
    else:
        if not isinstance(key, _pk.RsaKey):
            raise SignatureInvalidError("an RSA signature needs an RSA key")
        check = _pk.verify_pkcs1v15 if sig.scheme is SigScheme.RSASSA else _pk.verify_pss
        ok, scheme = check(key, sig.sig, digest, halg), sig.scheme
    if not ok:
        raise SignatureInvalidError("the quote signature does not verify with the AK")
    return scheme


def _hash_cls(alg: HashAlgorithm) -> hashes.HashAlgorithm:
    """cryptography's class of a TPM hash algorithm (imported when a signature is made
    or checked)."""
    from cryptography.hazmat.primitives import hashes

    return {
        HashAlgorithm.SHA1: hashes.SHA1(),
        HashAlgorithm.SHA256: hashes.SHA256(),
        HashAlgorithm.SHA384: hashes.SHA384(),
        HashAlgorithm.SHA512: hashes.SHA512(),
    }[alg]


def _check_signature(key: PublicKey | None, sig: Signature | PlainSignature, digest: bytes,
                     halg: HashAlgorithm) -> SigScheme:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    assert key is not None
    pre = utils.Prehashed(_hash_cls(halg))
    pss = padding.PSS(padding.MGF1(_hash_cls(halg)), padding.PSS.AUTO)
    try:
        if isinstance(sig, PlainSignature):
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(sig.data, digest, ec.ECDSA(pre))
                return SigScheme.ECDSA
            try:  # tpm2_checkquote 5.7+: PKCS#1 v1.5, then PSS
                key.verify(sig.data, digest, padding.PKCS1v15(), pre)
                return SigScheme.RSASSA
            except InvalidSignature:
                key.verify(sig.data, digest, pss, pre)
                return SigScheme.RSAPSS
        if sig.scheme is SigScheme.ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureInvalidError("an ECDSA signature needs an EC key")
            der = utils.encode_dss_signature(int.from_bytes(sig.r, "big"),
                                             int.from_bytes(sig.s, "big"))
            key.verify(der, digest, ec.ECDSA(pre))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureInvalidError("an RSA signature needs an RSA key")
            pad = padding.PKCS1v15() if sig.scheme is SigScheme.RSASSA else pss
            key.verify(sig.sig, digest, pad, pre)
        return sig.scheme
    except InvalidSignature:
        raise SignatureInvalidError("the quote signature does not verify with the AK") from None
