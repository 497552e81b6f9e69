"""``imasim tpm checkquote`` per process against ``tpm2_checkquote`` on the same files.

Both check an RSA and an ECC quote of sha256:0-10 with its serialized PCR file, one
process per check, interleaved (imasim, tool, imasim, tool...) so that load hits both
alike. Reported: wall time (min and median) and CPU time (user+sys of the child, median),
and the ratios. The imasim process runs the installed ``imasim`` script with bytecode
caches written first (``compileall``), as an installed package has them.
"""

from __future__ import annotations

import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imasim
from imasim.algorithms import HashAlgorithm as H
from imasim.tpm import PcrSelection, SoftTpm
from imasim.tpm.verify import write_pcr_file

NONCE = "c0ffee"


def _files(tmp: Path, kind: str) -> list[str]:
    tpm = SoftTpm((H.SHA1, H.SHA256))
    for i in range(11):
        tpm.extend(i, {a: a.hash(b"%d" % i) for a in tpm.banks})
    ak = tpm.create_ak(kind, seed=b"bench")  # type: ignore[arg-type]
    q = tpm.quote(ak, PcrSelection.from_string("sha256:0,1,2,3,4,5,6,7,8,9,10"),
                  bytes.fromhex(NONCE))
    for name, data in {"ak.pem": ak.public_pem, "q.msg": q.attest, "q.sig": q.signature,
                       "q.pcrs": write_pcr_file(q.selection, [v for _, _, v in q.pcr_values])
                       }.items():
        (tmp / f"{kind}-{name}").write_bytes(data)
    return ["-u", f"{kind}-ak.pem", "-m", f"{kind}-q.msg", "-s", f"{kind}-q.sig",
            "-f", f"{kind}-q.pcrs", "-q", NONCE]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main(quick: bool = False) -> None:
    tool = shutil.which("tpm2_checkquote")
    if tool is None:
        print("tpm2_checkquote not installed: skipped")
        return
    script = Path(sys.executable).with_name("imasim")
    imasim_cmd = [str(script)] if script.exists() else [sys.executable, "-m", "imasim"]
    compileall.compile_dir(Path(imasim.__file__).parent, quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rounds = 10 if quick else 60
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in ("rsa", "ecc"):
            args = _files(tmp, kind)
            ours: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            _run([*imasim_cmd, "tpm", "checkquote", *args], tmp, env)  # warm the caches
            for _ in range(rounds):
                ours.append(_run([*imasim_cmd, "tpm", "checkquote", *args], tmp, env))
                theirs.append(_run([tool, *args], tmp, env))
            ow, tw = sorted(w for w, _ in ours), sorted(w for w, _ in theirs)
            oc = statistics.median(c for _, c in ours)
            tc = statistics.median(c for _, c in theirs)
            print(f"{kind} quote, sha256:0-10, {rounds} processes each: "
                  f"imasim wall min {ow[0] * 1e3:.1f} ms, median {statistics.median(ow) * 1e3:.1f}"
                  f" ms, CPU {oc * 1e3:.1f} ms; tpm2_checkquote wall min {tw[0] * 1e3:.1f} ms, "
                  f"median {statistics.median(tw) * 1e3:.1f} ms, CPU {tc * 1e3:.1f} ms; "
                  f"ratio wall (min) {ow[0] / tw[0]:.1f}x, (median) "
                  f"{statistics.median(ow) / statistics.median(tw):.1f}x, CPU {oc / tc:.1f}x")


if __name__ == "__main__":
    main()
