"""Every claim of the five discussions flips with its configuration (docs/discussions.md).

docs/discussions.md maps each claim to a pair of scenario files that differ only in their
``[machine]`` table. Each file's expectations must hold on its own machine and must NOT
hold on the other file's machine: if the behaviour a claim describes stopped depending on
the configuration it names, the swapped run would pass and this test fails.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from imasim.scenario import parse_scenario, run_scenario

DOCS = Path(__file__).parent.parent / "docs"
SCENARIOS = DOCS / "scenarios"
_LINK = re.compile(r"\(scenarios/([\w.-]+\.toml)\)")


def _rows() -> list[list[str]]:
    """The scenario files each table row of docs/discussions.md links, in order."""
    return [_LINK.findall(line) for line in (DOCS / "discussions.md").read_text().splitlines()
            if line.startswith("|") and _LINK.search(line)]


PAIRS = [tuple(r) for r in _rows() if len(r) == 2]


def _load(name: str) -> dict[str, Any]:
    return tomllib.loads((SCENARIOS / name).read_text())


def _run(doc: dict[str, Any]) -> bool:
    import json

    return run_scenario(parse_scenario(json.dumps(doc), fmt="json")).ok


def test_every_scenario_is_a_claim() -> None:
    linked = {name for row in _rows() for name in row}
    assert linked == {p.name for p in SCENARIOS.glob("*.toml")}
    assert len(PAIRS) >= 15


@pytest.mark.parametrize("a, b", PAIRS, ids=[f"{a[:-5]}|{b[:-5]}" for a, b in PAIRS])
def test_the_claim_flips_with_the_configuration(a: str, b: str) -> None:
    da, db = _load(a), _load(b)
    assert {k: v for k, v in da.items() if k not in ("machine", "actions", "name")} == \
        {k: v for k, v in db.items() if k not in ("machine", "actions", "name")}, \
        "a pair differs in its configuration and expectations only"
    strip = [{k: v for k, v in act.items() if k != "expect"} for act in da["actions"]]
    assert strip == [{k: v for k, v in act.items() if k != "expect"} for act in db["actions"]]
    assert da["machine"] != db["machine"]
    assert _run(da) and _run(db)
    # the other machine, with its name (test keys derive from the scenario's name)
    assert not _run({**da, "machine": db["machine"], "name": db["name"]}), \
        f"{a}'s claim holds without its configuration"
    assert not _run({**db, "machine": da["machine"], "name": da["name"]}), \
        f"{b}'s claim holds without its configuration"
