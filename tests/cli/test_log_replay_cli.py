"""``imasim log replay|check`` on the streaming engine, and the lazy command table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import COMMANDS, build_parser, main
from imasim.ima import DigestWithAlgo, MeasurementList
from imasim.ima.builders import boot_aggregate_entry, ima_ng_entry
from imasim.ima.replay import replay


def _write(tmp: Path, n: int = 10, pcr11: int | None = None, *, bank: H | None = None,
           order: str = "little") -> tuple[Path, MeasurementList]:
    entries = [boot_aggregate_entry(DigestWithAlgo("sha256", H.SHA256.hash(b"agg")))]
    entries += [ima_ng_entry(f"/bin/p{i}", H.SHA256.hash(b"%d" % i), H.SHA256,
                             pcr=11 if i == pcr11 else 10) for i in range(1, n)]
    lst = MeasurementList(entries, byte_order=order)  # type: ignore[arg-type]
    if bank is not None:
        lst = lst.for_bank(bank)
    path = tmp / "list.bin"
    path.write_bytes(lst.to_bytes())
    return path, lst


def _pcrs(tmp: Path, lst: MeasurementList, k: int, pcrs: range | list[int] = range(11)) -> Path:
    state = replay(list(lst)[:k], banks=(H.SHA1, H.SHA256), digest_alg=lst.digest_alg).pcrs
    p = tmp / "pcrs.json"
    p.write_text(json.dumps({a.kernel_name: {str(i): state[a].get(i, a.zero).hex()
                                             for i in pcrs} for a in state}))
    return p


def test_replay_of_a_pcr_out_of_range_is_bad_usage(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _write(tmp_path)
    assert main(["log", "replay", str(path), "--pcr", "99"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["log", "replay", str(path), "--pcr", "11", "--json"]) == 0
    # an index the list never extends prints its initial value
    assert json.loads(capsys.readouterr().out)["sha1"] == {"11": "00" * 20}


@pytest.mark.parametrize("args", [[], ["--jobs", "2"]])
def test_check_says_match_prefix_or_mismatch(tmp_path: Path, args: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, lst = _write(tmp_path)
    pcrs = _pcrs(tmp_path, lst, 10)
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), *args]) == 0
    assert capsys.readouterr().out.startswith("MATCH: all 10 entries verified")
    pcrs = _pcrs(tmp_path, lst, 6)
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), *args]) == 1
    assert capsys.readouterr().out.startswith("PREFIX: the first 6 of 10 entries verified")
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), "--allow-prefix", *args]) == 0
    capsys.readouterr()
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), "--json", *args]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["status"], doc["verified_entries"], doc["entries"]) == ("prefix", 6, 10)
    path.write_bytes(path.read_bytes()[:-1] + b"!")  # the last entry's name changed
    pcrs = _pcrs(tmp_path, lst, 10)
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), *args]) == 1
    assert capsys.readouterr().out.startswith("MISMATCH")


def test_check_refuses_an_entry_in_a_pcr_the_values_do_not_hold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, lst = _write(tmp_path, pcr11=4)
    pcrs = _pcrs(tmp_path, lst, 10)            # PCRs 0-10
    assert main(["log", "check", str(path), "--pcrs", str(pcrs)]) == 1
    out = capsys.readouterr().out
    assert "entry 4 extends PCR 11, which the quote does not cover" in out
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), "--ignore-pcr", "11"]) == 0
    capsys.readouterr()
    pcrs = _pcrs(tmp_path, lst, 10, range(12))  # PCRs 0-11
    assert main(["log", "check", str(path), "--pcrs", str(pcrs)]) == 0


@pytest.mark.parametrize("bank,order", [(None, "big"), (H.SHA256, "little"),
                                        (H.SHA384, "big")])
def test_the_kind_of_list_comes_from_its_content(tmp_path: Path, bank: H | None, order: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A per-bank or big-endian list under a plain name: found from its first record."""
    path, lst = _write(tmp_path, bank=bank, order=order)
    pcrs = _pcrs(tmp_path, lst, 10)
    assert main(["log", "check", str(path), "--pcrs", str(pcrs)]) == 0
    capsys.readouterr()
    # a wrong explicit --digest-alg is obeyed and fails to parse or to match
    wrong = "sha512" if bank else "sha256"
    assert main(["log", "check", str(path), "--pcrs", str(pcrs), "--digest-alg", wrong]) != 0


def test_only_the_chosen_command_is_imported() -> None:
    code = ("import sys\nfrom imasim.cli import main\n"
            "rc = main(['log', 'replay', '--help'])\n")
    probe = ("import sys\nmods = [m for m in sys.modules if m.startswith('imasim.cli.cmd_')]\n"
             "print(sorted(mods))\n")
    out = subprocess.run([sys.executable, "-c", "import contextlib, io\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try:\n" + "".join(f"        {line}\n" for line in code.split("\n"))
                          + "    except SystemExit:\n        pass\n" + probe],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['imasim.cli.cmd_log']"


def test_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long help lines
    for name, (_, help_text) in COMMANDS.items():
        assert name in out and " ".join(help_text.split()) in out
    # the full parser (no argv) registers every command
    full = build_parser()
    sub = next(a for a in full._actions if a.dest == "command")
    assert set(sub.choices) >= set(COMMANDS)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["check", "show"])
def test_a_misleading_file_name_does_not_decide_the_kind(tmp_path: Path, command: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """A per-bank sha256 list named as the sha384 one: its records say sha256."""
    _, lst = _write(tmp_path, bank=H.SHA256)
    path = tmp_path / "binary_runtime_measurements_sha384"
    path.write_bytes(lst.to_bytes())
    if command == "check":
        pcrs = _pcrs(tmp_path, lst, 10)
        assert main(["log", "check", str(path), "--pcrs", str(pcrs)]) == 0
        assert capsys.readouterr().out.startswith("MATCH")
        with path.open("rb") as f:  # stdin: read whole through the CLI's list reader
            proc = subprocess.run([sys.executable, "-m", "imasim", "log", "check", "-",
                                   "--pcrs", str(pcrs)], stdin=f, capture_output=True,
                                  text=True)
        assert proc.returncode == 0 and proc.stdout.startswith("MATCH")
    else:
        assert main(["log", "show", str(path)]) == 0
        assert capsys.readouterr().out == lst.to_ascii()
