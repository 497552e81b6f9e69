"""``imasim boot SCENARIO``: the docs' scenario files, artifacts, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imasim.cli import main
from imasim.ima import parse_measurement_list
from imasim.ima.replay import MatchStatus, match
from imasim.scenario import parse_scenario, run_scenario
from imasim.tpm.soft_tpm import SoftTpm
from tools import need

SCENARIOS = Path(__file__).parent.parent.parent / "docs" / "scenarios"


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.toml")))
def test_doc_scenarios_hold_and_their_lists_replay(name: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", str(SCENARIOS / name), "-o", str(tmp_path)]) == 0
    assert "all expectations held" in capsys.readouterr().out
    entries = parse_measurement_list((tmp_path / "binary_runtime_measurements").read_bytes())
    tpm = SoftTpm.from_json((tmp_path / "tpm-state.json").read_text())
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ok"] and results["entries"] == len(entries)
    pcrs = {a: {i: tpm.read(a, i) for i in range(24)} for a in tpm.banks}
    status = match(entries, pcrs).status
    if results["lost_measurements"]:  # the kexec window: the TPM has more than the list
        assert status is not MatchStatus.MATCH
    else:
        assert status is MatchStatus.MATCH
    assert (tmp_path / "ascii_runtime_measurements").read_text().count("\n") == len(entries)


def test_kexec_window_scenario_names_the_lost_file(tmp_path: Path) -> None:
    assert main(["boot", str(SCENARIOS / "kexec-window.toml"), "-o", str(tmp_path),
                 "--json"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["lost_measurements"] == ["/usr/bin/late"]


@pytest.mark.interop
def test_scenario_quote_verifies_with_tpm2_checkquote(tmp_path: Path) -> None:
    assert main(["boot", str(SCENARIOS / "kexec-window.toml"), "-o", str(tmp_path)]) == 0
    r = subprocess.run([need("tpm2_checkquote"), "-u", "ak.pem", "-m", "quote.msg",
                        "-s", "quote.sig", "-f", "quote.pcrs", "-g", "sha256",
                        "-q", (tmp_path / "nonce.hex").read_text().strip()],
                       cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_failed_expectation_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({
        "machine": {"cmdline": "ima_policy=tcb ima_appraise=enforce"},
        "files": [{"path": "/bin/x", "content": "x"}],
        "actions": [{"op": "load_policy", "text": "appraise func=BPRM_CHECK\n"},
                    {"op": "exec", "path": "/bin/x", "expect": "allow"}]}))
    assert main(["boot", str(path)]) == 1


@pytest.mark.parametrize("text, what", [
    ("[machine]\npreset = 'nope'\n", "machine.preset"),
    ("[[actions]]\nop = 'fly'\n", "actions[0].op"),
    ("[[files]]\npath = 'relative'\n", "files[0]"),
    ("[[files]]\npath = '/x'\nima_sign = 'nokey'\n", "files[0].ima_sign"),
    ("[machine]\nconfig = { no_such_switch = true }\n", "machine.config"),
    ("[machine\n", "TOML"),
])
def test_bad_scenarios_exit_2(text: str, what: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["boot", str(path)]) == 2
    assert what in capsys.readouterr().err


def test_actions_that_raise_are_recorded_and_the_run_goes_on() -> None:
    run = run_scenario(parse_scenario(
        "[[actions]]\nop = 'exec'\npath = '/missing'\nexpect = 'error'\n"
        "[[actions]]\nop = 'kexec_execute'\n"))
    assert [r.outcome for r in run.results] == ["error", "error"]
    assert run.results[0].ok and not run.results[1].ok


def test_runs_are_deterministic() -> None:
    text = (SCENARIOS / "kexec-window.toml").read_text()
    a, b = (run_scenario(parse_scenario(text)) for _ in range(2))
    assert a.artifacts == b.artifacts
