"""Every real firmware event log: byte-exact round trip, replay to the captured PCRs in every
bank, the same events and fields as tpm2_eventlog, boot_aggregate from the log's PCRs."""

from __future__ import annotations

import subprocess

import pytest

from eventlog.el_support import LOG, log_stages, norm, read_tpm2_yaml, yaml_of
from imasim.algorithms import HashAlgorithm as H
from imasim.errors import PcrMismatchError
from imasim.eventlog import EventLog, EventType, LogFormat
from imasim.eventlog.events import describe_log
from imasim.eventlog.replay import DataBinding, data_binding, replay, verify_eventlog
from imasim.ima.replay import check_boot_aggregate
from imasim.tpm.pcrs import PcrBanks
from tools import need

STAGES = log_stages()
IDS = [s.id for s in STAGES]


def test_there_are_seabios_and_ovmf_logs() -> None:
    kinds = {s.scenario for s in STAGES}
    assert {"k612-uefi-ovmf", "k612-uefi-ovmf-secureboot", "k612-boot-tcb-ima-ng-sha256"} <= kinds
    assert len(STAGES) >= 10


@pytest.mark.parametrize("st", STAGES, ids=IDS)
def test_round_trip_and_replay(st) -> None:
    raw = (st.path / LOG).read_bytes()
    log = EventLog.parse(raw)
    assert log.encode() == raw
    assert log.format is LogFormat.CRYPTO_AGILE
    captured = st.pcrs()
    r = replay(log)
    assert set(log.banks) == set(captured)  # every TPM bank has digests in the log
    for bank in log.banks:
        for pcr in range(10):
            assert r.value(bank, pcr) == captured[bank][pcr], (bank, pcr)


@pytest.mark.parametrize("st", STAGES, ids=IDS)
def test_same_document_as_committed_tpm2_eventlog_yaml(st) -> None:
    """eventlog.yaml is tpm2_eventlog 5.4's reading (default version 1) made by the harness."""
    log = EventLog.parse((st.path / LOG).read_bytes())
    assert norm(describe_log(log, version=1)) == yaml_of(st.path / "eventlog.yaml")


@pytest.mark.interop
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("st", STAGES, ids=IDS)
def test_tpm2_eventlog_differential(st, version: int) -> None:
    tool = need("tpm2_eventlog")
    out = subprocess.run([tool, f"--eventlog-version={version}", str(st.path / LOG)],
                         capture_output=True, text=True, check=True).stdout
    log = EventLog.parse((st.path / LOG).read_bytes())
    assert norm(describe_log(log, version=version)) == read_tpm2_yaml(out)


@pytest.mark.parametrize("st", STAGES, ids=IDS)
def test_verified_log_gives_boot_aggregate(st) -> None:
    log = EventLog.parse((st.path / LOG).read_bytes())
    v = verify_eventlog(log, PcrBanks.unauthenticated(st.pcrs()))
    assert v.verified_pcrs >= frozenset(range(10))
    assert not v.authenticated
    first = st.entries()[0]
    kernel = (6, 12) if st.scenario.startswith("k612") else (6, 1)
    assert check_boot_aggregate(first, v.pcrs, kernel_version=kernel)


@pytest.mark.parametrize("st", STAGES, ids=IDS)
def test_data_bound_events_check_out(st) -> None:
    log = EventLog.parse((st.path / LOG).read_bytes())
    for ev in log.measurements:
        for bank in log.banks:
            assert data_binding(ev, bank) is not DataBinding.MISMATCH, (ev.number, ev.type_name)


def test_ovmf_log_contents() -> None:
    st = next(s for s in STAGES if s.scenario == "k612-uefi-ovmf")
    log = EventLog.parse((st.path / LOG).read_bytes())
    types = [e.event_type for e in log.measurements]
    assert EventType.EV_EFI_BOOT_SERVICES_APPLICATION in types
    tags = [e for e in log.measurements if e.event_type == EventType.EV_EVENT_TAG]
    assert [e.pcr for e in tags] == [9, 9]
    # the EFI stub's LoadOptions tag: sha256 of the UTF-16LE command line with its NUL
    # (/proc/cmdline shows the "initrd=initrd" OVMF appended)
    cmdline = (st.path / "cmdline.txt").read_text().strip()
    assert cmdline.endswith(" initrd=initrd")
    opts = cmdline.encode("utf-16-le") + b"\x00\x00"
    assert H.SHA256.hash(opts) in {e.digest(H.SHA256) for e in tags}


