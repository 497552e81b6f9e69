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
