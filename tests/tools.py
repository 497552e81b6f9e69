"""Finding the real tools interop tests run.

Locally a missing tool skips the test; under ``CI=true`` it fails it, because .ci/run
installs every tool and a skip there would hide a broken interop claim.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: Where Debian's linux-kbuild packages put the kernel's scripts/sign-file.
_SIGN_FILE_GLOBS = ("/usr/lib/linux-kbuild-*/scripts/sign-file",)


def need(tool: str) -> str:
    """Return the path of ``tool``, or skip (locally) / fail (under CI) when it is missing."""
    path = shutil.which(tool)
    if path is None and tool == "sign-file":
        for pattern in _SIGN_FILE_GLOBS:
            found = sorted(Path("/").glob(pattern.lstrip("/")))
            if found:
                path = str(found[-1])
                break
    if path is None:
        message = f"interop tool {tool!r} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run must install it)")
        pytest.skip(message)
    return path
