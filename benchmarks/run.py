"""Run every benchmark: ``python benchmarks/run.py [NAME...] [--quick]``.

Each ``benchmarks/bench_*.py`` defines ``main(quick: bool) -> None`` that prints its
figures (entries/s or MB/s, and peak memory). ``--quick`` uses small sizes, for a smoke
run; figures in docs/performance.md come from full runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
from pathlib import Path

HERE = Path(__file__).parent


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help="benchmark names (bench_NAME.py); default all")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args()
    print(f"machine: {machine_line()}")
    files = sorted(HERE.glob("bench_*.py"))
    if args.names:
        files = [f for f in files if f.stem.removeprefix("bench_") in args.names]
    sys.path.insert(0, str(HERE))
    for f in files:
        spec = importlib.util.spec_from_file_location(f.stem, f)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        print(f"\n== {f.stem}")
        mod.main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
