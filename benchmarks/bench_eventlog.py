"""Firmware event log: parse + replay of a generated 100,000-event crypto-agile log, beside
``tpm2_eventlog`` on the same file.

The log has banks sha1, sha256 and sha384 (as the swtpm captures) and cycles through the
event kinds a UEFI boot writes (EV_IPL strings of GRUB in PCR 8/9, EV_EFI_ACTION, UEFI
variables in PCR 1/7, image loads in PCR 4, separators). Figures:

- library: ``EventLog.parse`` then ``replay`` of every bank (events/s, MB/s, peak RSS);
- per process, CPU time (user + sys of the child) interleaved, best of three:
  ``imasim eventlog replay --json`` (parse + replay), ``imasim eventlog show --json``
  (parse + decode every event as tpm2_eventlog does + replay) and ``tpm2_eventlog``
  (parse + decode + replay + YAML), each on the same file. CPU-time ratios measured
  interleaved are robust to load on a shared machine.
"""

from __future__ import annotations

import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _mem import peak_rss_mb

from imasim.algorithms import HashAlgorithm as H
from imasim.eventlog import EventLog, EventType
from imasim.eventlog.replay import replay
from imasim.eventlog.uefi import EFI_GLOBAL_VARIABLE, VariableData

BANKS = (H.SHA1, H.SHA256, H.SHA384)


def generate(n: int) -> bytes:
    """A crypto-agile log of ``n`` events after the header (deterministic)."""
    kinds = []
    for i in range(n):
        k = i % 8
        if k == 0:
            kinds.append((8, EventType.EV_IPL, b"grub_cmd: linux /vmlinuz-%d root=/dev/vda1\x00"
                          % i))
        elif k == 1:
            kinds.append((9, EventType.EV_IPL, b"/boot/vmlinuz-%d\x00" % i, b"kernel %d" % i))
        elif k == 2:
            kinds.append((4, EventType.EV_EFI_ACTION, b"Calling EFI Application from Boot Option"))
        elif k == 3:
            kinds.append((7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                          VariableData(EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x01").encode()))
        elif k == 4:
            opt = struct.pack("<IH", 1, 4) + "entry".encode("utf-16-le") + b"\0\0\x7f\xff\x04\x00"
            name = "Boot%04X" % (i % 65536)
            kinds.append((1, EventType.EV_EFI_VARIABLE_BOOT,
                          VariableData(EFI_GLOBAL_VARIABLE, name, opt).encode()))
        elif k == 5:
            kinds.append((4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
                          struct.pack("<QQQQ", 0x7C000000, 4096, 0, 4) + b"\x7f\xff\x04\x00",
                          b"image %d" % i))
        elif k == 6:
            kinds.append((i % 8, EventType.EV_SEPARATOR, bytes(4)))
        else:
            kinds.append((2, EventType.EV_EFI_BOOT_SERVICES_DRIVER,
                          struct.pack("<QQQQ", 0x7D000000, 8192, 0, 0), b"driver %d" % i))
    return EventLog.build(BANKS, kinds).encode()


def child_cpu(cmd: list[str]) -> float:
    """CPU seconds (user + sys) of one run of ``cmd``, its output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(quick: bool = False) -> None:
    n = 5_000 if quick else 100_000
    tmp = Path(tempfile.gettempdir()) / "imasim-bench"
    tmp.mkdir(exist_ok=True)
    path = tmp / f"eventlog-{n}.bin"
    if not path.exists():
        path.write_bytes(generate(n))
    data = path.read_bytes()
    mb = len(data) / 1e6

    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        log = EventLog.parse(data)
        r = replay(log)
        best = min(best, time.process_time() - t0)
    assert len(log.measurements) == n and set(r.values) == set(BANKS)
    rss = peak_rss_mb(
        "from imasim.eventlog import EventLog\nfrom imasim.eventlog.replay import replay\n"
        f"r = replay(EventLog.parse(open({str(path)!r}, 'rb').read()))")
    print(f"library parse + replay (3 banks), {n:,} events, {mb:.1f} MB: {n / best:,.0f} "
          f"events/s, {mb / best:.1f} MB/s (CPU {best:.2f} s), peak RSS {rss:.1f} MB")

    imasim = [sys.executable, "-m", "imasim", "eventlog"]
    runs: dict[str, list[list[str]]] = {
        "imasim eventlog replay --json": [[*imasim, "replay", str(path), "--json"]],
        "imasim eventlog show --json": [[*imasim, "show", str(path), "--json"]],
    }
    tool = shutil.which("tpm2_eventlog")
    if tool is not None:
        runs["tpm2_eventlog"] = [[tool, str(path)]]
    else:
        print("tpm2_eventlog not installed: no comparison")
    times: dict[str, float] = {k: float("inf") for k in runs}
    for _ in range(3):  # interleaved, best of three
        for name, (cmd,) in runs.items():
            times[name] = min(times[name], child_cpu(cmd))
    for name, t in times.items():
        print(f"{name}: CPU {t:.2f} s, {n / t:,.0f} events/s")
    if tool is not None:
        ref = times["tpm2_eventlog"]
        for name in ("imasim eventlog replay --json", "imasim eventlog show --json"):
            print(f"{name} / tpm2_eventlog CPU time: {times[name] / ref:.2f}x")


if __name__ == "__main__":
    main()
