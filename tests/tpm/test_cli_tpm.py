"""``imasim tpm`` end to end: the files `quote` writes are the ones tpm2_checkquote reads,
and `checkquote` also checks RSA-PSS quotes (exit 0 verified, 1 not)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.tpm import parse_pcr_file, write_pcr_file
from tools import need

NONCE = "00112233"


def _quote(tmp: Path, alg: str, scheme: str | None = None) -> list[str]:
    st = str(tmp / "tpm.json")
    assert main(["tpm", "init", "--state", st, "--banks", "sha1,sha256"]) == 0
    assert main(["tpm", "extend", "--state", st, "10:sha1=" + "11" * 20 + ",sha256="
                 + "22" * 32]) == 0
    assert main(["tpm", "extend", "--state", st, "16:sha256=" + "33" * 32]) == 0
    assert main(["tpm", "reset", "--state", st, "16"]) == 0
    ak = ["tpm", "ak", "--state", st, "--alg", alg, "-u", str(tmp / "ak.pem"), "--seed", alg]
    assert main(ak + (["--scheme", scheme] if scheme else [])) == 0
    assert main(["tpm", "quote", "--state", st, "-l", "sha1:0,10+sha256:0,10,16", "-q", NONCE,
                 "-m", str(tmp / "q.msg"), "-s", str(tmp / "q.sig"),
                 "-o", str(tmp / "q.pcrs")]) == 0
    return ["-u", str(tmp / "ak.pem"), "-m", str(tmp / "q.msg"), "-s", str(tmp / "q.sig"),
            "-f", str(tmp / "q.pcrs"), "-g", "sha256", "-q", NONCE]


def _change_pcr(path: Path) -> bytes:
    """Change one PCR value (sha256 PCR 10) in a tpm2_quote PCR file; return the original."""
    original = path.read_bytes()
    sel, values = parse_pcr_file(original)
    values[H.SHA256][10] = bytes(32)
    path.write_bytes(write_pcr_file(sel, [values[a][i] for a, idx in sel.items() for i in idx]))
    assert path.read_bytes() != original
    return original


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("alg", "scheme"), [("rsa", None), ("ecc", None), ("rsa", "rsapss")])
def test_cli_checkquote_accepts_and_rejects(alg: str, scheme: str | None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = _quote(tmp_path, alg, scheme)
    assert main(["tpm", "checkquote", *args]) == 0
    assert main(["tpm", "checkquote", *args[:-1], "0011223344"]) == 1      # another nonce
    good = _change_pcr(tmp_path / "q.pcrs")                                 # one PCR value
    assert main(["tpm", "checkquote", *args]) == 1
    (tmp_path / "q.pcrs").write_bytes(good)
    _flip(tmp_path / "q.msg", 20)                                           # one message byte
    assert main(["tpm", "checkquote", *args]) == 1


@pytest.mark.interop
@pytest.mark.parametrize("alg", ["rsa", "ecc"])
def test_tpm2_checkquote_reads_the_cli_files(alg: str, tmp_path: Path) -> None:
    args = _quote(tmp_path, alg)

    def rc() -> int:
        return subprocess.run([need("tpm2_checkquote"), *args], capture_output=True,
                              timeout=60).returncode

    assert rc() == 0
    good = _change_pcr(tmp_path / "q.pcrs")
    assert rc() != 0
    (tmp_path / "q.pcrs").write_bytes(good)
    assert rc() == 0
    _flip(tmp_path / "q.msg", 20)
    assert rc() != 0


def test_cli_quote_with_another_hash_than_the_aks_is_refused(tmp_path: Path) -> None:
    _quote(tmp_path, "ecc")
    st = str(tmp_path / "tpm.json")
    out = ["-m", str(tmp_path / "x.msg"), "-s", str(tmp_path / "x.sig"), "-o",
           str(tmp_path / "x.pcrs")]
    for g in ("sha1", "sm3_256", "sha512"):
        assert main(["tpm", "quote", "--state", st, "-l", "sha256:0", "-g", g, *out]) == 2
    assert not (tmp_path / "x.msg").exists()
    assert main(["tpm", "quote", "--state", st, "-l", "sha256:0", "-g", "sha256", *out]) == 0
