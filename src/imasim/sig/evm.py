"""EVM signatures in security.evm: the digest ``evm_calc_hmac_or_hash`` computes over the
protected xattrs and inode metadata, portable signatures (``evmctl sign --portable``,
type 5) and the non-portable kind (type 3), signed and verified like security.ima v2.

The digest is the hash, in the signature's algorithm, of the values of the protected
xattrs that exist (in the kernel's order, :data:`EVM_XATTRS`; names and lengths are not
hashed), then ``struct h_misc`` (x86-64 layout, 24 bytes: ``u64 ino, u32 generation, u32
uid, u32 gid, u16 mode`` and padding; ino and generation are zero in a portable
signature), then, for a non-portable one with ``EVM_ATTR_FSUUID``, the file system UUID.

>>> from cryptography.hazmat.primitives.serialization import Encoding
>>> from imasim.keys.generate import derive_ec_key, make_certificate
>>> from imasim.keys import Key, Keyring
>>> key = derive_ec_key("evm")
>>> cert = Key.from_certificate(make_certificate("evm", key).public_bytes(Encoding.DER))
>>> ring = Keyring(".evm")
>>> _ = ring.add(cert)
>>> xattrs = {"security.ima": bytes.fromhex("0404") + bytes(32)}
>>> evm = sign_evm(xattrs, uid=0, gid=0, mode=0o100755, key=key, keyid=cert.key_id_v2)
>>> evm[0]   # EVM_XATTR_PORTABLE_DIGSIG
5
>>> verify_evm(evm, xattrs, uid=0, gid=0, mode=0o100755, keyring=ring) == cert
True
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..algorithms import HashAlgorithm
from ..errors import ParseError
from ..keys.key import Key
from ..keys.keyring import Blacklist, Keyring
from .xattr import XattrKind, _verify_signature, parse_xattr, sign_xattr

__all__ = ["EVM_XATTRS", "evm_data", "evm_digest", "sign_evm", "verify_evm"]

#: evm_config_default_xattrnames, in the kernel's order (each only when its LSM is built)
EVM_XATTRS: Final = ("security.selinux", "security.SMACK64", "security.SMACK64EXEC",
                     "security.SMACK64TRANSMUTE", "security.SMACK64MMAP",
                     "security.apparmor", "security.ima", "security.capability")
_H_MISC: Final = struct.Struct("<QIIIH2x")


def evm_data(xattrs: Mapping[str, bytes], *, uid: int, gid: int, mode: int,
             portable: bool = True, ino: int = 0, generation: int = 0,
             fs_uuid: bytes | None = None, names: Sequence[str] = EVM_XATTRS) -> bytes:
    """The bytes evm_calc_hmac_or_hash feeds to the hash (or to HMAC-SHA1 for an
    EVM_XATTR_HMAC value): protected xattr values, h_misc, the UUID when bound."""
    if not 0 <= uid < 1 << 32 or not 0 <= gid < 1 << 32 or not 0 <= mode < 1 << 16:
        raise ParseError("uid, gid or mode out of range", field="h_misc")
    parts = [xattrs[n] for n in names if n in xattrs]
    parts.append(_H_MISC.pack(0 if portable else ino, 0 if portable else generation, uid,
                              gid, mode))
    if fs_uuid is not None and not portable:
        parts.append(fs_uuid)
    return b"".join(parts)


def evm_digest(xattrs: Mapping[str, bytes], *, uid: int, gid: int, mode: int,
               alg: HashAlgorithm = HashAlgorithm.SHA256, portable: bool = True,
               ino: int = 0, generation: int = 0, fs_uuid: bytes | None = None,
               names: Sequence[str] = EVM_XATTRS) -> bytes:
    """evm_calc_hash for a portable (type 5) or an inode-bound (type 3) signature."""
    return alg.hash(evm_data(xattrs, uid=uid, gid=gid, mode=mode, portable=portable, ino=ino,
                             generation=generation, fs_uuid=fs_uuid, names=names))


def sign_evm(xattrs: Mapping[str, bytes], *, uid: int, gid: int, mode: int,
             key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, keyid: bytes,
             hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
             names: Sequence[str] = EVM_XATTRS) -> bytes:
    """A portable security.evm signature as ``evmctl sign --portable`` writes it."""
    digest = evm_digest(xattrs, uid=uid, gid=gid, mode=mode, alg=hash_alg, names=names)
    return sign_xattr(digest, key=key, keyid=keyid, hash_alg=hash_alg,
                      kind=XattrKind.EVM_PORTABLE_DIGSIG)


def verify_evm(value: bytes, xattrs: Mapping[str, bytes], *, uid: int, gid: int, mode: int,
               keyring: Keyring, blacklist: Blacklist | None = None, ino: int = 0,
               generation: int = 0, fs_uuid: bytes | None = None,
               names: Sequence[str] = EVM_XATTRS) -> Key:
    """evm_verify_hmac for a signature in security.evm (portable, or type 3 bound to
    ``ino``/``generation``/``fs_uuid``); the key that verified, or the errors of
    :func:`~imasim.sig.xattr.verify_xattr`."""
    v = parse_xattr(value)
    if v.kind not in (XattrKind.EVM_PORTABLE_DIGSIG, XattrKind.DIGSIG) or v.version != 2:
        raise ParseError("security.evm holds no v2 signature", field="type",
                         actual=hex(value[0]) if value else None)
    assert v.hash_algo is not None
    digest = evm_digest(xattrs, uid=uid, gid=gid, mode=mode, alg=v.hash_algo,
                        portable=v.kind is XattrKind.EVM_PORTABLE_DIGSIG, ino=ino,
                        generation=generation, fs_uuid=fs_uuid, names=names)
    return _verify_signature(v, digest, keyring=keyring, blacklist=blacklist)
