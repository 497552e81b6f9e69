"""The verifier's side of a quote, and the PCR files tpm2-tools reads and writes.

:func:`verify_quote` makes the checks ``tpm2_checkquote`` makes (signature over
H(TPMS_ATTEST), extraData == nonce, magic, PCR selection and pcrDigest against the given
values), and raises a distinct error for each failure:

* :class:`~imasim.errors.SignatureInvalidError`: the signature does not verify;
* :class:`~imasim.errors.NonceMismatchError`: extraData is not the verifier's nonce;
* :class:`~imasim.errors.PcrMismatchError`: the PCR values do not hash to pcrDigest, or
  cover another selection.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .._wire import Reader
from ..algorithms import HashAlgorithm
from ..errors import (
    NonceMismatchError,
    ParseError,
    PcrMismatchError,
    SignatureInvalidError,
    UnsupportedAlgorithmError,
)
from .marshal import (
    TPM_ALG_RSA,
    Attest,
    PcrSelection,
    PublicArea,
    SigScheme,
    parse_attest,
    parse_public,
    parse_signature,
)
from .soft_tpm import _hash_cls

__all__ = [
    "PublicKey",
    "VerifiedQuote",
    "load_ak_public",
    "parse_pcr_file",
    "verify_quote",
    "write_pcr_file",
]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_MAX_BANKS: Final = 16
_SEL_STRUCT: Final = struct.Struct("<HB4sx")  # TPMS_PCR_SELECTION as a host struct
_DIGESTS_PER_BLOCK: Final = 8
_TPM2B_DIGEST_SIZE: Final = 2 + 64


def load_ak_public(data: bytes) -> PublicKey:
    """An AK public key from PEM, DER (SubjectPublicKeyInfo) or a TPM2B_PUBLIC."""
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
    if area.type == TPM_ALG_RSA:
        return rsa.RSAPublicNumbers(area.exponent or 65537,
                                    int.from_bytes(area.modulus, "big")).public_key()
    return ec.EllipticCurvePublicNumbers(int.from_bytes(area.x, "big"),
                                         int.from_bytes(area.y, "big"),
                                         ec.SECP256R1()).public_key()


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote whose signature, nonce and PCR digest checked out."""

    attest: Attest
    scheme: SigScheme
    hash_alg: HashAlgorithm
    pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]]


def verify_quote(
    attest: bytes,
    signature: bytes,
    ak_public: PublicKey | bytes,
    *,
    nonce: bytes,
    pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]] | None = None,
) -> VerifiedQuote:
    """Verify a TPM2_Quote (``tpm2_quote -m``/``-s`` bytes) with the AK public key.

    ``pcr_values`` (bank -> PCR index -> value) must cover exactly the quoted selection;
    when ``None`` only the signature and nonce are checked.
    """
    key = load_ak_public(ak_public) if isinstance(ak_public, bytes) else ak_public
    att = parse_attest(attest)
    sig = parse_signature(signature)
    halg = sig.hash_alg
    if halg not in (HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA384,
                    HashAlgorithm.SHA512):
        raise UnsupportedAlgorithmError(f"signature hash {halg.kernel_name}")
    digest = halg.hash(attest)
    pre = utils.Prehashed(_hash_cls(halg))
    try:
        if sig.scheme is SigScheme.ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureInvalidError("an ECDSA signature needs an EC key")
            der = utils.encode_dss_signature(int.from_bytes(sig.r, "big"),
                                             int.from_bytes(sig.s, "big"))
            key.verify(der, digest, ec.ECDSA(pre))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureInvalidError("an RSA signature needs an RSA key")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15() if sig.scheme is SigScheme.RSASSA
                else padding.PSS(padding.MGF1(_hash_cls(halg)), padding.PSS.AUTO))
            key.verify(sig.sig, digest, pad, pre)
    except InvalidSignature:
        raise SignatureInvalidError("the quote signature does not verify with the AK") from None
    if att.extra_data != nonce:
        raise NonceMismatchError(
            f"extraData {att.extra_data.hex()} is not the nonce {nonce.hex()}")
    checked: dict[HashAlgorithm, dict[int, bytes]] = {}
    if pcr_values is not None:
        parts = []
        for alg, idx in att.pcr_select.items():
            bank = pcr_values.get(alg, {})
            for i in idx:
                if i not in bank:
                    raise PcrMismatchError(f"no value given for {alg.kernel_name} PCR {i}")
                parts.append(bank[i])
                checked.setdefault(alg, {})[i] = bank[i]
        if halg.hash(b"".join(parts)) != att.pcr_digest:
            raise PcrMismatchError("the PCR values do not match the quote's pcrDigest")
    return VerifiedQuote(att, sig.scheme, halg, checked)


