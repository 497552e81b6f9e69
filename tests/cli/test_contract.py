"""The command-line contract, for every subcommand of the parser tree.

Every input slot of every leaf command gets every kind of bad input (missing, empty, a
directory, the wrong kind of file, truncated, deeply nested, huge numbers, not UTF-8):
the answer is exit 2 with exactly one stderr line starting ``imasim:`` and no traceback;
exit 1 is only for a verification that ran and failed. ``-`` reads stdin; a closed stdout
pipe ends quietly; every leaf's ``--help`` has an example and help for each argument.

The table ``COMMANDS`` says how to run each leaf with good inputs. A command added to the
parser without a row fails :func:`test_every_leaf_command_has_a_row`, which says what to
add. Most cases run in-process through :func:`imasim.cli.main`; a few as subprocesses.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from imasim.cli import build_parser, main
from imasim.sig.pefile import _example
from pki import pki
from realdata import stage

VECTORS = Path(__file__).parent.parent / "vectors"


def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
           ) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every leaf command (one without subcommands) of the parser tree."""
    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                below = leaves(sub, (*prefix, name))
                out.update(below or {(*prefix, name): sub})
    return out


LEAVES = leaves(build_parser())


@dataclass(frozen=True)
class Slot:
    """An input a command reads: the good file for it, and which of the bad inputs are
    in fact good for it (``content``: any bytes are a valid input, such as a file to
    hash or sign)."""

    good: str
    accepts: frozenset[str] = frozenset()
    content: bool = False
    stdin: bool = True


_LISTS = frozenset({"ascii-list", "binary-list", "per-bank-list", "truncated-list"})
SLOTS = {
    "list": Slot("binary_runtime_measurements", _LISTS - {"truncated-list"}),
    "ak": Slot("ak.pem"),
    "msg": Slot("quote.msg"),
    "sig": Slot("quote.sig"),
    "pcrfile": Slot("quote.pcrs"),
    "pcrs": Slot("pcrs.json"),
    "policy": Slot("runtime-policy.json"),
    "state": Slot("tpm-state.json", stdin=False),  # most tpm commands write it back
    "cert": Slot("cert.der", frozenset({"pem", "der"})),
    "key": Slot("key.pem"),
    "pe": Slot("signed.efi"),
    "unsigned_pe": Slot("app.efi"),
    "image": Slot("image.img"),
    "signed": Slot("signed.ko"),
    "xattr": Slot("file.sig"),
    "ipe": Slot("policy.pol"),
    "scenario": Slot("scenario.toml"),
    "kexecbuf": Slot("kexec.buf"),
    "bioslog": Slot("binary_bios_measurements"),
    "biospcrs": Slot("bios-pcrs.json"),
    "content": Slot("file", content=True),
    "fleetdir": Slot("fleet", stdin=False),
}

