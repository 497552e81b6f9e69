"""``imasim attest`` and ``imasim runtime-policy create``: each way evidence can be forged,
and evidence without a quote, through the command line users run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.ima.codec import MeasurementList
from imasim.io import dump_pcrs_json
from imasim.machine import Machine
from imasim.tpm import PcrSelection
from imasim.tpm.verify import write_pcr_file

NONCE = "00112233"


def _machine(*, pcr11: bool = False) -> Machine:
    policy = "measure func=BPRM_CHECK\n" + ("measure func=FILE_CHECK pcr=11\n" if pcr11 else "")
    m = Machine.create(cmdline="ima_policy=tcb", banks=(H.SHA1, H.SHA256))
    m.boot()
    if pcr11:
        m.load_policy(policy)
    for i in range(4):
        m.add_file(f"/usr/bin/p{i}", f"program {i}".encode())
        m.exec(f"/usr/bin/p{i}")
    if pcr11:
        m.add_file("/etc/secret", b"s")
        m.open("/etc/secret")
    return m


def _evidence(m: Machine, d: Path, selection: PcrSelection,
              claimed: PcrSelection | None = None) -> list[str]:
    """Write quote files for ``selection``; the PCR file claims ``claimed`` (the forgery)."""
    ak = m.tpm.create_ak("rsa", seed=b"cli")
    q = m.tpm.quote(ak, selection, bytes.fromhex(NONCE))
    (d / "ak.pem").write_bytes(ak.public_pem)
    (d / "q.msg").write_bytes(q.attest)
    (d / "q.sig").write_bytes(q.signature)
    claim = claimed or selection
    values = [m.tpm.read(a, i) for a, idx in claim.items() for i in idx]
    (d / "q.pcrs").write_bytes(write_pcr_file(claim, values))
    (d / "list").write_bytes(MeasurementList(list(m.measurements)).to_bytes())
    return ["attest", "-u", str(d / "ak.pem"), "-m", str(d / "q.msg"), "-s", str(d / "q.sig"),
            "-f", str(d / "q.pcrs"), "-q", NONCE, "--list", str(d / "list")]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    rc = main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_honest_evidence_is_trusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _machine()
    argv = _evidence(m, tmp_path, PcrSelection({H.SHA256: range(11)}))
    rc, rep = _run(capsys, *argv)
    assert rc == 0 and rep["status"] == "trusted" and rep["authenticated"] is True
    assert rep["pcrs"]["source"] == "quote"  # type: ignore[index]


def test_forged_pcr_file_beyond_the_quote(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The attack: the quote covers sha256:0, the PCR file also claims 1-10."""
    m = _machine()
    argv = _evidence(m, tmp_path, PcrSelection({H.SHA256: [0]}),
                     claimed=PcrSelection({H.SHA256: range(11)}))
    rc, rep = _run(capsys, *argv)
    assert rc == 1 and rep["trusted"] is False
    # whatever the files claim, nothing but the quoted PCR 0 reaches the verdict
    pcrs = rep["pcrs"]
    assert pcrs is None or set(pcrs["values"]["sha256"]) == {"0"}  # type: ignore[index]


def test_entry_in_an_unquoted_pcr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _machine(pcr11=True)
    assert any(e.pcr == 11 for e in m.measurements)
    argv = _evidence(m, tmp_path, PcrSelection({H.SHA256: range(11)}))
    rc, rep = _run(capsys, *argv)
    assert rc == 1
    bad = [f for f in rep["failures"] if f["verdict"] == "uncovered-pcr"]  # type: ignore[union-attr]
    assert bad and all(f["path"] == "/etc/secret" for f in bad)  # type: ignore[index]
    rc, rep = _run(capsys, *argv, "--ignore-pcr", "11")
    assert rc == 0, rep
    argv = _evidence(m, tmp_path, PcrSelection({H.SHA256: range(12)}))
    rc, rep = _run(capsys, *argv)
    assert rc == 0, rep  # quoted: replayed and verified like PCR 10


def test_without_a_quote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _machine()
    (tmp_path / "list").write_bytes(MeasurementList(list(m.measurements)).to_bytes())
    values = {a: {i: m.tpm.read(a, i) for i in range(24)} for a in (H.SHA1, H.SHA256)}
    (tmp_path / "pcrs.json").write_text(dump_pcrs_json(values))
    argv = ["attest", "--pcrs", str(tmp_path / "pcrs.json"), "--list", str(tmp_path / "list")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "UNAUTHENTICATED" in out and "CONSISTENT" in out and "TRUSTED\n" not in out
    rc, rep = _run(capsys, *argv)
    assert rc == 0 and rep["status"] == "consistent" and rep["trusted"] is False
    values[H.SHA256][10] = bytes(32)
    values[H.SHA1][10] = bytes(20)
    (tmp_path / "pcrs.json").write_text(dump_pcrs_json(values))
    assert _run(capsys, *argv)[0] == 1


def test_runtime_policy_create_then_attest(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    m = _machine()
    argv = _evidence(m, tmp_path, PcrSelection({H.SHA256: range(11)}))
    policy = tmp_path / "policy.json"
    assert main(["runtime-policy", "create", "--list", str(tmp_path / "list"), "--keyrings",
                 "--ima-buf", "-o", str(policy)]) == 0
    doc = json.loads(policy.read_text())
    assert set(doc["digests"]) >= {f"/usr/bin/p{i}" for i in range(4)}
    assert _run(capsys, *argv, "--policy", str(policy))[0] == 0
    del doc["digests"]["/usr/bin/p2"]
    policy.write_text(json.dumps(doc))
    rc, rep = _run(capsys, *argv, "--policy", str(policy))
    assert rc == 1
    assert [(f["path"], f["verdict"]) for f in rep["failures"]] == [  # type: ignore[union-attr, index]
        ("/usr/bin/p2", "unknown-path")]


def test_runtime_policy_from_a_rootfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "a b").write_bytes(b"a")
    (root / "tmp").mkdir()
    (root / "tmp" / "x").write_bytes(b"x")  # /tmp is never walked
    assert main(["runtime-policy", "create", "--rootfs", str(root)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["digests"] == {"/usr/bin/a_b": [H.SHA256.hash(b"a").hex()]}
    assert main(["runtime-policy", "create"]) == 2


def test_without_a_quote_from_tpm2_pcrread_yaml(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``tpm2_pcrread sha1:all+sha256:all`` output as the PCR values (unauthenticated)."""
    m = _machine()
    (tmp_path / "list").write_bytes(MeasurementList(list(m.measurements)).to_bytes())
    lines = []
    for a in (H.SHA1, H.SHA256):
        lines.append(f"  {a.kernel_name}:")
        lines += [f"    {i:<2}: 0x{m.tpm.read(a, i).hex().upper()}" for i in range(24)]
    (tmp_path / "pcrs.yaml").write_text("\n".join(lines) + "\n")
    rc, rep = _run(capsys, "attest", "--pcrs", str(tmp_path / "pcrs.yaml"), "--list",
                   str(tmp_path / "list"))
    assert rc == 0 and rep["status"] == "consistent"
    assert rep["pcrs"]["source"] == "unauthenticated"  # type: ignore[index]
