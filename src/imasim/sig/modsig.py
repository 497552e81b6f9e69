"""include/linux/module_signature.h and kernel/module_signature.c: appended signatures.

A signed module (or any file carrying an IMA ``modsig``) is::

    payload | PKCS#7 SignedData (S bytes) | struct module_signature (12 bytes) |
    "~Module signature appended~\\n"

``struct module_signature``: u8 algo, hash, id_type (2 = PKCS#7), signer_len,
key_id_len, u8 __pad[3], __be32 sig_len.

>>> from imasim.sig.modsig import MODULE_SIG_STRING
>>> MODULE_SIG_STRING
b'~Module signature appended~\\n'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..algorithms import HashAlgorithm
from ..errors import ParseError, UnsignedError, UnsupportedAlgorithmError
from ..keys.keyring import Blacklist, Keyring
from .pkcs7 import SignedData, Usage, VerifiedSignature, parse_pkcs7, sign_pkcs7, verify_pkcs7

__all__ = [
    "MODULE_SIG_STRING",
    "PKEY_ID_PKCS7",
    "ModuleSignature",
    "append_signature",
    "parse_modsig",
    "sign_module",
    "split_modsig",
    "verify_modsig",
]

MODULE_SIG_STRING: Final = b"~Module signature appended~\n"
PKEY_ID_PKCS7: Final = 2
_STRUCT: Final = struct.Struct(">BBBBB3sI")


@dataclass(frozen=True, slots=True)
class ModuleSignature:
    """The parsed trailer: the PKCS#7 blob and the offsets of everything."""

    payload_len: int
    pkcs7: bytes = field(repr=False)
    signed_data: SignedData = field(repr=False)

    def to_bytes(self) -> bytes:
        """The trailer as it follows the payload."""
        return self.pkcs7 + _STRUCT.pack(0, 0, PKEY_ID_PKCS7, 0, 0, b"\0\0\0",
                                         len(self.pkcs7)) + MODULE_SIG_STRING


def split_modsig(data: bytes | bytearray | memoryview) -> tuple[bytes, ModuleSignature] | None:
    """mod_check_sig + mod_split_sig: ``(payload, signature)``, or None when unsigned.

    Raises ParseError for a malformed trailer (-EBADMSG) and UnsupportedAlgorithmError
    for an id_type other than PKCS#7 (-ENOPKG).
    """
    buf = bytes(data)
    n = len(buf)
    if n <= len(MODULE_SIG_STRING) or not buf.endswith(MODULE_SIG_STRING):
        return None
    n -= len(MODULE_SIG_STRING)
    if n <= _STRUCT.size:
        raise ParseError("no room for struct module_signature", offset=0,
                         field="module_signature")
    off = n - _STRUCT.size
    algo, hsh, id_type, signer_len, key_id_len, pad, sig_len = _STRUCT.unpack_from(buf, off)
    if sig_len >= n - _STRUCT.size:
        raise ParseError("sig_len exceeds the file", offset=off + 8, field="sig_len",
                         expected=f"< {n - _STRUCT.size}", actual=sig_len)
    if id_type != PKEY_ID_PKCS7:
        raise UnsupportedAlgorithmError(f"module signature id_type {id_type} is not PKCS#7")
    if algo or hsh or signer_len or key_id_len or pad != b"\0\0\0":
        raise ParseError("non-zero reserved fields in struct module_signature", offset=off,
                         field="module_signature")
    start = off - sig_len
    blob = buf[start:off]
    try:
        sd = parse_pkcs7(blob)
    except ParseError as exc:
        raise exc.with_path("modsig", shift=start) from None
    return buf[:start], ModuleSignature(start, blob, sd)


def parse_modsig(data: bytes) -> tuple[bytes, ModuleSignature]:
    """As :func:`split_modsig`, but an unsigned file is a ParseError."""
    got = split_modsig(data)
    if got is None:
        raise ParseError("no appended signature (marker missing)", offset=max(len(data) - 28, 0),
                         field="marker")
    return got


def verify_modsig(data: bytes, *, keyring: Keyring, blacklist: Blacklist | None = None,
                  usage: Usage = Usage.MODULE_SIGNATURE) -> VerifiedSignature:
    """mod_verify_sig: verify the appended signature against ``keyring``.

    The kernel passes VERIFY_USE_SECONDARY_KEYRING for modules: give the machine's
    secondary keyring (which links the builtin one) to do the same. A file without the
    marker raises UnsignedError (module_sig_check's -ENODATA), a malformed trailer
    ParseError (-EBADMSG).
    """
    got = split_modsig(data)
    if got is None:
        raise UnsignedError("no appended signature (the marker is missing)")
    payload, sig = got
    return verify_pkcs7(sig.signed_data, payload, keyring=keyring, usage=usage,
                        blacklist=blacklist)


def append_signature(payload: bytes, pkcs7_der: bytes) -> bytes:
    """``sign-file -s``: append an existing PKCS#7 blob, the struct and the marker."""
    return payload + pkcs7_der + _STRUCT.pack(0, 0, PKEY_ID_PKCS7, 0, 0, b"\0\0\0",
                                              len(pkcs7_der)) + MODULE_SIG_STRING


def sign_module(payload: bytes, *, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                certificate: x509.Certificate, hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
                use_key_id: bool = False, include_certificate: bool = False) -> bytes:
    """What ``scripts/sign-file <hash> key cert module`` writes."""
    blob = sign_pkcs7(payload, key=key, certificate=certificate, hash_alg=hash_alg,
                      use_key_id=use_key_id, include_certificate=include_certificate)
    return append_signature(payload, blob)
