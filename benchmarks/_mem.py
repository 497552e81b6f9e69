"""Peak resident memory of a snippet, measured in a fresh interpreter.

Linux keeps ``ru_maxrss`` across ``execve`` (a child of a big benchmark process would
report the parent's peak), so this reads ``VmHWM`` from /proc/self/status, which belongs
to the new process image alone.
"""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
for line in open('/proc/self/status'):
    if line.startswith('VmHWM:'):
        print(int(line.split()[1]))
"""


def peak_rss_mb(code: str) -> float:
    """Run ``code`` in a new Python and return its peak RSS (VmHWM) in MB."""
    out = subprocess.run([sys.executable, "-c", code + "\n" + _PROBE], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[-1]) / 1024


_LAUNCH = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, u = os.wait4(p.pid, 0)
print(u.ru_utime + u.ru_stime, os.waitstatus_to_exitcode(status), u.ru_maxrss)
"""


def child_usage(cmd: list[str]) -> tuple[float, int, float]:
    """CPU seconds (user+sys), exit code and peak RSS (MB) of ``cmd`` as its own process:
    started by a small launcher, so its ``ru_maxrss`` is not this process's peak."""
    out = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]) / 1024
