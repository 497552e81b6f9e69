"""Peak resident memory of a snippet, measured in a fresh interpreter (ru_maxrss)."""

from __future__ import annotations

import subprocess
import sys


def peak_rss_mb(code: str) -> float:
    """Run ``code`` in a new Python and return its peak RSS in MB (Linux ru_maxrss is KiB)."""
    wrapper = code + ("\nimport resource\n"
                      "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[-1]) / 1024
