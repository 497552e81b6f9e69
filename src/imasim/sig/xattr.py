"""security/integrity/integrity.h: the security.ima extended attribute.

Forms (first byte, ``enum evm_ima_xattr_type``):

* 0x01 ``IMA_XATTR_DIGEST``: a bare digest (SHA-1, or MD5);
* 0x04 ``IMA_XATTR_DIGEST_NG``: ``enum hash_algo`` byte + digest;
* 0x03 ``EVM_IMA_XATTR_DIGSIG`` and 0x06 ``IMA_VERITY_DIGSIG``: ``struct
  signature_v2_hdr`` (type, version 2 or 3, hash_algo, be32 keyid, be16 sig_size, sig).

Version 2 signs the file digest; version 3 signs H(``struct ima_file_id``) = H(type ||
hash_algo || digest). The key is found as ``"id:%08x"`` of the keyid in a keyring such
as ``.ima`` (asymmetric_verify). :func:`sign_xattr` makes what ``evmctl ima_sign`` makes.

>>> from imasim.algorithms import HashAlgorithm
>>> v = parse_xattr(bytes([4, 4]) + bytes(32))
>>> v.kind.name, v.hash_algo.kernel_name
('DIGEST_NG', 'sha256')
>>> v.to_bytes() == bytes([4, 4]) + bytes(32)
True
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .._wire import Reader
from ..algorithms import HashAlgorithm
from ..errors import (
    KeyNotFoundError,
    ParseError,
    RevokedError,
    SignatureInvalidError,
    UnknownAlgorithmError,
    UnsupportedAlgorithmError,
)
from ..keys.key import Key
from ..keys.keyring import Blacklist, Keyring
from .pkcs7 import _crypto_hash

__all__ = [
    "KERNEL_XATTR_RULES",
    "XattrKind",
    "XattrOutcome",
    "XattrRejectedError",
    "XattrValue",
    "kernel_digest_matches",
    "kernel_xattr_outcome",
    "parse_xattr",
    "sign_xattr",
    "verify_xattr",
]

_HDR: Final = struct.Struct(">BBBIH")
HASH_ALGO_LAST: Final = 23


class XattrKind(enum.IntEnum):
    """``enum evm_ima_xattr_type`` (security/integrity/integrity.h)."""

    DIGEST = 0x01
    DIGSIG = 0x03
    DIGEST_NG = 0x04
    EVM_PORTABLE_DIGSIG = 0x05
    VERITY_DIGSIG = 0x06


class XattrOutcome(enum.Enum):
    """What the kernel's ``xattr_verify`` does with a security.ima value, by its first
    two bytes (type, and version for the signature types)."""

    DIGEST = "digest"
    """IMA_XATTR_DIGEST: the bytes are compared with the file digest."""
    DIGEST_NG = "digest-ng"
    """IMA_XATTR_DIGEST_NG: hash_algo byte, then compared with the file digest."""
    SIGNATURE_V1 = "digsig-v1"
    """``digsig_verify`` (lib/digsig.c): an RSA v1 header, the key a ``user`` key named
    by a 64-bit id. imasim's keyrings hold asymmetric (X.509) keys only, so it finds no
    key (-ENOKEY, "invalid-signature"), as a kernel with only X.509 keys in .ima."""
    SIGNATURE_V2 = "sig-v2"
    """``asymmetric_verify`` over the file digest."""
    SIGNATURE_V3 = "sig-v3"
    """``asymmetric_verify`` over H(``struct ima_file_id``) (``calc_file_id_hash``)."""
    INVALID_VERSION = "invalid-signature-version"
    """INTEGRITY_FAIL, cause "invalid-signature-version"."""
    UNSUPPORTED_VERSION = "unknown"
    """``integrity_digsig_verify`` returns -EOPNOTSUPP: INTEGRITY_UNKNOWN, cause "unknown"."""
    UNKNOWN_TYPE = "unknown-ima-data"
    """INTEGRITY_UNKNOWN, cause "unknown-ima-data" (``xattr_verify``'s default case)."""

    @property
    def passes_if_verified(self) -> bool:
        """Can a value with this outcome pass appraisal (a matching digest, or a
        signature that verifies)?"""
        return self in (XattrOutcome.DIGEST, XattrOutcome.DIGEST_NG,
                        XattrOutcome.SIGNATURE_V2, XattrOutcome.SIGNATURE_V3)


_O = XattrOutcome
#: ``xattr_verify`` (security/integrity/ima/ima_appraise.c, 6.1 to 6.12 alike) and
#: ``integrity_digsig_verify`` (security/integrity/digsig.c) as data: type byte ->
#: (versions, outcome) in order; a type not listed is UNKNOWN_TYPE. EVM_IMA_XATTR_DIGSIG
#: refuses version >= 3 before integrity_digsig_verify, whose switch takes 1 (digsig v1)
#: and 2 and returns -EOPNOTSUPP for 0; IMA_VERITY_DIGSIG takes version 3 only. Type 2
#: (EVM_XATTR_HMAC) and 5 (EVM_XATTR_PORTABLE_DIGSIG) belong in security.evm.
KERNEL_XATTR_RULES: Final[dict[int, tuple[tuple[range, XattrOutcome], ...]]] = {
    XattrKind.DIGEST: ((range(256), _O.DIGEST),),
    XattrKind.DIGEST_NG: ((range(256), _O.DIGEST_NG),),
    XattrKind.DIGSIG: ((range(0, 1), _O.UNSUPPORTED_VERSION),
                       (range(1, 2), _O.SIGNATURE_V1),
                       (range(2, 3), _O.SIGNATURE_V2),
                       (range(3, 256), _O.INVALID_VERSION)),
    XattrKind.VERITY_DIGSIG: ((range(0, 3), _O.INVALID_VERSION),
                              (range(3, 4), _O.SIGNATURE_V3),
                              (range(4, 256), _O.INVALID_VERSION)),
}

#: HASH_ALGO__LAST: 20 before sha3-256/384/512 joined ``enum hash_algo`` (6.7), 23 after
_HASH_ALGO_LAST_BEFORE_SHA3: Final = 20


def kernel_xattr_outcome(type_byte: int, version_byte: int) -> XattrOutcome:
    """The kernel's verdict class for a security.ima value starting with these bytes.

    >>> kernel_xattr_outcome(3, 2).value, kernel_xattr_outcome(3, 3).value
    ('sig-v2', 'invalid-signature-version')
    >>> kernel_xattr_outcome(6, 3).value, kernel_xattr_outcome(5, 2).value
    ('sig-v3', 'unknown-ima-data')
    """
    for versions, outcome in KERNEL_XATTR_RULES.get(type_byte, ()):
        if version_byte in versions:
            return outcome
    return XattrOutcome.UNKNOWN_TYPE


def kernel_digest_matches(value: bytes, content: bytes, *,
                          ima_hash: HashAlgorithm = HashAlgorithm.SHA256) -> bool:
    """xattr_verify's comparison for the digest forms (type 1 and 4), with the hash
    ``ima_get_hash_algo`` picks: IMA_XATTR_DIGEST_NG's hash_algo byte (``ima_hash`` when it
    is >= HASH_ALGO__LAST); IMA_XATTR_DIGEST of 21 bytes is SHA-1 (MD5 when its bytes 16-19
    are zero), of 17 bytes MD5, any other length ``ima_hash``. The value may be longer than
    the digest ("md5 hash in previous version occupied 20 bytes"): only the digest's length
    is compared. A hash imasim does not implement never matches.

    >>> d = HashAlgorithm.SHA256.hash(b"x")
    >>> kernel_digest_matches(bytes([4, 4]) + d + b"tail", b"x")
    True
    >>> kernel_digest_matches(bytes([4, 200]) + d, b"x")   # unknown algo: ima_hash
    True
    """
    if not value or value[0] not in (XattrKind.DIGEST, XattrKind.DIGEST_NG):
        return False
    start = 2 if value[0] == XattrKind.DIGEST_NG else 1
    number = ima_hash.hash_algo
    if len(value) >= 2:
        if value[0] == XattrKind.DIGEST_NG:
            number = value[1] if value[1] < HASH_ALGO_LAST else number
        elif len(value) == 21:
            number = 1 if value[17:21] == bytes(4) else 2
        elif len(value) == 17:
            number = 1
    try:
        digest = HashAlgorithm.from_hash_algo(number).hash(content)
    except UnsupportedAlgorithmError:  # unknown here, or not in this OpenSSL (md4)
        return False
    return value[start:start + len(digest)] == digest and len(value) - start >= len(digest)


class XattrRejectedError(SignatureInvalidError):
    """The kernel refuses this security.ima value before any key is used; ``outcome``
    says how (its ``value`` is the audit cause)."""

    def __init__(self, message: str, outcome: XattrOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class XattrValue:
    """A parsed security.ima value; ``raw`` is the value exactly as stored."""

    kind: XattrKind
    hash_algo: HashAlgorithm | None
    digest: bytes = b""
    version: int = 0
    keyid: bytes = b""
    signature: bytes = b""
    raw: bytes = field(default=b"", repr=False)

    @property
    def is_signature(self) -> bool:
        return self.kind in (XattrKind.DIGSIG, XattrKind.EVM_PORTABLE_DIGSIG,
                             XattrKind.VERITY_DIGSIG)

    def to_bytes(self) -> bytes:
        if self.raw:
            return self.raw
        if self.kind is XattrKind.DIGEST:
            return bytes([self.kind]) + self.digest
        assert self.hash_algo is not None
        if self.kind is XattrKind.DIGEST_NG:
            return bytes([self.kind, self.hash_algo.hash_algo]) + self.digest
        return _HDR.pack(self.kind, self.version, self.hash_algo.hash_algo,
                         int.from_bytes(self.keyid, "big"), len(self.signature)) + self.signature


def parse_xattr(data: bytes | bytearray | memoryview) -> XattrValue:
    """Parse a security.ima value (only ParseError escapes; an unknown hash algorithm is
    :class:`~imasim.errors.UnknownAlgorithmError`)."""
    buf = bytes(data)
    r = Reader(buf, order=">", path=("security.ima",))
    t = r.u8("type")
    try:
        kind = XattrKind(t)
    except ValueError:
        raise ParseError("unknown security.ima type", offset=0, field="type",
                         actual=hex(t)) from None
    if kind is XattrKind.DIGEST:
        d = r.rest()
        if len(d) not in (16, 20):
            raise ParseError("IMA_XATTR_DIGEST holds a 16- or 20-byte digest", offset=1,
                             field="digest", actual=len(d))
        alg = HashAlgorithm.SHA1 if len(d) == 20 else HashAlgorithm.MD5
        return XattrValue(kind, alg, bytes(d), raw=buf)
    if kind is XattrKind.DIGEST_NG:
        alg = _hash_algo(r.u8("hash_algo"), 1)
        d = r.rest()
        if len(d) != alg.digest_size:
            raise ParseError("digest size does not match the algorithm", offset=2,
                             field="digest", expected=alg.digest_size, actual=len(d))
        return XattrValue(kind, alg, bytes(d), raw=buf)
    version = r.u8("version")
    algo = r.u8("hash_algo")
    keyid = r.take(4, "keyid")
    size = r.u16("sig_size")
    if size != r.remaining:
        raise ParseError("sig_size does not match the value length", offset=7,
                         field="sig_size", expected=r.remaining, actual=size)
    if version not in (2, 3):
        raise ParseError("unsupported signature version", offset=1, field="version",
                         actual=version)
    if size == 0:
        raise ParseError("empty signature", offset=7, field="sig_size")
    return XattrValue(kind, _hash_algo(algo, 2), version=version, keyid=keyid,
                      signature=bytes(r.rest()), raw=buf)


def _hash_algo(n: int, offset: int) -> HashAlgorithm:
    """Decoding: an unknown number is bad input (UnknownAlgorithmError, a ParseError);
    :func:`verify_xattr` turns it into the kernel's -ENOPKG."""
    if n >= HASH_ALGO_LAST:
        raise UnknownAlgorithmError(f"hash_algo {n} is out of range", offset=offset,
                                    field="hash_algo", actual=n)
    try:
        return HashAlgorithm.from_hash_algo(n)
    except UnsupportedAlgorithmError:
        raise UnknownAlgorithmError("unknown hash algorithm", offset=offset,
                                    field="hash_algo", actual=n) from None


def _signed_digest(kind: XattrKind, version: int, alg: HashAlgorithm, file_digest: bytes) -> bytes:
    if version == 3:
        return alg.hash(bytes([kind, alg.hash_algo]) + file_digest)  # struct ima_file_id
    return file_digest


def sign_xattr(file_digest: bytes, *, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
               keyid: bytes, hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
               version: int = 2, kind: XattrKind | None = None) -> bytes:
    """A security.ima signature as ``evmctl ima_sign`` writes it (v2, type 3), or v3 (type
    6, IMA_VERITY_DIGSIG, as ``evmctl sign --veritysig``): the kinds the kernel takes."""
    if kind is None:
        kind = XattrKind.VERITY_DIGSIG if version == 3 else XattrKind.DIGSIG
    if len(file_digest) != hash_alg.digest_size:
        raise ParseError("file digest size does not match the algorithm", field="digest")
    if len(keyid) != 4:
        raise ParseError("keyid is 4 bytes", field="keyid", actual=len(keyid))
    digest = _signed_digest(kind, version, hash_alg, file_digest)
    pre = utils.Prehashed(_crypto_hash(hash_alg))
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(digest, padding.PKCS1v15(), pre)
    else:
        sig = key.sign(digest, ec.ECDSA(pre, deterministic_signing=True))
    return XattrValue(kind, hash_alg, version=version, keyid=keyid, signature=sig).to_bytes()


def verify_xattr(value: XattrValue | bytes, file_digest: bytes, *, keyring: Keyring,
                 blacklist: Blacklist | None = None,
                 kernel_version: tuple[int, int] = (6, 12)) -> Key:
    """xattr_verify for a security.ima signature: the kernel's type/version table
    (:data:`KERNEL_XATTR_RULES`), then asymmetric_verify: the key id:<keyid> in
    ``keyring``, over the file digest (v2) or H(ima_file_id) (v3, IMA_VERITY_DIGSIG).

    ``file_digest`` is the file's digest in the signature's hash algorithm (for v3, the
    fs-verity digest when the rule asks for verity). Raises XattrRejectedError (a
    type/version the kernel refuses), KeyNotFoundError (-ENOKEY), RevokedError,
    SignatureInvalidError, ParseError, UnsupportedAlgorithmError (-ENOPKG).
    """
    raw = value.to_bytes() if isinstance(value, XattrValue) else bytes(value)
    if len(raw) < 2:
        raise ParseError("security.ima is shorter than type and version", offset=len(raw),
                         field="version")
    outcome = kernel_xattr_outcome(raw[0], raw[1])
    if outcome in (XattrOutcome.DIGEST, XattrOutcome.DIGEST_NG):
        raise ParseError("security.ima holds a digest, not a signature", field="type")
    if outcome is XattrOutcome.SIGNATURE_V1:
        raise KeyNotFoundError("a digsig v1 signature names a 'user' key; "
                               f"{keyring.name} holds asymmetric keys only")
    if not outcome.passes_if_verified:
        raise XattrRejectedError(f"security.ima type {raw[0]} version {raw[1]}: "
                                 f"the kernel refuses it ({outcome.value})", outcome)
    try:
        v = value if isinstance(value, XattrValue) else parse_xattr(raw)
    except UnknownAlgorithmError as exc:  # asymmetric_verify: hash_algo >= HASH_ALGO__LAST
        raise UnsupportedAlgorithmError(f"{exc} (-ENOPKG)") from None
    assert v.hash_algo is not None
    if kernel_version < (6, 7) and v.hash_algo.hash_algo >= _HASH_ALGO_LAST_BEFORE_SHA3:
        raise UnsupportedAlgorithmError(
            f"hash_algo {v.hash_algo.hash_algo} is beyond HASH_ALGO__LAST before 6.7 (-ENOPKG)")
    return _verify_signature(v, file_digest, keyring=keyring, blacklist=blacklist)


def _verify_signature(v: XattrValue, digest_in: bytes, *, keyring: Keyring,
                      blacklist: Blacklist | None) -> Key:
    """asymmetric_verify of a parsed signature_v2_hdr value (security.ima or security.evm)."""
    assert v.hash_algo is not None
    key = keyring.find_asymmetric_key(v.keyid, partial=True)
    if key is None:
        raise KeyNotFoundError(f"no key id:{v.keyid.hex()} in {keyring.name}")
    bl = blacklist if blacklist is not None else keyring.blacklist
    if bl is not None and bl.is_key_blocked(key):
        raise RevokedError(f"key {key.description!r} is blacklisted")
    digest = _signed_digest(v.kind, v.version, v.hash_algo, digest_in)
    pre = utils.Prehashed(_crypto_hash(v.hash_algo))
    try:
        key.verify(v.signature, digest, pre)
    except SignatureInvalidError:
        raise SignatureInvalidError(f"security.ima signature does not verify with "
                                    f"{key.description!r}") from None
    return key
