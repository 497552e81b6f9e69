"""Injected time and randomness, so every simulation is deterministic unless asked not to be.

>>> clock = FixedClock(1_700_000_000.0)
>>> clock.now()
1700000000.0
>>> clock.advance(1.5); clock.now()
1700000001.5
>>> SeededEntropy(b"seed").random_bytes(4) == SeededEntropy(b"seed").random_bytes(4)
True
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "Entropy", "FixedClock", "SeededEntropy", "SystemClock", "SystemEntropy"]


@runtime_checkable
class Clock(Protocol):
    """A source of time in seconds since the epoch."""

    def now(self) -> float: ...


@runtime_checkable
class Entropy(Protocol):
    """A source of random bytes."""

    def random_bytes(self, n: int) -> bytes: ...


class FixedClock:
    """A clock that moves only when told to (the default in simulations)."""

    __slots__ = ("_t",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds

    def __repr__(self) -> str:
        return f"FixedClock({self._t!r})"


class SystemClock:
    """The wall clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class SeededEntropy:
    """Deterministic bytes: SHA-256 in counter mode over a seed (not for real secrets)."""

    __slots__ = ("_counter", "_seed")

    def __init__(self, seed: bytes | str | int = b"imasim") -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = bytes(seed)
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return bytes(out[:n])

    def __repr__(self) -> str:
        return f"SeededEntropy(seed={self._seed!r})"


class SystemEntropy:
    """The operating system's randomness."""

    __slots__ = ()

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)
