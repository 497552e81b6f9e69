"""``imasim eventlog show|replay|check`` on a real OVMF log, in process and as a command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from imasim.cli import main
from realdata import REALKERNEL

ST = REALKERNEL / "k612-uefi-ovmf" / "stage1"
LOG = ST / "tpm0" / "binary_bios_measurements"


def test_show_json_is_tpm2_eventlog_document(capsys) -> None:
    assert main(["eventlog", "show", str(LOG), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "2"
    types = [e["EventType"] for e in doc["events"]]
    assert types[0] == "EV_NO_ACTION" and "EV_EFI_BOOT_SERVICES_APPLICATION" in types
    sb = next(e for e in doc["events"] if e.get("Event", {}) and isinstance(e["Event"], dict)
              and e["Event"].get("UnicodeName") == "SecureBoot")
    assert sb["Event"]["VariableData"] == {"Enabled": "No"}


def test_show_text(capsys) -> None:
    assert main(["eventlog", "show", str(LOG)]) == 0
    out = capsys.readouterr().out
    assert "Linux initrd (EFI stub)" in out and "SecureBoot = 00" in out


def test_replay_json_matches_captured_pcrs(capsys) -> None:
    assert main(["eventlog", "replay", str(LOG), "--bank", "sha256", "--bank", "sha384",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    captured = json.loads((ST / "pcrs.json").read_text())
    assert set(got) == {"sha256", "sha384"}
    for bank, values in got.items():
        assert values and all(captured[bank][i] == v for i, v in values.items())


def test_check_ok_and_mismatch(tmp_path: Path, capsys) -> None:
    assert main(["eventlog", "check", str(LOG), "--pcrs", str(ST / "pcrs.json")]) == 0
    capsys.readouterr()
    pcrs = json.loads((ST / "pcrs.json").read_text())
    pcrs["sha256"]["7"] = "00" * 32
    bad = tmp_path / "pcrs.json"
    bad.write_text(json.dumps(pcrs))
    assert main(["eventlog", "check", str(LOG), "--pcrs", str(bad), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False
    assert [(m["bank"], m["pcr"]) for m in doc["mismatches"]] == [("sha256", 7)]
    assert main(["eventlog", "check", str(LOG), "--pcrs", str(bad)]) == 1
    assert "sha256 PCR 7" in capsys.readouterr().err


def test_bad_input_exit_2(tmp_path: Path, capsys) -> None:
    cut = tmp_path / "cut"
    cut.write_bytes(LOG.read_bytes()[:200])
    assert main(["eventlog", "show", str(cut)]) == 2
    assert "offset" in capsys.readouterr().err
    assert main(["eventlog", "replay", str(LOG), "--bank", "sha512"]) == 2


def test_command_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "imasim", "eventlog", "replay", str(LOG),
                          "--json"], capture_output=True, text=True, check=True).stdout
    assert set(json.loads(out)) == {"sha1", "sha256", "sha384"}


def test_check_with_keylime_refstate(tmp_path: Path, capsys) -> None:
    sb = REALKERNEL / "k612-uefi-ovmf-secureboot" / "stage1"
    ref = tmp_path / "refstate.json"
    ref.write_text(json.dumps({"kernels": [{"kernel_authcode_sha256": "0x" + "00" * 32}]}))
    args = ["eventlog", "check", str(sb / "tpm0" / "binary_bios_measurements"),
            "--pcrs", str(sb / "pcrs.json"), "--refstate", str(ref)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "no_boot_application" in out and "REJECTED" in out
    ref.write_text(json.dumps({}))
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] and doc["judgement"]["secure_boot"] is True
    assert doc["authenticated"] is False
    ref.write_text("[1]")
    assert main(args) == 2
