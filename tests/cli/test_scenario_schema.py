"""Scenario ops are one table with a strict schema; files a scenario names stay in its
folder, regular and size-bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imasim.cli import main
from imasim.demo import demo_scenario
from imasim.errors import LimitExceededError, UsageError
from imasim.io import confined_reader
from imasim.scenario import OPS, ScenarioError, parse_scenario


@pytest.mark.parametrize("text, where, words", [
    ("[[actions]]\nop = 'exec'\nptah = '/bin/sh'\n", "actions[0].ptah", ["'exec'", "ptah"]),
    ("[[actions]]\nop = 'exec'\n", "actions[0].path", ["needs", "path"]),
    ("[[actions]]\nop = 'exec'\npath = '/x'\nuid = '0'\n", "actions[0].uid", ["int"]),
    ("[[actions]]\nop = 'open'\npath = '/x'\nwrite = 1\n", "actions[0].write", ["bool"]),
    ("[[actions]]\nop = 'power_cycle'\npath = '/x'\n", "actions[0].path", ["power_cycle"]),
    ("[[actions]]\nop = 'add_key'\nkey = 'nokey'\n", "actions[0].key", ["unknown key"]),
    ("[[actions]]\nop = 'add_key'\nkeyring = '.blacklist'\n", "actions[0]",
     ["one of", "hash_of"]),
    ("[keys.a]\n[[actions]]\nop = 'add_key'\nkey = 'a'\nhash_of = '/x'\n", "actions[0]",
     ["one of"]),
    ("[keys.a]\n[[actions]]\nop = 'add_key'\nkey = 'a'\nsigned_by = 'a'\n",
     "actions[0].signed_by", ["description"]),
    ("[[actions]]\nop = 'add_key'\ntbs_of = 'nokey'\n", "actions[0].tbs_of",
     ["unknown key"]),
    ("[machine]\ncmdlin = 'x'\n", "machine.cmdlin", ["unknown key"]),
    ("[keys.a]\ncaa = true\n", "keys.a.caa", ["unknown key"]),
    ("[[files]]\npath = '/x'\ncontnet = 'x'\n", "files[0].contnet", ["unknown key"]),
    ("[[files]]\npath = '/x'\nsource = '../../../../etc/passwd'\n", "files[0].source",
     ["inside"]),
    ("[[files]]\npath = '/x'\nsource = '/etc/passwd'\n", "files[0].source", ["relative"]),
    ("[[actions]]\nop = 'extract_tar'\nfiles = [{ path = '/a', source = 'x/../../y' }]\n",
     "actions[0].files[0].source", ["inside"]),
    ("nam = 'x'\n", "scenario.nam", ["unknown key"]),
    ("[[actions]]\nop = 'tamper'\npath = '/x'\nfind = 'ab'\nreplace = 'abc'\n",
     "actions[0].replace", ["as long"]),
    ("[machine]\npolicy = 'measure func=BPRM_CHECK'\n[[actions]]\nop = 'boot'\n",
     "machine.policy", ["automatic boot"]),
    ("[[files]]\npath = '/k'\ninitramfs = [{ path = '/init', contnet = 'x' }]\n",
     "files[0].initramfs[0].contnet", ["unknown key"]),
    ("[[files]]\npath = '/i'\ncpio = [{ path = 'init' }]\n", "files[0].cpio[0]",
     ["absolute"]),
])
def test_a_scenario_off_the_schema_is_refused_naming_the_place(
        text: str, where: str, words: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert info.value.field == where
    for w in words:
        assert w in str(info.value)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["boot", str(path)]) == 2
    assert where in capsys.readouterr().err


def test_every_op_is_documented_and_requires_only_keys_it_knows() -> None:
    for name, spec in OPS.items():
        assert spec.doc and spec.required <= set(spec.keys), name


def _scenario(tmp_path: Path, source: str) -> Path:
    (tmp_path / "s").mkdir(exist_ok=True)
    path = tmp_path / "s" / "s.toml"
    path.write_text(f"[[files]]\npath = '/x'\nsource = '{source}'\n")
    return path


def test_sources_are_read_from_the_scenarios_folder(tmp_path: Path) -> None:
    path = _scenario(tmp_path, "data/app.bin")
    (path.parent / "data").mkdir()
    (path.parent / "data" / "app.bin").write_bytes(b"\x7fELF app")
    assert main(["boot", str(path)]) == 0


@pytest.mark.parametrize("target", ["outside", "/dev/zero"])
def test_symlinks_out_of_the_folder_or_to_devices_are_refused(
        target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "outside").write_bytes(b"secret")
    path = _scenario(tmp_path, "link")
    os.symlink(tmp_path / "outside" if target == "outside" else target, path.parent / "link")
    assert main(["boot", str(path)]) == 2
    assert "source 'link'" in capsys.readouterr().err


def test_reader_refuses_fifos_without_blocking_and_large_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(bytes(101))
    (tmp_path / "ok").write_bytes(bytes(100))
    read = confined_reader(tmp_path, max_size=100)
    with pytest.raises(UsageError, match="not a regular file"):
        read("fifo")
    with pytest.raises(LimitExceededError):
        read("big")
    assert read("ok") == bytes(100)
    for bad in ("/etc/passwd", "../x", "", "missing"):
        with pytest.raises(UsageError):
            read(bad)


def test_the_demo_is_a_scenario_file_in_the_package() -> None:
    s = parse_scenario(demo_scenario())
    assert s.data["name"] == "demo"
    assert {a["op"] for a in s.data["actions"]} >= {"boot", "exec", "load_module",
                                                     "kexec_load", "kexec_execute", "quote"}


def test_a_machine_policy_the_kernel_refuses_names_the_key() -> None:
    from imasim.scenario import run_scenario

    with pytest.raises(ScenarioError) as info:
        run_scenario(parse_scenario("[machine]\npolicy = 'bogus'\n"))
    assert info.value.field == "machine.policy" and "bogus" in str(info.value)
