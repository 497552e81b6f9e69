"""``imasim pe``: digest, verify (exit 0/1/2), sign, show."""

from __future__ import annotations

from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.sig.authenticode import authenticode_digest, parse_authenticode
from pe.pe_support import make_pe, rsa_chain, unsigned


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().out


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"image": tmp_path / "app.efi", "odd": tmp_path / "odd.efi",
           "junk": tmp_path / "junk.efi"}
    out["image"].write_bytes(unsigned())
    out["odd"].write_bytes(make_pe(trailing=b"abc"))
    out["junk"].write_bytes(b"MZ" + bytes(30))
    for name, s in rsa_chain().items():
        (tmp_path / f"{name}.key").write_bytes(s.key_pem)
        (tmp_path / f"{name}.pem").write_bytes(s.pem)
        out[name] = tmp_path / name
    return out


def test_digest(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "pe", "digest", files["image"])
    assert rc == 0 and out.strip() == authenticode_digest(unsigned()).hex()
    rc, out = run(capsys, "pe", "digest", files["image"], "--alg", "sha384")
    assert out.strip() == authenticode_digest(unsigned(), H.SHA384).hex()
    odd = files["odd"].read_bytes()
    _, kernel = run(capsys, "pe", "digest", files["odd"])
    _, flat = run(capsys, "pe", "digest", files["odd"], "--rules", "flat")
    assert kernel != flat and kernel.strip() == authenticode_digest(odd).hex()
    assert run(capsys, "pe", "digest", files["junk"])[0] == 2


def test_sign_verify_show(files: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    signed, twice = tmp_path / "signed.efi", tmp_path / "twice.efi"
    d = files["direct"]
    rc, _ = run(capsys, "pe", "sign", files["image"], "--key", f"{d}.key", "--cert",
                f"{d}.pem", "-o", signed)
    assert rc == 0
    rc, out = run(capsys, "pe", "verify", signed, "--trust", f"{files['root']}.pem")
    assert rc == 0 and "pe root CA" in out
    assert run(capsys, "pe", "verify", signed, "--trust", f"{files['stranger']}.pem")[0] == 1
    rc, out = run(capsys, "pe", "verify", signed, "--trust", f"{files['stranger']}.pem",
                  "--platform", f"{files['root']}.pem")
    assert rc == 0 and ".platform" in out
    assert run(capsys, "pe", "verify", files["image"], "--trust", f"{files['root']}.pem")[0] == 1
    assert run(capsys, "pe", "verify", files["junk"], "--trust", f"{files['root']}.pem")[0] == 2
    assert run(capsys, "pe", "verify", signed)[0] == 2  # no --trust
    digest = authenticode_digest(signed.read_bytes()).hex()
    assert run(capsys, "pe", "verify", signed, "--trust", f"{files['root']}.pem",
               "--rules", "uefi", "--dbx", digest)[0] == 1
    # already signed: a usage error unless nesting/appending/replacing
    assert run(capsys, "pe", "sign", signed, "--key", f"{d}.key", "--cert", f"{d}.pem",
               "-o", twice)[0] == 2
    rc, _ = run(capsys, "pe", "sign", signed, "--key", f"{d}.key", "--cert", f"{d}.pem",
                "--nest", "--hash", "sha512", "-o", twice)
    assert rc == 0
    assert [s.nested for s in parse_authenticode(twice.read_bytes())] == [0, 1]
    rc, out = run(capsys, "pe", "show", twice)
    assert rc == 0
    assert ".text" in out and "WIN_CERTIFICATE[0]" in out and "nested[1]: sha512" in out
    assert "computed" in out and "differs" not in out
