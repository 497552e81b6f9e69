"""The digests IPE's verity properties compare: the fs-verity file digest
(``fsverity_digest``, as ``fsverity digest`` prints it), fs-verity built-in signatures
(``fsverity_signature``), and the dm-verity root hash (``dmverity_roothash``, as
``veritysetup format`` prints it).

fs-verity (Documentation/filesystems/fsverity.rst): a Merkle tree over 4096-byte blocks
(the last one zero-padded), hashes packed into 4096-byte blocks level by level until one
block is left; the root hash is the hash of that block (of the only data block for a
one-block file; all zeros for an empty file). The file digest is the hash of the
256-byte ``struct fsverity_descriptor``. A built-in signature is a detached PKCS#7 over
``struct fsverity_formatted_digest`` ("FSVerity", le16 algorithm, le16 size, digest),
checked against the ``.fs-verity`` keyring.

dm-verity (format 1, cryptsetup's VERITY_create_hash): the same tree with every block
hashed as ``H(salt || block)``; the root hash is ``H(salt || top block)`` (the data block
itself for a one-block device).

>>> fsverity_digest(b"hello\\n")[1].hex()[:16]
'9c76eecc7b76fcb4'
>>> len(dm_verity_root_hash(bytes(8192), salt=bytes(32)))
32
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..algorithms import HashAlgorithm
from ..errors import UsageError
from ..keys.key import Key
from ..keys.keyring import Keyring
from ..sig.pkcs7 import Usage, sign_pkcs7, verify_pkcs7

__all__ = [
    "dm_verity_root_hash",
    "fsverity_digest",
    "fsverity_formatted_digest",
    "sign_fsverity",
    "verify_fsverity_signature",
]

_BLOCK: Final = 4096
_FSV_ALGS: Final = {HashAlgorithm.SHA256: 1, HashAlgorithm.SHA512: 2}


def _merkle_root(data: bytes | memoryview, alg: HashAlgorithm, salt: bytes) -> bytes:
    """The top of the tree (see the module docstring): the hash of the only block left."""
    mv = memoryview(data)
    new = alg.new
    blocks = [mv[i:i + _BLOCK] for i in range(0, len(mv), _BLOCK)] or [mv[:0]]
    while len(blocks) > 1:
        level = b"".join(_hash_block(new, salt, b) for b in blocks)
        blocks = [memoryview(level)[i:i + _BLOCK] for i in range(0, len(level), _BLOCK)]
    return _hash_block(new, salt, blocks[0])


def _hash_block(new: object, salt: bytes, block: memoryview | bytes) -> bytes:
    h = new(salt)  # type: ignore[operator]
    h.update(block)
    if len(block) < _BLOCK:
        h.update(bytes(_BLOCK - len(block)))
    out: bytes = h.digest()
    return out


def fsverity_digest(data: bytes | memoryview, alg: HashAlgorithm = HashAlgorithm.SHA256
                    ) -> tuple[str, bytes]:
    """The fs-verity file digest: (algorithm name, digest) as ``fsverity digest`` gives
    ``sha256:<hex>`` (block size 4096, no salt)."""
    if alg not in _FSV_ALGS:
        raise UsageError(f"fs-verity supports sha256 and sha512, not {alg.kernel_name}")
    root = bytes(alg.digest_size) if len(data) == 0 else \
        _merkle_root(data, alg, b"")
    desc = struct.pack("<BBBBIQ", 1, _FSV_ALGS[alg], 12, 0, 0, len(data))
    desc += root.ljust(64, b"\0") + bytes(32) + bytes(144)
    return alg.kernel_name, alg.hash(desc)


def fsverity_formatted_digest(alg: HashAlgorithm, digest: bytes) -> bytes:
    """struct fsverity_formatted_digest: what a built-in signature signs."""
    return b"FSVerity" + struct.pack("<HH", _FSV_ALGS[alg], len(digest)) + digest


def sign_fsverity(data: bytes, *, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                  certificate: x509.Certificate,
                  alg: HashAlgorithm = HashAlgorithm.SHA256) -> bytes:
    """A built-in signature as ``fsverity sign`` makes it (detached PKCS#7, no signed
    attributes, the certificate not embedded)."""
    _, digest = fsverity_digest(data, alg)
    return sign_pkcs7(fsverity_formatted_digest(alg, digest), key=key, certificate=certificate,
                      hash_alg=alg, detached=True, include_certificate=False,
                      signed_attributes=False)


def verify_fsverity_signature(data: bytes, signature: bytes, keyring: Keyring,
                              alg: HashAlgorithm = HashAlgorithm.SHA256) -> Key:
    """fsverity_verify_signature: the signature over the file's formatted digest, against
    ``keyring`` (the ``.fs-verity`` keyring); the kernel's errors otherwise."""
    _, digest = fsverity_digest(data, alg)
    return verify_pkcs7(signature, fsverity_formatted_digest(alg, digest), keyring=keyring,
                        usage=Usage.UNSPECIFIED_SIGNATURE).trusted_key


def dm_verity_root_hash(data: bytes | memoryview, *, salt: bytes,
                        alg: HashAlgorithm = HashAlgorithm.SHA256) -> bytes:
    """The root hash ``veritysetup format`` computes for a data device (format 1, 4096-byte
    data and hash blocks, the given salt)."""
    if len(data) % _BLOCK or not data:
        raise UsageError("a dm-verity data device is a non-empty multiple of 4096 bytes")
    return _merkle_root(data, alg, salt)
