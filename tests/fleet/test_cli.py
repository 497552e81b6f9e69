"""``imasim fleet`` without the fleet extra: help works, verify says how to install it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imasim.cli import main


def test_help_and_simulate_import_neither_dask_nor_pyarrow(tmp_path: Path) -> None:
    code = ("import sys; from imasim.cli import main; rc = main(['fleet', 'simulate', "
            f"'--machines', '3', '--tamper', '1', '--out', {str(tmp_path)!r}, '--json']); "
            "print(sorted(m for m in ('dask', 'distributed', 'pyarrow') if m in sys.modules));"
            " sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("[]")
    assert json.loads((tmp_path / "fleet.json").read_text())["spec"]["machines"] == 3


@pytest.mark.parametrize("missing", ["distributed", "pyarrow"])
def test_verify_without_the_extra_exits_2_saying_how_to_install(
        missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "simulate", "--machines", "2", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    for argv in (["fleet", "--help"], ["fleet", "verify", "--help"]):
        assert main(argv) == 0
    capsys.readouterr()
    rc = main(["fleet", "verify", str(tmp_path), "--policy", str(tmp_path / "policy.json"),
               "--out", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'imasim[fleet]'" in err and err.startswith("imasim:")


@pytest.mark.parametrize("argv", [
    ["fleet", "simulate", "--machines", "2", "--tamper", "3"],
    ["fleet", "simulate", "--machines", "2", "--entries", "3"],
    ["fleet", "simulate", "--machines", "2", "--workers", "0"],
])
def test_simulate_bad_arguments_exit_2(argv: list[str], tmp_path: Path) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2


def test_verify_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    assert main(["fleet", "simulate", "--machines", "2", "--out", str(tmp_path)]) == 0
    base = ["fleet", "verify", str(tmp_path), "--out", str(tmp_path / "v")]
    (tmp_path / "bad.json").write_text("[" * 10000)
    assert main([*base, "--policy", str(tmp_path / "bad.json")]) == 2
    assert main([*base, "--policy", str(tmp_path / "nope.json")]) == 2
    assert main([*base, "--policy", str(tmp_path / "policy.json"),
                 "--challenges", str(tmp_path / "bad.json")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["fleet", "verify", str(empty), "--policy", str(tmp_path / "policy.json"),
                 "--out", str(tmp_path / "v"), "--bundle-nonces"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
