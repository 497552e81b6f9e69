"""PCR values and what vouches for them.

A verifier takes PCR values from exactly one place: the :class:`PcrBanks` a verified quote
returns (:attr:`imasim.tpm.verify.VerifiedQuote.pcrs`), which holds the values the quote's
pcrDigest covers and nothing else. Values read from a machine without a quote (a
``pcrs.json``, ``tpm2_pcrread`` output) can be wrapped with :meth:`PcrBanks.unauthenticated`;
every report built on them says so.

>>> from imasim.algorithms import HashAlgorithm as H
>>> pcrs = PcrBanks.unauthenticated({H.SHA256: {10: bytes(32)}})
>>> pcrs.authenticated, pcrs.source.value
(False, 'unauthenticated')
>>> pcrs[H.SHA256][10] == bytes(32)
True
>>> pcrs.value(H.SHA256, 11) is None
True
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from ..algorithms import HashAlgorithm
from ..errors import UsageError

__all__ = ["PcrBanks", "PcrSource"]

_MAX_PCR = 32  # TPM_PT_PCR_COUNT is 24 on a PC Client TPM; a selection bitmap can say 32


class PcrSource(enum.Enum):
    """What vouches for a set of PCR values."""

    QUOTE = "quote"
    """Covered by the pcrDigest of a quote whose signature and nonce verified."""
    UNAUTHENTICATED = "unauthenticated"
    """Read from a machine (a file, ``tpm2_pcrread``) with no quote: anyone could write them."""


class PcrBanks(Mapping[HashAlgorithm, Mapping[int, bytes]]):
    """Immutable PCR values (bank -> PCR index -> value) with their :class:`PcrSource`.

    Only :func:`imasim.tpm.verify.verify_quote` makes ``PcrSource.QUOTE`` values; user code
    wraps values it read itself with :meth:`unauthenticated`.
    """

    __slots__ = ("_banks", "_source")

    _banks: Mapping[HashAlgorithm, Mapping[int, bytes]]
    _source: PcrSource

    def __init__(self, values: Mapping[HashAlgorithm, Mapping[int, bytes]], *,
                 source: PcrSource) -> None:
        banks: dict[HashAlgorithm, Mapping[int, bytes]] = {}
        for alg, bank in values.items():
            if not isinstance(alg, HashAlgorithm):
                raise UsageError(f"bank {alg!r} is not a HashAlgorithm")
            checked: dict[int, bytes] = {}
            for idx, value in sorted(bank.items()):
                if not isinstance(idx, int) or not 0 <= idx < _MAX_PCR:
                    raise UsageError(f"{alg.kernel_name} PCR index {idx!r} out of range")
                value = bytes(value)
                if len(value) != alg.digest_size:
                    raise UsageError(f"{alg.kernel_name} PCR {idx} has {len(value)} bytes, "
                                     f"not {alg.digest_size}")
                checked[idx] = value
            banks[alg] = MappingProxyType(checked)
        object.__setattr__(self, "_banks", MappingProxyType(banks))
        object.__setattr__(self, "_source", source)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PcrBanks is immutable")

    @classmethod
    def unauthenticated(cls, values: Mapping[HashAlgorithm, Mapping[int, bytes]]) -> PcrBanks:
        """PCR values that no quote vouches for (read from a file or ``tpm2_pcrread``)."""
        return cls(values, source=PcrSource.UNAUTHENTICATED)

    @property
    def source(self) -> PcrSource:
        """What vouches for these values."""
        return self._source

    @property
    def authenticated(self) -> bool:
        """True when a verified quote covers every value here."""
        return self._source is PcrSource.QUOTE

    def value(self, bank: HashAlgorithm, pcr: int) -> bytes | None:
        """One PCR's value, or None when this set does not hold it."""
        return self._banks.get(bank, {}).get(pcr)

    def pcr_indices(self) -> frozenset[int]:
        """Every PCR index held in at least one bank."""
        return frozenset(i for b in self._banks.values() for i in b)

    def covers(self, pcr: int) -> bool:
        """Does every bank here hold ``pcr``? (False when there are no banks.)"""
        return bool(self._banks) and all(pcr in b for b in self._banks.values())

    def to_dict(self) -> dict[str, dict[str, str]]:
        """``{"sha256": {"10": "<hex>"}}``, the shape ``imasim log replay --json`` prints."""
        return {a.kernel_name: {str(i): v.hex() for i, v in b.items()}
                for a, b in self._banks.items()}

    def __getitem__(self, bank: HashAlgorithm) -> Mapping[int, bytes]:
        return self._banks[bank]

    def __iter__(self) -> Iterator[HashAlgorithm]:
        return iter(self._banks)

    def __len__(self) -> int:
        return len(self._banks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PcrBanks):
            return NotImplemented
        return self._source is other._source and dict(self._banks) == dict(other._banks)

    def __hash__(self) -> int:
        return hash((self._source, tuple((a, tuple(b.items())) for a, b in self._banks.items())))

    def __repr__(self) -> str:
        sel = ", ".join(f"{a.kernel_name}:{','.join(map(str, b)) or '-'}"
                        for a, b in self._banks.items())
        return f"<PcrBanks {self._source.value} {sel or 'empty'}>"
