"""JSON and TOML inputs (PCR files, TPM state, scenarios): nesting is bounded before the
recursive parsers run; 1-4 MB of adversarial text within 1 s and 100 MB per MB."""

from __future__ import annotations

import pytest

from budget import MB, within_budget
from imasim.errors import LimitExceededError, ParseError
from imasim.io import (
    MAX_DOCUMENT_DEPTH,
    load_json_bounded,
    load_pcrs_json,
    load_toml_bounded,
)
from imasim.scenario import parse_scenario
from imasim.tpm.soft_tpm import SoftTpm

# name: (a function of the size, the loader)
CASES = {
    "json deep arrays": (lambda n: "[" * n, load_json_bounded),
    "json deep objects": (lambda n: '{"a":' * (n // 5), load_json_bounded),
    "json unterminated string of escaped quotes": (lambda n: '"' + '\\"[' * (n // 3),
                                                   load_json_bounded),
    "json huge number": (lambda n: "9" * n, load_json_bounded),
    "toml deep arrays": (lambda n: "a = " + "[" * n, load_toml_bounded),
    "toml deep inline tables": (lambda n: "a = " + "{b=" * (n // 3), load_toml_bounded),
    "toml a key of many dotted parts": (lambda n: "a" + ".a" * (n // 2) + " = 1",
                                        load_toml_bounded),
    "toml unterminated string of escaped quotes": (lambda n: 'a = "\\"' + '\\"[' * (n // 3),
                                                   load_toml_bounded),
    "toml huge integer": (lambda n: "a = " + "9" * n, load_toml_bounded),
    "toml huge integer with underscores": (lambda n: "a = 1" + "_9" * (n // 2),
                                           load_toml_bounded),
}


@pytest.mark.parametrize("name", CASES)
def test_adversarial_documents(name: str) -> None:
    make, load = CASES[name]
    text = make(3 * MB)
    spent = within_budget(lambda: load(text), len(text), memory=False)
    assert isinstance(spent.error, ParseError)
    # peak memory on a quarter MB (tracemalloc slows the stdlib parsers tenfold)
    small = make(MB // 4)
    within_budget(lambda: load(small), MB, mb_per_mb=25, seconds_per_mb=30)


def test_wide_but_shallow_documents_load() -> None:
    wide = "[" + "[]," * MB + "[]]"
    spent = within_budget(lambda: load_json_bounded(wide), len(wide), memory=False)
    assert spent.error is None and len(spent.result) == MB + 1  # type: ignore[arg-type]
    shallow = "[" * MAX_DOCUMENT_DEPTH + "]" * MAX_DOCUMENT_DEPTH
    load_json_bounded(shallow)
    with pytest.raises(LimitExceededError):
        load_json_bounded("[" + shallow + "]")
    # brackets, dots and digits inside strings and comments are not structure
    assert load_json_bounded('{"k": "[[[[{{{{"}') == {"k": "[[[[{{{{"}
    assert load_json_bounded('["' + "9" * 10_000 + '"]') == ["9" * 10_000]
    toml = 'a = "[[[[" # ]]]] {{{\nb = \'{{{{\'\nc = """\n[[[[\n"""\n"x.y.z" = 1\n'
    assert load_toml_bounded(toml)["b"] == "{{{{"
    assert load_toml_bounded("a" + ".a" * (MAX_DOCUMENT_DEPTH - 1) + " = 1")
    with pytest.raises(LimitExceededError):
        load_toml_bounded("a" + ".a" * MAX_DOCUMENT_DEPTH + " = 1")


def test_callers_refuse_deep_documents() -> None:
    deep_json = '{"sha256": ' + "[" * 100_000
    with pytest.raises(ParseError):
        load_pcrs_json(deep_json)
    with pytest.raises(ParseError):
        SoftTpm.from_json(deep_json)
    with pytest.raises(ParseError):
        SoftTpm.from_json(b"\xff\xfe not utf-8")
    with pytest.raises(LimitExceededError):
        parse_scenario("[machine]\nx = " + "[" * 100_000)
    with pytest.raises(LimitExceededError):
        parse_scenario('{"machine": ' + "[" * 100_000, fmt="json")
    with pytest.raises(ParseError):
        parse_scenario("[machine]\nx = " + "9" * 5000)
