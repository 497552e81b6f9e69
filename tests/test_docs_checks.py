"""The documentation checks themselves: docs/build.py refuses generated docstrings, and
docs/scenarios.md lists every scenario file of docs/scenarios/."""

from __future__ import annotations

import enum
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _build() -> Any:
    spec = importlib.util.spec_from_file_location("docs_build", DOCS / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _BareEnum(enum.Enum):
    A = 1


class _BareIntEnum(enum.IntEnum):
    A = 1


@dataclass(frozen=True)
class _BareData:
    x: int


class _BareTuple(NamedTuple):
    x: int


class _BareError(ValueError):
    pass


class _Documented(enum.Enum):
    """What it is."""

    A = 1


@dataclass(frozen=True)
class _DocumentedData:
    """_DocumentedData(x) is a point on a line: the name in the first words is fine."""

    x: int


def test_generated_docstrings_are_refused() -> None:
    auto = _build().auto_generated
    for cls in (_BareEnum, _BareIntEnum, _BareData, _BareTuple, _BareError):
        assert auto(cls), cls
    for cls in (_Documented, _DocumentedData):
        assert not auto(cls), cls


def test_the_build_passes(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(DOCS / "build.py"), "-o", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Create a collection of name/value pairs" not in (tmp_path / "api.md").read_text()


def test_scenarios_md_lists_every_scenario_file() -> None:
    page = (DOCS / "scenarios.md").read_text()
    assert _build().scenario_list() in page, "run python docs/build.py (it updates the list)"
    files = sorted(p.name for p in (DOCS / "scenarios").iterdir()
                   if p.suffix in (".toml", ".json"))
    assert files
    unlisted = [f for f in files if f"(scenarios/{f})" not in page]
    assert not unlisted, f"docs/scenarios.md does not link {unlisted}"
