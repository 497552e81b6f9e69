"""Generate a realistic ima-ng measurement list of N entries quickly (shared by benchmarks)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path


def ima_ng_list(n: int) -> bytes:
    """N distinct ima-ng records (sha256 file digests, /usr paths), as the kernel writes."""
    out = bytearray()
    pack = struct.Struct("<I").pack
    name = b"ima-ng"
    head_name = pack(len(name)) + name
    for i in range(n):
        digest = hashlib.sha256(i.to_bytes(8, "little")).digest()
        path = b"/usr/lib/x86_64-linux-gnu/lib%07d.so.1\0" % i
        f1 = b"sha256:\0" + digest
        data = pack(len(f1)) + f1 + pack(len(path)) + path
        out += pack(10) + hashlib.sha1(data).digest() + head_name + pack(len(data)) + data
    return bytes(out)


def cached_list(n: int, tmp: Path) -> Path:
    p = tmp / f"ima-ng-{n}.bin"
    if not p.exists():
        p.write_bytes(ima_ng_list(n))
    return p


def pcr_files(path: Path, out: Path) -> list[str]:
    """evmctl --pcrs files for the PCR values the list replays to."""
    from imasim.algorithms import HashAlgorithm as H
    from imasim.ima import iter_measurement_list
    from imasim.ima.replay import replay

    with path.open("rb") as f:
        r = replay(iter_measurement_list(f), banks=(H.SHA1, H.SHA256))
    args = []
    for alg, values in r.pcrs.items():
        p = out / f"pcrs-{alg.kernel_name}"
        p.write_text("".join(f"PCR-{i:02d} {values.get(i, alg.zero).hex()}\n" for i in range(24)))
        args += ["--pcrs", f"{alg.kernel_name},{p}"]
    return args


def time_evmctl(path: Path, tmp: Path, n: int) -> float | None:
    """Seconds ``evmctl ima_measurement`` takes to replay ``path`` (None without evmctl)."""
    import shutil
    import subprocess
    import time

    evmctl = shutil.which("evmctl")
    if evmctl is None:
        print("evmctl not installed: no comparison")
        return None
    args = pcr_files(path, tmp)
    t0 = time.perf_counter()
    proc = subprocess.run([evmctl, "ima_measurement", "--ignore-violations", *args, str(path)],
                          capture_output=True)
    t_evm = time.perf_counter() - t0
    print(f"evmctl ima_measurement (exit {proc.returncode}): {n / t_evm:,.0f} entries/s "
          f"({t_evm:.2f} s)")
    return t_evm