def test_tampered_real_log_is_named() -> None:
    st = next(s for s in STAGES if s.scenario == "k612-uefi-ovmf-secureboot")
    raw = (st.path / LOG).read_bytes()
    log = EventLog.parse(raw)
    sb = next(e for e in log.measurements if e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG
              and e.data.endswith(b"\x01"))
    forged = raw[:sb.offset + len(sb.encode()) - 1] + b"\x00" + raw[sb.offset + len(sb.encode()):]
    flog = EventLog.parse(forged)
    # the data changed but the digests did not: replay still matches, the binding does not
    v = verify_eventlog(flog, PcrBanks.unauthenticated(st.pcrs()))
    assert v.binding(flog.events[sb.number]) is DataBinding.MISMATCH
    # dropping the event changes PCR 7 in every bank
    dropped = raw[:sb.offset] + raw[sb.offset + len(sb.encode()):]
    with pytest.raises(PcrMismatchError) as ei:
        verify_eventlog(EventLog.parse(dropped), PcrBanks.unauthenticated(st.pcrs()))
    assert {d.pcr for d in ei.value.mismatches} == {7}
    assert {d.bank for d in ei.value.mismatches} == set(log.banks)


def _judged(scenario: str, ref):  # type: ignore[no-untyped-def]
    from imasim.eventlog.judge import judge

    st = next(s for s in STAGES if s.scenario == scenario)
    log = EventLog.parse((st.path / LOG).read_bytes())
    return judge(verify_eventlog(log, PcrBanks.unauthenticated(st.pcrs())), ref)


def test_judgement_of_the_real_secure_boot_capture() -> None:
    """OVMF with Secure Boot on and Debian's CA added to db (owner RK_DB_OWNER); OVMF's
    -kernel loader fell back to its legacy path, so no boot application was measured."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from imasim.eventlog.judge import ReferenceState

    ca = x509.load_pem_x509_certificate(
        (STAGES[0].path.parents[2] / "debian" / "debian-secure-boot-ca.pem").read_bytes())
    der = ca.public_bytes(Encoding.DER)
    v = _judged("k612-uefi-ovmf-secureboot", ReferenceState(require_authenticated=False))
    s = v.state
    assert v.ok and s.secure_boot is True and s.changed_events == ()
    assert ("2b2a9d3e-6f0c-4f3e-9c1a-7e5d4c3b2a10", der) in {
        (str(sd.owner), sd.data) for sl in s.db or () for sd in sl.signatures}
    assert all(sl.is_x509 for sl in s.kek or ()) and len(s.kek or ()) == 2
    assert [sl.is_sha256 for sl in s.dbx or ()] == [True]
    assert s.applications == () and s.initrd is not None and s.load_options is None
    strict = _judged("k612-uefi-ovmf-secureboot", ReferenceState(
        secure_boot=True, boot_digests=frozenset(), require_authenticated=False))
    assert [r.code for r in strict.reasons] == ["no_boot_application"]
    off = _judged("k612-uefi-ovmf", ReferenceState(secure_boot=True, require_authenticated=False))
    assert [r.code for r in off.reasons] == ["secure_boot_off"]
    assert off.state.pk == () and len(off.state.applications) == 1
    seabios = _judged("k612-boot-tcb-ima-ng-sha256", ReferenceState(secure_boot=True))
    assert [r.code for r in seabios.reasons] == ["secure_boot_unknown", "unauthenticated"]


KEYLIME_MB = STAGES[0].path.parents[2] / "keylime" / "measured-boot"


@pytest.mark.parametrize("own", ["k612-uefi-ovmf", "k612-uefi-ovmf-secureboot"])
def test_keylime_generated_refstate(own: str) -> None:
    """keylime-policy create measured-boot (Keylime 7.14.3) made a reference state from each
    OVMF capture's log: imasim accepts the log it was made from and names what differs in
    the other (Secure Boot, the keys Keylime allows, the PCR 0 firmware)."""
    import json

    from imasim.eventlog.judge import ReferenceState

    other = {"k612-uefi-ovmf": "k612-uefi-ovmf-secureboot",
             "k612-uefi-ovmf-secureboot": "k612-uefi-ovmf"}[own]
    from dataclasses import replace

    doc = json.loads((KEYLIME_MB / f"{own}-stage1.json").read_text())
    ref = replace(ReferenceState.from_keylime(doc), require_authenticated=False)  # pcrs.json
    assert ref.scrtm_and_bios is not None and ref.secure_boot is (own.endswith("secureboot"))
    mine = _judged(own, ref)
    assert [r.code for r in mine.reasons] == []
    theirs = [r.code for r in _judged(other, ref).reasons]
    if own.endswith("secureboot"):  # the non-SB log: off, other firmware, empty dbx
        assert theirs == ["firmware_differs", "secure_boot_off", "dbx_missing"]
    else:  # the SB log under a no-SB refstate (keys not checked): on, other firmware
        assert theirs == ["firmware_differs", "secure_boot_on"]
