"""The tutorial's shell blocks run as written (copy and paste), with the real tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tools import need

DOCS = Path(__file__).parent.parent.parent / "docs"


def _blocks() -> list[str]:
    """The fenced blocks without a language that start with an imasim command."""
    blocks, current, lang = [], None, ""
    for line in (DOCS / "tutorial.md").read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                if not lang and current and current[0].startswith("imasim "):
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_the_tutorial_has_shell_blocks() -> None:
    assert len(_blocks()) >= 2


@pytest.mark.interop
@pytest.mark.parametrize("index", range(2))
def test_tutorial_shell_block_runs(index: int, tmp_path: Path) -> None:
    need("tpm2_checkquote")
    if shutil.which("imasim") is None:
        pytest.fail("the imasim command is not installed (pip install -e .)")
    (tmp_path / "docs").symlink_to(DOCS)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", _blocks()[index]], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
