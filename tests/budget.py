"""Time and memory budgets for adversarial inputs (docs/security.md, "Bounds").

Every parser must answer an input of N MB within ``N`` seconds of CPU time and ``100 * N``
MB of Python allocations (inputs below 1 MB count as 1 MB). CPU time, not wall time, so a
loaded machine does not fail the test; peak memory from :mod:`tracemalloc` in a second run.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from imasim.errors import ImasimError

MB = 1024 * 1024


@dataclass(frozen=True)
class Spent:
    cpu: float  # seconds
    peak: int  # bytes
    error: ImasimError | None
    result: object


def spend(fn: Callable[[], object], *, memory: bool = True) -> Spent:
    """Run ``fn`` twice: once timed (CPU), once under tracemalloc (peak bytes; skipped,
    with a peak of 0, when ``memory`` is false: tracemalloc slows pyasn1 tenfold)."""
    gc.collect()
    error: ImasimError | None = None
    result: object = None
    t0 = time.process_time()
    try:
        result = fn()
    except ImasimError as exc:
        error = exc
    cpu = time.process_time() - t0
    if not memory:
        return Spent(cpu, 0, error, result)
    gc.collect()
    tracemalloc.start()
    try:
        fn()  # its result is dropped at once: the first run's is returned
    except ImasimError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return Spent(cpu, peak, error, result)


def within_budget(fn: Callable[[], object], size: int, *, seconds_per_mb: float = 1.0,
                  mb_per_mb: float = 100.0, memory: bool = True) -> Spent:
    """Assert that ``fn`` (parsing ``size`` bytes) stays within the budget; return what
    it spent and the ImasimError it raised, if any (any other exception fails the test)."""
    mbs = max(size / MB, 1.0)
    spent = spend(fn, memory=memory)
    assert spent.cpu < seconds_per_mb * mbs, (
        f"{spent.cpu:.2f} s of CPU for {size / MB:.2f} MB (budget {seconds_per_mb * mbs:.1f} s)")
    assert spent.peak < mb_per_mb * mbs * MB, (
        f"{spent.peak / MB:.1f} MB peak for {size / MB:.2f} MB (budget {mb_per_mb * mbs:.0f} MB)")
    return spent
