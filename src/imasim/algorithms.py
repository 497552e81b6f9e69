"""One table of the hash algorithms the integrity stack names.

Each algorithm has the name the kernel uses (``hash_algo_name[]`` in
``crypto/hash_info.c``), its digest size, its TPM_ALG_ID (TCG Algorithm Registry, the
kernel's ``enum tpm_algorithms``) where the TPM knows it, and its ``enum hash_algo``
number (``include/uapi/linux/hash_info.h``) which security.ima and signature headers
carry.

>>> HashAlgorithm.SHA256.digest_size
32
>>> HashAlgorithm.from_name("sha256").tpm_alg_id
11
>>> HashAlgorithm.from_hash_algo(2).name
'SHA1'
>>> HashAlgorithm.SHA256.hash(b"abc").hex()[:16]
'ba7816bf8f01cfea'
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from .errors import UnsupportedAlgorithmError

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["TPM_BANK_ALGORITHMS", "HashAlgorithm"]


class HashAlgorithm(enum.Enum):
    """name, digest size, TPM_ALG_ID (or None), kernel HASH_ALGO number, hashlib name."""

    MD4 = ("md4", 16, None, 0, "md4")
    MD5 = ("md5", 16, None, 1, "md5")
    SHA1 = ("sha1", 20, 0x0004, 2, "sha1")
    RIPE_MD_160 = ("rmd160", 20, None, 3, "ripemd160")
    SHA256 = ("sha256", 32, 0x000B, 4, "sha256")
    SHA384 = ("sha384", 48, 0x000C, 5, "sha384")
    SHA512 = ("sha512", 64, 0x000D, 6, "sha512")
    SHA224 = ("sha224", 28, None, 7, "sha224")
    SM3_256 = ("sm3", 32, 0x0012, 17, "sm3")
    SHA3_256 = ("sha3-256", 32, 0x0027, 20, "sha3_256")
    SHA3_384 = ("sha3-384", 48, 0x0028, 21, "sha3_384")
    SHA3_512 = ("sha3-512", 64, 0x0029, 22, "sha3_512")

    def __init__(
        self, kname: str, digest_size: int, tpm_alg_id: int | None, hash_algo: int, pyname: str
    ) -> None:
        self.kernel_name: Final = kname
        self.digest_size: Final = digest_size
        self.tpm_alg_id: Final = tpm_alg_id
        self.hash_algo: Final = hash_algo
        self._pyname: Final = pyname

    # -- lookup -----------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str) -> HashAlgorithm:
        """Look up by kernel name (``sha256``, ``sm3``, ``sm3-256``), case-insensitive."""
        key = name.strip().lower()
        found = _BY_NAME.get(key)
        if found is None:
            raise UnsupportedAlgorithmError(f"unknown hash algorithm {name!r}")
        return found

    @classmethod
    def from_tpm_alg_id(cls, alg_id: int) -> HashAlgorithm:
        for alg in cls:
            if alg.tpm_alg_id == alg_id:
                return alg
        raise UnsupportedAlgorithmError(f"unknown TPM hash algorithm id {alg_id:#06x}")

    @classmethod
    def from_hash_algo(cls, number: int) -> HashAlgorithm:
        """Look up by the kernel's ``enum hash_algo`` value."""
        for alg in cls:
            if alg.hash_algo == number:
                return alg
        raise UnsupportedAlgorithmError(f"unsupported kernel hash_algo {number}")

    # -- hashing ----------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """Whether the local OpenSSL provides this algorithm."""
        try:
            hashlib.new(self._pyname)
        except ValueError:
            return False
        return True

    def new(self, data: bytes | memoryview = b"") -> _Hash:
        """A fresh hashlib object (raises UnsupportedAlgorithmError if OpenSSL lacks it)."""
        try:
            return hashlib.new(self._pyname, data)
        except ValueError as exc:
            raise UnsupportedAlgorithmError(
                f"{self.kernel_name} is not available in this Python/OpenSSL"
            ) from exc

    def constructor(self) -> Callable[[bytes | memoryview], _Hash]:
        """The fastest hashlib constructor for this algorithm (for hot loops)."""
        fn = getattr(hashlib, self._pyname, None)
        if fn is not None:
            return fn  # type: ignore[no-any-return]
        name = self._pyname
        self.new()  # raises UnsupportedAlgorithmError if OpenSSL lacks it

        def make(data: bytes | memoryview = b"") -> _Hash:
            return hashlib.new(name, data)

        return make

    def hash(self, data: bytes | memoryview) -> bytes:
        return self.new(data).digest()

    @property
    def zero(self) -> bytes:
        """A digest of all zero bytes (a reset PCR, a violation's stored digest)."""
        return bytes(self.digest_size)

    @property
    def ones(self) -> bytes:
        """A digest of all 0xff bytes (PCRs 17-22 after startup, a violation's extend)."""
        return b"\xff" * self.digest_size

    def __str__(self) -> str:
        return self.kernel_name


_BY_NAME: Final[dict[str, HashAlgorithm]] = {}
for _alg in HashAlgorithm:
    _BY_NAME[_alg.kernel_name] = _alg
    _BY_NAME[_alg.name.lower()] = _alg
_BY_NAME["sm3-256"] = HashAlgorithm.SM3_256
_BY_NAME["sha3_256"] = HashAlgorithm.SHA3_256
_BY_NAME["sha3_384"] = HashAlgorithm.SHA3_384
_BY_NAME["sha3_512"] = HashAlgorithm.SHA3_512

#: The five algorithms a TPM PCR bank can use in imasim, in TPM_ALG_ID order.
TPM_BANK_ALGORITHMS: Final[tuple[HashAlgorithm, ...]] = (
    HashAlgorithm.SHA1,
    HashAlgorithm.SHA256,
    HashAlgorithm.SHA384,
    HashAlgorithm.SHA512,
    HashAlgorithm.SM3_256,
)
