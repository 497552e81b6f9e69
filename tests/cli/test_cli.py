"""The CLI: exit codes (0 ok, 1 verification failed, 2 bad input), outputs the real tools read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm
from imasim.cli import main
from realdata import stage, stages
from tools import need

REAL = stages()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("st", REAL, ids=[s.id for s in REAL])
def test_log_show_is_byte_identical(st, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out = run(capsys, "log", "show", str(st.path / "ima" / "binary_runtime_measurements"))
    assert rc == 0 and out == st.ascii


def test_log_convert_round_trip(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    st = stage("kexec-carry")
    src = st.path / "ima" / "ascii_runtime_measurements"
    assert main(["log", "convert", str(src), str(tmp_path / "b"), "--to", "binary"]) == 0
    assert (tmp_path / "b").read_bytes() == st.binary
    assert main(["log", "convert", str(tmp_path / "b"), str(tmp_path / "j"), "--to", "json"]) == 0
    doc = json.loads((tmp_path / "j").read_text())
    assert doc["entries"][0]["fields"]["n-ng"] == "boot_aggregate"


def test_log_replay_and_check(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    st = stage("custom-ima-kexec-carry", "stage2")
    lst = str(st.path / "ima" / "binary_runtime_measurements")
    rc, out = run(capsys, "log", "replay", lst, "--bank", "sha256", "--json")
    assert rc == 0
    values = json.loads(out)
    assert bytes.fromhex(values["sha256"]["10"]) == st.pcrs()[HashAlgorithm.SHA256][10]
    assert run(capsys, "log", "check", lst, "--pcrs", str(st.path / "pcrs.json"))[0] == 0
    other = stage("kexec-carry", "stage2")
    assert run(capsys, "log", "check", str(other.path / "ima" / "binary_runtime_measurements"),
               "--pcrs", str(other.path / "pcrs.json"))[0] == 1
    (tmp_path / "bad.json").write_text("{nope")
    assert run(capsys, "log", "check", lst, "--pcrs", str(tmp_path / "bad.json"))[0] == 2
    (tmp_path / "garbage").write_bytes(b"\x01\x02\x03")
    assert run(capsys, "log", "show", str(tmp_path / "garbage"))[0] == 2
    assert run(capsys, "log", "show", str(tmp_path / "missing"))[0] == 2


def test_kexec_pack_unpack(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    st = stage("custom-ima-kexec-carry", "stage1")
    lst = st.path / "ima" / "binary_runtime_measurements"
    assert main(["kexec", "pack", str(lst), "-o", str(tmp_path / "buf")]) == 0
    assert main(["kexec", "unpack", str(tmp_path / "buf"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out").read_bytes() == lst.read_bytes()


def test_tpm_cli_and_checkquote(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    state = str(tmp_path / "tpm.json")
    assert main(["tpm", "init", "--state", state, "--banks", "sha1,sha256"]) == 0
    assert main(["tpm", "extend", "--state", state, "10:sha256=" + "ab" * 32]) == 0
    assert main(["tpm", "reset", "--state", state, "10"]) == 2  # locality rules
    assert main(["tpm", "ak", "--state", state, "--alg", "ecc", "-u",
                 str(tmp_path / "ak.pem"), "--seed", "x"]) == 0
    files = [str(tmp_path / n) for n in ("q.msg", "q.sig", "q.pcrs")]
    assert main(["tpm", "quote", "--state", state, "-l", "sha256:0,10", "-q", "0011",
                 "-m", files[0], "-s", files[1], "-o", files[2]]) == 0
    args = ["tpm", "checkquote", "-u", str(tmp_path / "ak.pem"), "-m", files[0], "-s", files[1],
            "-f", files[2], "-g", "sha256"]
    assert main([*args, "-q", "0011"]) == 0
    assert main([*args, "-q", "0012"]) == 1
    capsys.readouterr()
    assert main(["tpm", "read", "--state", state, "sha256:10"]) == 0
    assert "0x" in capsys.readouterr().out


def test_demo(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, out = run(capsys, "demo", "--out", str(tmp_path))
    assert rc == 0 and "the story checks out" in out
    rc, out = run(capsys, "demo", "--json")
    assert rc == 0 and json.loads(out)["ok"] is True
    rc, _ = run(capsys, "attest", "-u", str(tmp_path / "ak.pem"), "-m", str(tmp_path / "quote.msg"),
                "-s", str(tmp_path / "quote.sig"), "-f", str(tmp_path / "quote.pcrs"), "-q",
                (tmp_path / "nonce.hex").read_text().strip(), "--list",
                str(tmp_path / "binary_runtime_measurements"))
    assert rc == 0  # without reference values the attempts are not flagged
    assert run(capsys, "log", "check", str(tmp_path / "binary_runtime_measurements"),
               "--pcrs", str(tmp_path / "pcrs.json"))[0] == 0


@pytest.mark.interop
def test_demo_artifacts_verify_with_tpm2_checkquote(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["demo", "--out", str(tmp_path)]) == 0
    nonce = (tmp_path / "nonce.hex").read_text().strip()
    proc = subprocess.run([need("tpm2_checkquote"), "-u", str(tmp_path / "ak.pem"), "-m",
                           str(tmp_path / "quote.msg"), "-s", str(tmp_path / "quote.sig"), "-f",
                           str(tmp_path / "quote.pcrs"), "-g", "sha256", "-q", nonce],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_help_and_usage(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "tpm", "log", "attest", "kexec"):
        assert cmd in out
    assert main(["log", "replay"]) == 2
