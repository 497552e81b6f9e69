"""The exit-code contract of every subcommand: 0 success, 1 verification failed, 2 bad
input or usage; help with examples; --json verdicts on failure too; progress on stderr
only when stderr is a terminal."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest

from imasim.cli import _progress, build_parser, main
from imasim.sig.pefile import _example
from pki import pki
from realdata import stage

LIST = stage("custom-ima-kexec-carry", "stage2").path


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
            ) -> list[tuple[str, ...]]:
    """Every command path (groups and leaves) of the parser tree."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out += _leaves(sub, (*prefix, name))
    return out


COMMANDS = _leaves(build_parser())
TOP = sorted({c[0] for c in COMMANDS})


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace: a TPM, a quote, a signed module, a signed file, a signed PE, garbage."""
    w = tmp_path_factory.mktemp("cli")
    s = pki()["rsa_leaf"]
    (w / "key.pem").write_bytes(s.key_pem)
    (w / "cert.der").write_bytes(s.der)
    (w / "other.der").write_bytes(pki()["stranger"].der)
    (w / "garbage").write_bytes(b"\x01\x02\x03 not anything")
    (w / "file").write_bytes(b"content")
    (w / "module.ko").write_bytes(b"\x7fELF module" * 50)
    (w / "app.efi").write_bytes(_example())
    st = str(w / "tpm.json")
    q = [str(w / n) for n in ("q.msg", "q.sig", "q.pcrs")]
    for args in (["tpm", "init", "--state", st, "--banks", "sha1,sha256"],
                 ["tpm", "ak", "--state", st, "--alg", "ecc", "-u", str(w / "ak.pem")],
                 ["tpm", "quote", "--state", st, "-l", "sha256:0,10", "-q", "0011",
                  "-m", q[0], "-s", q[1], "-o", q[2]],
                 ["modsig", "sign", "--key", str(w / "key.pem"), "--cert", str(w / "cert.der"),
                  str(w / "module.ko"), "-o", str(w / "signed.ko")],
                 ["imasig", "sign", "--key", str(w / "key.pem"), "--cert", str(w / "cert.der"),
                  str(w / "file"), "--sig", str(w / "file.sig")],
                 ["pe", "sign", str(w / "app.efi"), "--key", str(w / "key.pem"), "--cert",
                  str(w / "cert.der"), "-o", str(w / "signed.efi")]):
        assert main(args) == 0, args
    return w


def run(d: Path, line: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = [a.replace("{d}", str(d)).replace("{list}", str(LIST)) for a in line.split()]
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


QUOTE = "-u {d}/ak.pem -m {d}/q.msg -s {d}/q.sig -f {d}/q.pcrs"
BIN = "{list}/ima/binary_runtime_measurements"

OK = [
    f"log show {BIN}",
    f"log replay {BIN} --json",
    f"log check {BIN} --pcrs {{list}}/pcrs.json",
    f"tpm checkquote {QUOTE} -g sha256 -q 0011",
    "tpm read --state {d}/tpm.json sha256:10 --json",
    "modsig verify {d}/signed.ko --trust {d}/cert.der",
    "imasig verify {d}/file --sig {d}/file.sig --trust {d}/cert.der",
    "pe verify {d}/signed.efi --trust {d}/cert.der",
    "pe digest {d}/app.efi",
    f"kexec pack {BIN} -o {{d}}/kexec.buf",
]

FAILED = [  # well-formed input that does not check out: exit 1
    f"log check {BIN} --pcrs {{d}}/wrong-pcrs.json",
    f"tpm checkquote {QUOTE} -g sha256 -q 0012",
    f"attest {QUOTE} -q 0012 --list {BIN}",
    "modsig verify {d}/module.ko --trust {d}/cert.der",          # unsigned (-ENODATA)
    "modsig verify {d}/signed.ko --trust {d}/other.der",         # untrusted (-ENOKEY)
    "imasig verify {d}/module.ko --sig {d}/file.sig --trust {d}/cert.der",  # other content
    "imasig verify {d}/file --sig {d}/file.sig --trust {d}/other.der",
    "pe verify {d}/app.efi --trust {d}/cert.der",                # unsigned
    "pe verify {d}/signed.efi --trust {d}/other.der",
]

BAD = [  # bad input or usage: exit 2
    "log show {d}/garbage",
    "log show {d}/missing",
    f"log show {BIN} --bank nope",
    "log convert {d}/garbage {d}/out --to ascii",
    f"log convert {BIN} {{d}}/out --to yaml",
    f"log replay {BIN} --bank nope",                 # an unknown bank is usage, not -ENOPKG
    f"log replay {BIN} --padded nope",
    f"log check {BIN} --pcrs {{d}}/garbage",
    f"log check {BIN}",
    f"attest {QUOTE} -q zz --list {BIN}",
    f"attest {QUOTE} -q 0011 --list {{d}}/garbage",
    "attest -u {d}/ak.pem -m {d}/q.msg -s {d}/q.sig -f {d}/garbage -q 0011 --list " + BIN,
    f"attest {QUOTE} -q 0011 --list {BIN} --policy {{d}}/garbage",
    "tpm init --state {d}/t2.json --banks sha1,nope",
    "tpm extend --state {d}/tpm.json 10:sha256=zz",
    "tpm extend --state {d}/tpm.json ten:sha256=00",
    "tpm extend --state {d}/tpm.json 10:nope=00",
    "tpm extend --state {d}/tpm.json 10:sha256=00",               # wrong digest size
    "tpm extend --state {d}/garbage 10:sha256=00",
    "tpm read --state {d}/tpm.json sha256:99",
    "tpm reset --state {d}/tpm.json 10",                          # locality rules
    "tpm quote --state {d}/tpm.json -l sha256:0 -q zz -m {d}/x -s {d}/y -o {d}/z",
    "tpm quote --state {d}/tpm.json -l sha256:0 -c nokey -m {d}/x -s {d}/y -o {d}/z",
    "tpm quote --state {d}/tpm.json -l nope:0 -m {d}/x -s {d}/y -o {d}/z",
    "tpm checkquote -u {d}/ak.pem -m {d}/garbage -s {d}/q.sig -q 0011",
    "tpm checkquote -u {d}/garbage -m {d}/q.msg -s {d}/q.sig -q 0011",
    f"tpm checkquote {QUOTE} -g nope",
    "modsig verify {d}/signed.ko",                                # no --trust
    "modsig verify {d}/signed.ko --trust {d}/garbage",
    "modsig show {d}/module.ko",
    "modsig strip {d}/module.ko -o {d}/x",
    "modsig sign --key {d}/key.pem --cert {d}/cert.der --hash nope {d}/module.ko -o {d}/x",
    "modsig sign --key {d}/garbage --cert {d}/cert.der {d}/module.ko -o {d}/x",
    "imasig show {d}/garbage",
    "imasig sign --key {d}/key.pem -a nope {d}/file --sig {d}/x",
    "imasig verify {d}/file --sig {d}/garbage --trust {d}/cert.der",
    "pe digest {d}/garbage",
    "pe digest {d}/app.efi --alg nope",
    "pe verify {d}/signed.efi",                                   # no --trust
    "pe verify {d}/signed.efi --trust {d}/cert.der --dbx zz",
    "pe show {d}/garbage",
    "pe sign {d}/app.efi --key {d}/key.pem --cert {d}/garbage -o {d}/x",
    "kexec unpack {d}/garbage -o {d}/x",
    "kexec pack {d}/garbage -o {d}/x",
    "demo --no-such-option",
]


@pytest.fixture(scope="module", autouse=True)
def _wrong_pcrs(d: Path) -> None:
    (d / "wrong-pcrs.json").write_text(json.dumps({"sha256": {"10": "01" * 32}}))


@pytest.mark.parametrize("line", OK)
def test_success_exits_0(d: Path, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(d, line, capsys)
    assert rc == 0, err


@pytest.mark.parametrize("line", FAILED)
def test_failed_verification_exits_1(d: Path, line: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(d, line, capsys)
    assert rc == 1, (out, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("line", BAD)
def test_bad_input_exits_2(d: Path, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(d, line, capsys)
    assert rc == 2, (out, err)
    assert err.strip(), "a bad input is explained on stderr"


@pytest.mark.parametrize("line", [f for f in FAILED if f.split()[0] != "log"
                                  or "check" in f])
def test_json_verdict_on_failure(d: Path, line: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """With --json a verifier gets a JSON document on stdout for a failure too."""
    rc, out, _ = run(d, line + " --json", capsys)
    assert rc == 1
    doc = json.loads(out)
    assert doc.get("valid", doc.get("trusted", doc.get("matched"))) is False


@pytest.mark.parametrize("line", [o for o in OK if "verify" in o or "checkquote" in o])
def test_json_verdict_on_success(d: Path, line: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(d, line + " --json", capsys)
    assert rc == 0 and json.loads(out)["valid"] is True


def test_tpm_read_json_is_what_log_check_reads(d: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(d, "tpm read --state {d}/tpm.json sha1:10+sha256:0,10 --json", capsys)
    assert rc == 0
    assert set(json.loads(out)) == {"sha1", "sha256"}
    (d / "read.json").write_text(out)
    # the TPM never saw the list: a well-formed mismatch, not bad input
    assert run(d, f"log check {BIN} --pcrs {{d}}/read.json", capsys)[0] == 1


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_refuses_unknown_options(
        cmd: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*cmd, "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: imasim " + " ".join(cmd))
    assert main([*cmd, "--no-such-option"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c != ("demo",)], ids=" ".join)
def test_missing_arguments_are_usage_errors(cmd: tuple[str, ...],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A group without its subcommand, or a command without its required arguments."""
    rc = main(list(cmd))
    _, err = capsys.readouterr()
    assert rc == 2 and err.strip()


@pytest.mark.parametrize("top", TOP)
def test_help_has_examples_and_exit_codes(top: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([top, "--help"]) == 0
    text = capsys.readouterr().out.lower()
    assert "example" in text, f"imasim {top} --help shows no example"
    assert "exit" in text, f"imasim {top} --help does not say its exit codes"


# -- progress ------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("line", [f"log show {BIN}", f"log replay {BIN}",
                                  f"log check {BIN} --pcrs {{list}}/pcrs.json",
                                  f"log convert {BIN} {{d}}/conv.txt --to ascii"])
def test_progress_only_on_a_terminal(d: Path, line: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)
    monkeypatch.setattr(_progress, "STEP", 1)
    rc, out_plain, err = run(d, line, capsys)
    assert rc == 0 and err == ""      # a pipe or a file: not a byte of progress
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    rc, out_tty, _ = run(d, line, capsys)
    assert rc == 0 and out_tty == out_plain   # stdout is the same either way
    shown = tty.getvalue()
    # lists read as a whole count entries; replay and check stream and count bytes
    assert "%" in shown and ("entries" in shown or "KiB" in shown)
    assert shown.endswith("\r\033[K")
