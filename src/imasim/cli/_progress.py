"""Progress on stderr for long work (big lists), shown only when stderr is a terminal.

Nothing is printed when stderr is a pipe or a file, so scripts and CI logs see exactly
what they saw before; on a terminal, a single line is rewritten in place once the work
has taken longer than ``DELAY`` seconds, and cleared when it ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO, TypeVar, overload

T = TypeVar("T")

#: seconds of work before the first progress line (short work prints nothing)
DELAY = 0.5
#: seconds between two updates of the line
INTERVAL = 0.1
#: items between two looks at the clock
STEP = 4096


class Progress:
    """One progress line: ``label: 42% (420000/1000000 entries)``."""

    def __init__(self, label: str, total: int, unit: str = "entries") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.enabled = sys.stderr.isatty()
        self._start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start < DELAY or now - self._last < INTERVAL:
            return
        self._last = now
        pct = f"{100 * self.done // self.total}% " if self.total else ""
        sys.stderr.write(f"\r{self.label}: {pct}({self.done}/{self.total} {self.unit})\033[K")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False


class Tracked(Sequence[T]):
    """A sequence whose every full pass reports progress (each pass starts at 0)."""

    def __init__(self, items: Sequence[T], label: str) -> None:
        self._items = items
        self._label = label
        self._passes = 0

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[T]: ...

    def __getitem__(self, i: int | slice) -> T | Sequence[T]:
        return self._items[i]

    def __iter__(self) -> Iterator[T]:
        self._passes += 1
        label = self._label if self._passes == 1 else f"{self._label} (pass {self._passes})"
        p = Progress(label, len(self._items))
        n = 0
        try:
            for item in self._items:
                yield item
                n += 1
                if n == STEP:
                    p.advance(n)
                    n = 0
        finally:
            p.close()


def track(items: Sequence[T], label: str) -> Sequence[T]:
    """``items`` itself when stderr is not a terminal, else a :class:`Tracked` view."""
    return Tracked(items, label) if sys.stderr.isatty() else items


class ProgressReader:
    """A binary file object that reports the bytes read so far."""

    def __init__(self, source: BinaryIO, total: int, label: str, *, shift: int = 20,
                 unit: str = "MiB") -> None:
        self._source = source
        self._shift = shift
        self.progress = Progress(label, total >> shift, unit)
        self._bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        before = self._bytes >> self._shift
        self._bytes += len(data)
        self.progress.advance((self._bytes >> self._shift) - before)
        return data

    def close(self) -> None:
        self.progress.close()

    def tell(self) -> int:
        return self._source.tell()

    def seek(self, pos: int) -> int:
        """Rewind (a second pass): progress counts from there again."""
        self._bytes = pos
        return self._source.seek(pos)
