from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

VECTORS = Path(__file__).parent / "vectors"

# generators of vectors run with other tools (Keylime); not imasim's tests or doctests
collect_ignore_glob = ["vectors/*/make_*.py"]


@pytest.fixture(scope="session")
def vectors() -> Path:
    return VECTORS