#: leaf -> (argv with {slot} placeholders and {out} for an output path, exit code with
#: the good inputs, the slots where a wrong kind of file may also give 1: a file that
#: signature verification finds unsigned, bytes that are a plain signature that fails)
COMMANDS: dict[tuple[str, ...], tuple[str, int, frozenset[str]]] = {
    ("attest",): ("attest -u {ak} -m {msg} -s {sig} -f {pcrfile} -q {nonce} --list {list} "
                  "--policy {policy}", 1, frozenset({"sig"})),  # the demo's list has a dropper;
    # bytes that read as a plain signature are a signature that fails (as checkquote)
    ("boot",): ("boot {scenario}", 0, frozenset()),
    ("demo",): ("demo", 0, frozenset()),
    ("eventlog", "show"): ("eventlog show {bioslog}", 0, frozenset()),
    ("eventlog", "replay"): ("eventlog replay {bioslog}", 0, frozenset()),
    ("eventlog", "check"): ("eventlog check {bioslog} --pcrs {biospcrs}", 0, frozenset()),
    ("fleet", "simulate"): ("fleet simulate --machines 3 --tamper 1 --entries 20 --out {out}",
                            0, frozenset()),
    # the demo's policy knows none of the fleet's software: every machine is untrusted
    ("fleet", "verify"): ("fleet verify {fleetdir} --policy {policy} --out {out} --workers 1",
                          1, frozenset()),
    ("fleet", "table"): ("fleet table {fleetdir} --policy {policy} --out {out}", 0,
                         frozenset()),
    ("imasig", "sign"): ("imasig sign --key {key} --cert {cert} {content} --sig {out}", 0,
                         frozenset()),
    ("imasig", "verify"): ("imasig verify {content} --sig {xattr} --trust {cert}", 0,
                           frozenset()),
    ("imasig", "show"): ("imasig show {xattr}", 0, frozenset()),
    ("ipe", "check"): ("ipe check {ipe}", 0, frozenset()),
    ("ipe", "eval"): ("ipe eval {ipe} --op EXECUTE --prop boot_verified=TRUE", 0, frozenset()),
    ("ipe", "sign"): ("ipe sign {ipe} --key {key} --cert {cert} -o {out}", 0, frozenset()),
    ("ipe", "fsverity-digest"): ("ipe fsverity-digest {content}", 0, frozenset()),
    ("ipe", "dmverity-roothash"): ("ipe dmverity-roothash {image} --salt 00", 0,
                                   frozenset()),
    ("kexec", "pack"): ("kexec pack {list} -o {out}", 0, frozenset()),
    ("kexec", "unpack"): ("kexec unpack {kexecbuf} -o {out}", 0, frozenset()),
    ("log", "show"): ("log show {list}", 0, frozenset()),
    ("log", "convert"): ("log convert {list} {out} --to json", 0, frozenset()),
    ("log", "replay"): ("log replay {list}", 0, frozenset()),
    ("log", "check"): ("log check {list} --pcrs {pcrs}", 0, frozenset()),
    ("modsig", "sign"): ("modsig sign --key {key} --cert {cert} {content} -o {out}", 0,
                         frozenset()),
    ("modsig", "verify"): ("modsig verify {signed} --trust {cert}", 0, frozenset({"signed"})),
    ("modsig", "show"): ("modsig show {signed}", 0, frozenset()),
    ("modsig", "strip"): ("modsig strip {signed} -o {out}", 0, frozenset()),
    ("pe", "digest"): ("pe digest {pe}", 0, frozenset()),
    ("pe", "verify"): ("pe verify {pe} --trust {cert}", 0, frozenset()),
    ("pe", "sign"): ("pe sign {unsigned_pe} --key {key} --cert {cert} -o {out}", 0, frozenset()),
    ("pe", "show"): ("pe show {pe}", 0, frozenset()),
    ("runtime-policy", "create"): ("runtime-policy create --list {list} -o {out}", 0,
                                   frozenset()),
    ("tpm", "init"): ("tpm init --state {out}", 0, frozenset()),
    ("tpm", "extend"): ("tpm extend --state {state} 10:sha256=" + "00" * 32, 0, frozenset()),
    ("tpm", "read"): ("tpm read --state {state} sha256:10", 0, frozenset()),
    ("tpm", "reset"): ("tpm reset --state {state} 16", 0, frozenset()),
    ("tpm", "reboot"): ("tpm reboot --state {state}", 0, frozenset()),
    ("tpm", "startup"): ("tpm startup --state {state} -c", 0, frozenset()),
    ("tpm", "shutdown"): ("tpm shutdown --state {state}", 0, frozenset()),
    ("tpm", "ak"): ("tpm ak --state {state} --alg ecc -u {out}", 0, frozenset()),
    ("tpm", "quote"): ("tpm quote --state {state} -l sha256:0,10 -q 00 -m {out} -s {out}.s "
                       "-o {out}.p", 0, frozenset()),
    ("tpm", "checkquote"): ("tpm checkquote -u {ak} -m {msg} -s {sig} -f {pcrfile} "
                            "-g sha256 -q {nonce}", 0, frozenset({"sig"})),
}

