"""The firmware log as an input of attest() and ``imasim attest --eventlog``."""

from __future__ import annotations

import json
from pathlib import Path

from eventlog.test_simulate import BANKS, CA, KERNEL, NONCE, machine, reference
from imasim.attest import AttestationStatus, attest
from imasim.cli import main
from imasim.eventlog import EventLog, EventType
from imasim.eventlog.judge import ReferenceState
from imasim.ima import MeasurementList
from imasim.sig.authenticode import authenticode_digest
from imasim.tpm import PcrSelection
from imasim.tpm.verify import write_pcr_file


def _evidence():  # type: ignore[no-untyped-def]
    m = machine()
    ak = m.tpm.create_ak("rsa", seed=b"eventlog-attest")
    q = m.tpm.quote(ak, PcrSelection({b: range(11) for b in BANKS}), NONCE)
    return m, ak, q


def _attest(m, ak, q, **kw):  # type: ignore[no-untyped-def]
    return attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                  nonce=NONCE, pcr_values=q.values_by_bank(), entries=list(m.measurements),
                  **kw)


def test_trusted_with_log_and_reference() -> None:
    m, ak, q = _evidence()
    rep = _attest(m, ak, q, eventlog=m.firmware_log, measured_boot=reference())
    assert rep.status is AttestationStatus.TRUSTED, rep.summary()
    assert rep.firmware_log is not None and rep.firmware_log.ok
    assert rep.to_dict()["firmware_log"]["measured_boot"]["secure_boot"] is True


def test_a_dropped_event_is_not_trusted() -> None:
    m, ak, q = _evidence()
    log = m.firmware_log
    assert log is not None
    keep = [e for e in log.events if e.event_type != EventType.EV_EFI_VARIABLE_AUTHORITY]
    rep = _attest(m, ak, q, eventlog=EventLog(log.format, log.spec_id, tuple(keep)))
    assert rep.status is AttestationStatus.NOT_TRUSTED
    assert rep.firmware_log is not None and rep.firmware_log.verified is None
    assert "PcrMismatchError" in (rep.firmware_log.error or "")
    assert "PCR 7" in rep.summary()


def test_measured_boot_rejection_is_not_trusted() -> None:
    m, ak, q = _evidence()
    ref = ReferenceState(secure_boot=True, boot_digests=frozenset({authenticode_digest(KERNEL)}))
    rep = _attest(m, ak, q, eventlog=m.firmware_log, measured_boot=ref)
    assert rep.status is AttestationStatus.NOT_TRUSTED
    assert rep.firmware_log is not None and rep.firmware_log.verdict is not None
    assert [r.code for r in rep.firmware_log.verdict.reasons] == [
        "boot_application_unknown", "boot_application_unknown"]


def test_without_a_quote_the_best_is_consistent() -> None:
    m, _ak, _q = _evidence()
    pcrs = {b: {i: m.tpm.read(b, i) for i in range(11)} for b in BANKS}
    rep = attest(pcr_values=pcrs, entries=list(m.measurements), eventlog=m.firmware_log,
                 measured_boot=reference())
    assert rep.status is AttestationStatus.CONSISTENT


def test_cli_attest_eventlog(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    m, ak, q = _evidence()
    assert m.firmware_log is not None
    files = {"ak.pem": ak.public_pem, "quote.msg": q.attest, "quote.sig": q.signature,
             "quote.pcrs": write_pcr_file(q.selection, [v for _, _, v in q.pcr_values]),
             "list": MeasurementList(list(m.measurements)).to_bytes(),
             "bios": m.firmware_log.encode()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    owner = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    (tmp_path / "refstate.json").write_text(json.dumps(
        {"db": [{"SignatureOwner": owner, "SignatureData": CA.hex()}]}))
    base = ["attest", "-u", str(tmp_path / "ak.pem"), "-m", str(tmp_path / "quote.msg"),
            "-s", str(tmp_path / "quote.sig"), "-f", str(tmp_path / "quote.pcrs"),
            "-q", NONCE.hex(), "--list", str(tmp_path / "list"),
            "--eventlog", str(tmp_path / "bios")]
    assert main([*base, "--measured-boot", str(tmp_path / "refstate.json")]) == 0
    assert "firmware event log: replays to PCR 0,1,2,3,4,5,6,7,8,9" in capsys.readouterr().out
    (tmp_path / "refstate.json").write_text(json.dumps({"db": []}))
    assert main([*base, "--measured-boot", str(tmp_path / "refstate.json"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["firmware_log"]["measured_boot"]["reasons"][0]["code"] == "db_differs"
    (tmp_path / "bios").write_bytes(m.firmware_log.encode()[:100])
    assert main(base) == 2
