"""Run a fuzzer on one parser for a given time: ``python fuzz/run.py TARGET --seconds 60``.

Engines:
* ``--engine atheris`` (default when installed: ``pip install -e '.[fuzz]'``): coverage
  guided, libFuzzer underneath, seeded from the real vectors.
* ``--engine mutate``: a plain mutational loop (bit flips, byte sets, truncations,
  length-field corruption, splices of seeds), no extra dependency.

Any exception that is not an ``imasim.errors.ImasimError`` is a crash, and so is an
input that takes more than ``--timeout`` seconds (a hang) or, under atheris, makes the
process grow beyond 2 GB: the input is written to ``tests/corpus/<target>/crash-<sha256>.bin``
and the run stops with exit 1. ``--executions N`` stops a run after N inputs (whichever
of that and ``--seconds`` comes first). ``python fuzz/run.py --list`` lists the targets;
``all`` runs each in turn.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets import ROOT, TARGETS, Target, seeds

from imasim.errors import ImasimError

CORPUS = ROOT / "tests" / "corpus"


def _save_crash(target: Target, data: bytes) -> Path:
    d = CORPUS / target.name
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    p.write_bytes(data)
    return p


def one(target: Target, data: bytes) -> None:
    try:
        target.run(data)
    except ImasimError:
        pass


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        n = len(data)
        if op == 0 and n:
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == 2 and n:
            del data[rng.randrange(n):]
        elif op == 3 and n >= 4:
            i = rng.randrange(n - 3)
            v = rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, n, n - i, rng.randrange(1 << 32)))
            data[i:i + 4] = struct.pack("<I", v)
        elif op == 4:
            other = rng.choice(pool)
            if other:
                j = rng.randrange(len(other))
                data[rng.randrange(n + 1):] = other[j:j + rng.randrange(1, 64)]
        else:
            i = rng.randrange(n + 1)
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def run_mutate(target: Target, seconds: float, seed: int, executions: int = 0,
               timeout: float = 10.0) -> int:
    rng = random.Random(seed)
    pool = seeds(target)
    for s in pool:
        one(target, s)
    execs = 0
    start = time.monotonic()
    deadline = start + seconds
    limit = executions or sys.maxsize
    while time.monotonic() < deadline and execs < limit:
        for _ in range(min(200, limit - execs)):
            data = mutate(rng, pool)
            t0 = time.monotonic()
            try:
                one(target, data)
            except Exception:
                p = _save_crash(target, data)
                traceback.print_exc()
                print(f"{target.name}: CRASH after {execs} executions, saved {p}")
                return 1
            if time.monotonic() - t0 > timeout:
                p = _save_crash(target, data)
                print(f"{target.name}: HANG (> {timeout:.0f} s) after {execs} executions, "
                      f"saved {p}")
                return 1
            execs += 1
            if rng.random() < 0.001 and len(pool) < 256:
                pool.append(data)
    elapsed = time.monotonic() - start
    print(f"{target.name}: {execs} executions in {elapsed:.0f} s, no crash (engine mutate, "
          f"seed {seed})")
    return 0


def run_atheris(target: Target, seconds: float, executions: int = 0,
                timeout: float = 10.0) -> int:
    import atheris

    with tempfile.TemporaryDirectory() as corpus:
        for i, s in enumerate(seeds(target)):
            Path(corpus, f"seed{i}").write_bytes(s)

        def test_one(data: bytes) -> None:
            try:
                one(target, data)
            except Exception:
                _save_crash(target, data)
                raise

        argv = [sys.argv[0], corpus, f"-max_total_time={int(seconds)}", "-rss_limit_mb=2048",
                "-max_len=65536", "-print_final_stats=1", f"-timeout={int(timeout)}",
                f"-artifact_prefix={CORPUS / target.name}/crash-"]
        if executions:
            argv.append(f"-runs={executions}")
        (CORPUS / target.name).mkdir(parents=True, exist_ok=True)
        atheris.Setup(argv, test_one)
        # the targets import their parser lazily: run each seed once so that every module
        # the target reaches is loaded, then instrument every loaded function for coverage
        # (without this only fuzz/targets.py itself was instrumented and libFuzzer ran blind)
        import imasim.ima  # noqa: F401
        for s in seeds(target):
            one(target, s)
        atheris.instrument_all()
        atheris.Fuzz()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="?", help="target name, or 'all'")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--executions", type=int, default=0,
                    help="stop after this many inputs (0: only --seconds limits the run)")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="an input running longer than this many seconds is a hang")
    ap.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "0")))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list or not args.target:
        for name in TARGETS:
            print(name)
        return 0
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "mutate"
    names = list(TARGETS) if args.target == "all" else [args.target]
    rc = 0
    for name in names:
        target = TARGETS[name]
        if engine == "atheris" and len(names) == 1:
            rc |= run_atheris(target, args.seconds, args.executions, args.timeout)
        elif engine == "atheris":  # libFuzzer runs once per process: one child per target
            cmd = [sys.executable, __file__, name, "--engine", "atheris", "--seconds",
                   str(args.seconds), "--executions", str(args.executions), "--timeout",
                   str(args.timeout)]
            rc |= subprocess.run(cmd, check=False).returncode != 0
        else:
            rc |= run_mutate(target, args.seconds, args.seed, args.executions, args.timeout)
    return rc


if __name__ == "__main__":
    sys.exit(main())
