"""Replay the committed corpus of crashers and nasty inputs (tests/corpus/<target>/*).

Each input must make its parser return or raise an imasim error, within bounded time and
memory. The targets are the fuzzers' (fuzz/targets.py).
"""

from __future__ import annotations

import importlib.util
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from imasim.errors import ImasimError

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).parent / "corpus"


def _targets() -> dict[str, object]:
    spec = importlib.util.spec_from_file_location("fuzz_targets", ROOT / "fuzz" / "targets.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_targets"] = mod
    spec.loader.exec_module(mod)
    return mod.TARGETS  # type: ignore[no-any-return]


TARGETS = _targets()
CASES = sorted(p for p in CORPUS.glob("*/*") if p.is_file() and p.parent.name in TARGETS)


def test_corpus_targets_exist() -> None:
    folders = {p.parent.name for p in CORPUS.glob("*/*") if p.is_file()}
    unknown = folders - set(TARGETS)
    assert not unknown, f"corpus folders without a fuzz target: {unknown}"


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_corpus_input(path: Path) -> None:
    target = TARGETS[path.parent.name]
    data = path.read_bytes()
    try:  # the targets import their parser lazily: not what this test times
        target.run(b"")  # type: ignore[attr-defined]
    except ImasimError:
        pass
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        target.run(data)  # type: ignore[attr-defined]
    except ImasimError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - t0 < 10, "an input took more than 10 s"
    assert peak < 64 * 1024 * 1024 + 16 * len(data), f"peak memory {peak} bytes"