# -- tpm2-tools PCR files ---------------------------------------------------------------
def write_pcr_file(selection: PcrSelection,
                   values: Sequence[bytes]) -> bytes:
    """The "serialized" PCR file of ``tpm2_quote -o`` / ``tpm2_pcrread -o``.

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
    """Read a PCR file as tpm2_checkquote does.

    Without ``selection``: the "serialized" format. With ``selection`` (``-l``): raw
    digests concatenated in selection order.
    """
    values: dict[HashAlgorithm, dict[int, bytes]] = {}
    if selection is not None:
        r = Reader(data, path=("pcr values",))
        for alg, idx in selection.items():
            for i in idx:
                values.setdefault(alg, {})[i] = r.take(alg.digest_size, f"{alg}:{i}")
        r.expect_end("PCR values")
        return selection, values
    r = Reader(data, order="<", path=("pcr file",))
    count = r.u32("pcrSelections.count")
    if count > _MAX_BANKS:
        raise ParseError("too many PCR selections", offset=0, field="count", actual=count)
    banks: list[tuple[HashAlgorithm, list[int]]] = []
    size = 3
    for k in range(_MAX_BANKS):
        alg_id = r.u16("hash")
        sizeof_select = r.u8("sizeofSelect")
        bitmap = r.take(4, "pcrSelect")
        r.take(1, "pad")
        if k < count:
            size = sizeof_select
            try:
                alg = HashAlgorithm.from_tpm_alg_id(alg_id)
            except UnsupportedAlgorithmError:
                raise ParseError("unknown bank", offset=r.offset - 8, field="hash",
                                 actual=hex(alg_id)) from None
            banks.append((alg, [i for i in range(32) if bitmap[i // 8] >> (i % 8) & 1]))
    sel = PcrSelection(banks, size)
    want = [(alg, i) for alg, idx in sel.items() for i in idx]
    nblocks = r.u32("digest blocks")
    if nblocks > (len(want) + _DIGESTS_PER_BLOCK - 1) // _DIGESTS_PER_BLOCK + 1:
        raise ParseError("more digest blocks than selected PCRs", offset=r.offset - 4,
                         field="digest blocks", actual=nblocks)
    got: list[bytes] = []
    for _ in range(nblocks):
        n = r.u32("TPML_DIGEST.count")
        if n > _DIGESTS_PER_BLOCK:
            raise ParseError("TPML_DIGEST count above 8", offset=r.offset - 4,
                             field="TPML_DIGEST.count", actual=n)
        for j in range(_DIGESTS_PER_BLOCK):
            sz = r.u16("TPM2B_DIGEST.size")
            buf = r.take(64, "TPM2B_DIGEST.buffer")
            if j < n:
                if sz > 64:
                    raise ParseError("digest size above 64", offset=r.offset - 66,
                                     field="TPM2B_DIGEST.size", actual=sz)
                got.append(buf[:sz])
    if len(got) != len(want):
        raise ParseError("the file holds a different number of digests than it selects",
                         field="digests", expected=len(want), actual=len(got))
    for (alg, i), v in zip(want, got, strict=True):
        if len(v) != alg.digest_size:
            raise ParseError(f"{alg.kernel_name} PCR {i} has {len(v)} bytes",
                             field="digest", expected=alg.digest_size, actual=len(v))
        values.setdefault(alg, {})[i] = v
    return sel, values
