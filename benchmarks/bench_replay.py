"""Replay with every template digest checked, vs evmctl ima_measurement; appraisal overhead.

Per process (what a user runs): ``evmctl ima_measurement``, ``imasim log replay`` and
``imasim log check`` on the same list, interleaved round by round, CPU time (user + system
of the process and its workers, from wait4) and peak RSS of each; the library calls
``replay_file`` and ``match_file`` in a fresh interpreter the same way. The imasim package
is byte-compiled first, as ``pip install`` leaves it (start-up is part of the figure).
``--jobs 2`` is timed in wall-clock time against ``--jobs 1``: that figure needs two idle
cores (``python benchmarks/run.py replay`` in a quiet window).

Two lists of N ima-ng entries (sha256 file digests), one allowlist of 100,000 paths:

- ``ima-ng-N.bin``: N distinct paths, the first 100,000 of them in the allowlist with
  their digests (the adversarial case for appraisal: 90% of the entries are unknown
  paths, each one a verdict object);
- ``ima-ng-allow-N.bin``: a boot_aggregate, then paths drawn at random from the
  allowlist with their allowed digests, except one unknown path and one wrong digest
  every 10,000 entries and one violation every 100,000 (a machine running what its
  policy lists, with a few strays: the realistic case).
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _gen import cached_list, pcr_files, time_evmctl
from _mem import peak_rss_mb

import imasim
from imasim.algorithms import HashAlgorithm as H
from imasim.attest import ReferenceValues, replay_and_appraise_file
from imasim.ima import iter_measurement_list
from imasim.ima.replay import replay, replay_file

ALLOWED = 100_000


def allowed_path(j: int) -> bytes:
    """The j-th path of the allowlist (the j-th entry of ``ima-ng-N.bin``)."""
    return b"/usr/lib/x86_64-linux-gnu/lib%07d.so.1" % j


def allowed_digest(j: int) -> bytes:
    return hashlib.sha256(j.to_bytes(8, "little")).digest()


def allowlist_list(n: int, picks: Sequence[int] | None = None) -> bytes:
    """The realistic list (see the module docstring); with ``picks``, entry i > 0 names
    allowed path ``picks[i - 1]`` instead of a random one (the same strays)."""
    out = bytearray()
    pack = struct.Struct("<I").pack
    head_name = pack(6) + b"ima-ng"
    rng = random.Random(4)
    for i in range(n):
        if i == 0:
            path, digest = b"boot_aggregate", hashlib.sha256(b"pcrs 0-9").digest()
        else:
            j = rng.randrange(ALLOWED) if picks is None else picks[i - 1]
            path, digest = allowed_path(j), allowed_digest(j)
            if i % 10_000 == 1:
                path = b"/tmp/unknown-%07d" % i
            elif i % 10_000 == 2:
                digest = hashlib.sha256(b"tampered %d" % i).digest()
        f1 = b"sha256:\0" + digest
        f2 = path + b"\0"
        data = pack(len(f1)) + f1 + pack(len(f2)) + f2
        stored = hashlib.sha1(data).digest() if i % 100_000 != 3 else bytes(20)
        out += pack(10) + stored + head_name + pack(len(data)) + data
    return bytes(out)


def run_process(cmd: list[str]) -> tuple[float, float, float, int]:
    """CPU seconds (the process and every child it waited for), wall seconds, peak RSS in
    MB and exit code of ``cmd``.

    Linux keeps a process's peak RSS across fork and exec, so a command started from this
    (big) process would report at least this process's peak: GNU time, a small process,
    starts it and reports its figures.
    """
    gnu_time = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        t0 = time.perf_counter()
        proc = subprocess.run([gnu_time, "-f", "%U %S %M %x", "-o", out.name, *cmd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        user, system, rss_kb, rc = out.read().split()[-4:]
    assert proc.returncode == int(rc)
    return float(user) + float(system), wall, int(rss_kb) / 1024, int(rc)


def per_process(path: Path, tmp: Path, n: int, rounds: int) -> None:
    """The CLI and the library call, per process, interleaved with evmctl."""
    evmctl = shutil.which("evmctl")
    imasim_cli = shutil.which("imasim") or ""
    if evmctl is None or not imasim_cli or not Path("/usr/bin/time").exists():
        print("evmctl, the imasim command or GNU time missing: no per-process comparison")
        return
    compileall.compile_dir(Path(imasim.__file__).parent, quiet=1)
    pcr_args = pcr_files(path, tmp)
    pcrs_json = tmp / "pcrs.json"
    pcrs_json.write_text(json.dumps({
        alg: {str(i): line.split()[1] for i, line in enumerate(
            Path(f).read_text().splitlines())}
        for alg, f in (a.split(",", 1) for a in pcr_args[1::2])}))
    lib = ("from imasim.ima.replay import {fn}\n"
           "with open({path!r}, 'rb') as f:\n    r = {fn}(f{extra})\n")
    load = (f"import json\nfrom imasim.io import load_pcrs_json\n"
            f"q = load_pcrs_json(open({str(pcrs_json)!r}).read())\n")
    cmds = {
        "evmctl ima_measurement": [evmctl, "ima_measurement", "--ignore-violations",
                                   *pcr_args, str(path)],
        "imasim log replay": [imasim_cli, "log", "replay", str(path)],
        "imasim log check": [imasim_cli, "log", "check", str(path), "--pcrs", str(pcrs_json)],
        "replay_file (library)": [sys.executable, "-c", lib.format(
            fn="replay_file", path=str(path), extra="")],
        "match_file (library)": [sys.executable, "-c", load + lib.format(
            fn="match_file", path=str(path), extra=", q")],
    }
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, float] = {}
    for _ in range(rounds):
        for name, cmd in cmds.items():
            c, _, m, rc = run_process(cmd)
            assert rc == 0, (name, rc)
            cpu[name].append(c)
            rss[name] = max(rss.get(name, 0.0), m)
    ev = cpu["evmctl ima_measurement"]
    print(f"per process, {rounds} interleaved rounds, CPU time (median), peak RSS:")
    for name, times in cpu.items():
        ratios = [e / t for e, t in zip(ev, times, strict=True)]
        ratio = ("" if name.startswith("evmctl") else
                 f", {statistics.median(ratios):.2f}x evmctl (rounds: "
                 f"{', '.join(f'{r:.2f}' for r in ratios)})")
        med = statistics.median(times)
        print(f"  {name}: {med:.2f} s CPU, {n / med:,.0f} entries/s, peak RSS "
              f"{rss[name]:.1f} MB{ratio}")
    # --jobs 2: wall time against one process (needs two idle cores)
    walls: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for jobs in (1, 2):
            _, w, _, rc = run_process([imasim_cli, "log", "check", str(path), "--pcrs",
                                       str(pcrs_json), "--jobs", str(jobs)])
            assert rc == 0
            walls[jobs].append(w)
    w1, w2 = statistics.median(walls[1]), statistics.median(walls[2])
    load = os.getloadavg()[0]
    print(f"imasim log check --jobs 2: {w2:.2f} s wall vs {w1:.2f} s with --jobs 1: "
          f"{w1 / w2:.2f}x (load average {load:.1f} on {os.cpu_count()} cores; the figure "
          "holds only with two idle cores)")


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 1_000_000
    tmp = Path(tempfile.gettempdir()) / "imasim-bench"
    tmp.mkdir(exist_ok=True)
    path = cached_list(n, tmp)
    per_process(path, tmp, n, 2 if quick else 3)
    real = tmp / f"ima-ng-allow-{n}.bin"
    if not real.exists():
        real.write_bytes(allowlist_list(n))
    ref = ReferenceValues({allowed_path(j).decode(): frozenset({allowed_digest(j).hex()})
                           for j in range(ALLOWED)})

    t0 = time.perf_counter()
    with path.open("rb") as f:
        r0 = replay(iter_measurement_list(f), banks=(H.SHA1, H.SHA256))
    t_entries = time.perf_counter() - t0
    print(f"replay of streamed entry objects: {n / t_entries:,.0f} entries/s")

    def timed_replay(p: Path) -> float:
        t0 = time.perf_counter()
        with p.open("rb") as f:
            r = replay_file(f, banks=(H.SHA1, H.SHA256))
        t = time.perf_counter() - t0
        assert r.count == n
        return t

    def timed_appraisal(p: Path) -> tuple[float, int]:
        t0 = time.perf_counter()
        with p.open("rb") as f:
            r, failures = replay_and_appraise_file(f, ref, banks=(H.SHA1, H.SHA256))
        t = time.perf_counter() - t0
        assert r.count == n
        return t, len(failures)

    t_replay = timed_replay(path)
    with path.open("rb") as f:
        r = replay_file(f, banks=(H.SHA1, H.SHA256))
    assert r.count == n and not r.bad_digests and r.pcrs == r0.pcrs
    rss = peak_rss_mb(
        "from imasim.algorithms import HashAlgorithm as H\n"
        "from imasim.ima.replay import replay_file\n"
        f"f = open({str(path)!r}, 'rb')\n"
        "r = replay_file(f, banks=(H.SHA1, H.SHA256))")
    print(f"replay_file sha1+sha256, stored digests checked, streaming: {n / t_replay:,.0f} "
          f"entries/s ({t_replay:.2f} s), peak RSS {rss:.1f} MB")
    t_evm = time_evmctl(path, tmp, n)
    if t_evm is not None:
        print(f"imasim replay / evmctl throughput: {t_evm / t_replay:.2f}x")

    # realistic: every path in the allowlist but a few strays; overhead against
    # replay_file on the same file, each timed twice in turn (best of two)
    t_r = min(timed_replay(real), timed_replay(real))
    (t_a, k), (t_a2, _) = timed_appraisal(real), timed_appraisal(real)
    t_a = min(t_a, t_a2)
    build_ref = (
        "from imasim.attest import ReferenceValues, replay_and_appraise_file\n"
        "import hashlib\n"
        f"ref = ReferenceValues({{(b'/usr/lib/x86_64-linux-gnu/lib%07d.so.1' % j).decode(): "
        f"frozenset({{hashlib.sha256(j.to_bytes(8, 'little')).digest().hex()}}) "
        f"for j in range({ALLOWED})}})\n")
    rss_ref = peak_rss_mb(build_ref)
    rss = peak_rss_mb(build_ref + f"f = open({str(real)!r}, 'rb')\n"
                      "r = replay_and_appraise_file(f, ref)")
    print(f"realistic list, replay_file: {n / t_r:,.0f} entries/s; replay_and_appraise_file "
          f"({ALLOWED:,}-path allowlist, {k} failures): {n / t_a:,.0f} entries/s, "
          f"+{(t_a / t_r - 1) * 100:.0f}% over replay, peak RSS {rss:.1f} MB (the "
          f"allowlist alone: {rss_ref:.1f} MB)")

    # adversarial: 90% of the paths unknown
    t_adv, k = timed_appraisal(path)
    print(f"adversarial list (every path distinct, {k:,} unknown): replay_and_appraise_file "
          f"{n / t_adv:,.0f} entries/s, +{(t_adv / t_replay - 1) * 100:.0f}% over replay")
    if t_evm is not None:
        t_evm2 = time_evmctl(path, tmp, n)
        assert t_evm2 is not None
        print(f"evmctl again at the end: {t_evm2 / t_replay:.2f}x")


if __name__ == "__main__":
    main()