_DEEP = 100_000
BAD: dict[str, bytes | None] = {
    "missing": None,
    "empty": b"",
    "directory": None,
    "pem": b"",                   # filled from the workspace: a PEM certificate
    "der": b"",                   # a DER certificate
    "json": b'{"a": [1, 2, {"b": null}]}\n',
    "ascii-list": b"",            # the demo's ascii_runtime_measurements
    "binary-list": b"",
    "per-bank-list": b"",         # a real sha256 per-bank list
    "truncated-list": b"",        # a binary list cut inside its last record
    "deep-json": b"[" * _DEEP + b"]" * _DEEP,
    "deep-toml": b"a = " + b"[" * _DEEP + b"]" * _DEEP + b"\n",
    "huge-json-number": (b'{"sha256": {"10": ' + b"9" * 5000
                         + b'}, "format": "imasim-tpm-state/1", "n": 1e999999}\n'),
    "huge-pcr": b"9" * 5000 + b" " + b"00" * 20 + b" ima-ng sha1:" + b"00" * 20 + b" /x\n",
    "not-utf8": b'name = "\xff\xfe"\npolicy_name=\xff\n10 \xff\xff ima-ng\n',
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace of good inputs (the demo's artifacts, signed files) and the bad ones."""
    w = tmp_path_factory.mktemp("contract")
    assert main(["demo", "--out", str(w)]) == 0
    assert main(["fleet", "simulate", "--machines", "2", "--entries", "20", "--out",
                 str(w / "fleet")]) == 0
    s = pki()["rsa_leaf"]
    (w / "key.pem").write_bytes(s.key_pem)
    (w / "cert.der").write_bytes(s.der)
    (w / "file").write_bytes(b"content")
    (w / "module.ko").write_bytes(b"\x7fELF module" * 50)
    (w / "app.efi").write_bytes(_example())
    (w / "image.img").write_bytes(bytes(range(256)) * 64)
    bios = stage("k612-ipe", "stage1").path
    shutil.copy(bios / "tpm0" / "binary_bios_measurements", w / "binary_bios_measurements")
    shutil.copy(bios / "pcrs.json", w / "bios-pcrs.json")
    (w / "policy.pol").write_text("policy_name=p policy_version=0.0.1\nDEFAULT action=ALLOW\n"
                                  "op=EXECUTE boot_verified=FALSE action=DENY\n")
    (w / "scenario.toml").write_text('name = "s"\n[machine]\ncmdline = "ima_policy=tcb"\n'
                                     '[[files]]\npath = "/usr/bin/x"\ncontent = "x"\n'
                                     '[[actions]]\nop = "exec"\npath = "/usr/bin/x"\n')
    for line in ("modsig sign --key {d}/key.pem --cert {d}/cert.der {d}/module.ko -o "
                 "{d}/signed.ko",
                 "imasig sign --key {d}/key.pem --cert {d}/cert.der {d}/file --sig {d}/file.sig",
                 "pe sign {d}/app.efi --key {d}/key.pem --cert {d}/cert.der -o {d}/signed.efi",
                 "kexec pack {d}/binary_runtime_measurements -o {d}/kexec.buf"):
        assert main(line.format(d=w).split()) == 0, line
    bad = w / "bad"
    bad.mkdir()
    binary = (w / "binary_runtime_measurements").read_bytes()
    per_bank = stage("k612-ipe", "stage1").path / "ima" / "binary_runtime_measurements_sha256"
    filled = {"pem": (VECTORS / "debian" / "debian-secure-boot-ca.pem").read_bytes(),
              "der": s.der, "ascii-list": (w / "ascii_runtime_measurements").read_bytes(),
              "binary-list": binary, "per-bank-list": per_bank.read_bytes(),
              "truncated-list": binary[:-10]}
    for name, data in BAD.items():
        if name == "directory":
            (bad / name).mkdir()
        elif name != "missing":
            (bad / name).write_bytes(filled.get(name, data or b""))
    return w


def _argv(cmd: tuple[str, ...], ws: Path, tmp: Path, override: dict[str, str]) -> list[str]:
    line, _, _ = COMMANDS[cmd]
    values = {name: str(ws / slot.good) for name, slot in SLOTS.items()}
    state = tmp / "tpm-state.json"
    if not state.exists():
        shutil.copy(ws / "tpm-state.json", state)
    values["state"] = str(state)
    values["nonce"] = (ws / "nonce.hex").read_text().strip()
    values["out"] = str(tmp / "out")
    values.update(override)
    return line.format(**values).split()


def _slots(cmd: tuple[str, ...]) -> list[str]:
    line = COMMANDS[cmd][0]
    return [s for s in SLOTS if "{" + s + "}" in line]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("imasim: "), lines[0]
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]


# -- the table is complete -------------------------------------------------------------
def test_every_leaf_command_has_a_row() -> None:
    missing = sorted(" ".join(c) for c in LEAVES if c not in COMMANDS)
    assert not missing, (
        f"add a row to COMMANDS in {__file__} for: {', '.join(missing)} (its argv with "
        "{slot} placeholders from SLOTS, the exit code with good inputs, and extra codes a "
        "wrong file may give)")
    stale = sorted(" ".join(c) for c in COMMANDS if c not in LEAVES)
    assert not stale, f"rows for commands that no longer exist: {stale}"


@pytest.mark.parametrize("cmd", sorted(COMMANDS), ids=" ".join)
def test_good_inputs(cmd: tuple[str, ...], ws: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    """The row itself is right: with good inputs the command does its job."""
    if cmd not in LEAVES:
        pytest.skip("not a command")
    rc, _, err = run(_argv(cmd, ws, tmp_path, {}), capsys)
    assert rc == COMMANDS[cmd][1], err
    assert "Traceback" not in err


# -- every bad input, in every slot --------------------------------------------------
CASES = [(cmd, slot, bad) for cmd in sorted(COMMANDS) for slot in _slots(cmd) for bad in BAD]


@pytest.mark.parametrize(("cmd", "slot", "bad"), CASES,
                         ids=[f"{' '.join(c)}-{s}-{b}" for c, s, b in CASES])
def test_bad_input(cmd: tuple[str, ...], slot: str, bad: str, ws: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = SLOTS[slot]
    if cmd not in LEAVES:
        pytest.skip("not a command")
    if bad in spec.accepts or (spec.content and bad not in ("missing", "directory")):
        pytest.skip(f"{bad} is a good {slot}")
    path = ws / "bad" / bad
    rc, _, err = run(_argv(cmd, ws, tmp_path, {slot: str(path)}), capsys)
    line = one_line(err) if rc != 1 or err else ""   # a failed verdict may be on stdout
    allowed = {2} | ({1} if slot in COMMANDS[cmd][2]
                     and bad not in ("missing", "empty", "directory") else set())
    assert rc in allowed, (rc, line)
    assert "usage error" not in line, line
    if bad in ("missing", "directory"):
        assert str(path) in line, line


# -- stdin, pipes, help ------------------------------------------------------------------
class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


STDIN = [(cmd, slot) for cmd in sorted(COMMANDS) for slot in _slots(cmd)
         if SLOTS[slot].stdin and cmd[0] != "boot"]


@pytest.mark.parametrize(("cmd", "slot"), STDIN, ids=[f"{' '.join(c)}-{s}" for c, s in STDIN])
def test_dash_reads_stdin(cmd: tuple[str, ...], slot: str, ws: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(_argv(cmd, ws, tmp_path, {}), capsys)
    monkeypatch.setattr(sys, "stdin", _Stdin((ws / SLOTS[slot].good).read_bytes()))
    rc2, out2, err2 = run(_argv(cmd, ws, tmp_path, {slot: "-"}), capsys)
    assert (rc2, err2) == (rc, err)
    assert out2 == out.replace(str(ws / SLOTS[slot].good), "-")


def test_stdin_named_in_errors(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b"-----BEGIN CERTIFICATE-----\nMII\n"))
    rc, _, err = run(["log", "show", "-"], capsys)
    assert rc == 2
    assert one_line(err) == ("imasim: bad input: stdin is a PEM file (CERTIFICATE), expected "
                             "a measurement list (binary, ASCII or JSON)")


def _big_list(tmp: Path) -> Path:
    one = stage("kexec-carry", "stage2").path / "ima" / "binary_runtime_measurements"
    big = tmp / "big.bin"
    big.write_bytes(one.read_bytes() * 400)   # a list whose text is far above a pipe buffer
    return big


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["ascii", "json"])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, extra: list[str]) -> None:
    """``imasim log show big | head -1``: exit code of the command, nothing on stderr."""
    big = _big_list(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "imasim", "log", "show", str(big), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()           # the reader goes away, as head does
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0, err
    assert err == b"" and first


def test_a_closed_pipe_keeps_a_verifiers_exit_code(tmp_path: Path) -> None:
    """A verification that fails says 1 even when nobody reads its output."""
    w = tmp_path
    (w / "pcrs.json").write_text('{"sha256": {"10": "' + "01" * 32 + '"}}')
    lst = stage("kexec-carry", "stage2").path / "ima" / "binary_runtime_measurements"
    p = subprocess.Popen([sys.executable, "-m", "imasim", "log", "check", str(lst), "--pcrs",
                          str(w / "pcrs.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 1
    assert b"Traceback" not in err and b"Broken pipe" not in err


@pytest.mark.parametrize("cmd", sorted(LEAVES), ids=" ".join)
def test_help_has_an_example_and_every_argument_is_explained(cmd: tuple[str, ...]) -> None:
    parser = LEAVES[cmd]
    assert parser.epilog and "example" in parser.epilog, \
        f"imasim {' '.join(cmd)} --help: add an epilog 'example: imasim ...'"
    assert f"imasim {' '.join(cmd)}" in parser.epilog, "the example runs this command"
    unexplained = [a.option_strings[-1] if a.option_strings else a.dest
                   for a in parser._actions
                   if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not unexplained, f"imasim {' '.join(cmd)}: no help text for {unexplained}"


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["log"], ["log", "show"], ["pe", "digest", "x", "--alg", "nope"],
                 ["tpm", "nosuch"], ["log", "show", "x", "--no-such-option"]):
        assert main(argv) == 2
        line = one_line(capsys.readouterr().err)
        assert line.startswith("imasim: usage error: imasim"), line


def test_an_unexpected_exception_is_one_line_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from imasim.cli import log_codec

    def boom(args: argparse.Namespace) -> int:
        raise TypeError("an imasim bug\nover two lines")

    monkeypatch.setattr(log_codec, "_show", boom)
    monkeypatch.delenv("IMASIM_DEBUG", raising=False)
    assert main(["log", "show", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("imasim: internal error")
    assert "TypeError: an imasim bug over two lines" in err


#: leaves that show or verify something, by name: each has --json
_SHOWS = {"show", "verify", "check", "checkquote", "replay", "digest", "read", "eval", "ak",
          "quote", "attest", "boot", "demo", "fsverity-digest", "dmverity-roothash"}
JSON = sorted(c for c in COMMANDS if c[-1] in _SHOWS)


@pytest.mark.parametrize("cmd", JSON, ids=" ".join)
def test_json_everywhere_indented_by_one(cmd: tuple[str, ...], ws: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import json

    if cmd not in LEAVES:
        pytest.skip("not a command")
    opts = {o for a in LEAVES[cmd]._actions for o in a.option_strings}
    assert "--json" in opts, f"imasim {' '.join(cmd)} shows or verifies: give it --json"
    assert "--format" not in opts, "one JSON convention: --json, not --format json"
    rc, out, err = run([*_argv(cmd, ws, tmp_path, {}), "--json"], capsys)
    assert rc == COMMANDS[cmd][1], err
    doc = json.loads(out)
    assert isinstance(doc, dict | list) and doc
    second = out.splitlines()[1]
    assert second.startswith(" ") and not second.startswith("  "), second


def test_a_damaged_list_gets_the_offset_and_a_text_file_is_named(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.bin"
    cut.write_bytes((ws / "bad" / "truncated-list").read_bytes())
    assert main(["log", "show", str(cut)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"imasim: bad input: {cut}: ") and "offset" in line, line
    text = tmp_path / "notes.txt"
    text.write_text("y\n" * 50)
    assert main(["log", "show", str(text)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{text} is a text file, expected a measurement list" in line, line
