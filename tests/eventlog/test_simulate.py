"""The simulated machine's firmware log: replays to its PCRs, read by tpm2_eventlog, verified
end to end through a quote, judged; tampering is named; boot-application digests are the
images' Authenticode digests (imasim pe digest, pesign -h)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from eventlog.el_support import norm, read_tpm2_yaml
from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.errors import PcrMismatchError
from imasim.eventlog import EventLog, EventType
from imasim.eventlog.events import describe_log
from imasim.eventlog.judge import ReferenceState, judge, load_options_digest
from imasim.eventlog.replay import replay, verify_eventlog
from imasim.eventlog.simulate import BootImage, SimulatedFirmware, UefiBoot, seabios_log
from imasim.ima.replay import check_boot_aggregate
from imasim.machine import Machine
from imasim.sig.authenticode import authenticode_digest
from imasim.tpm import PcrSelection
from imasim.tpm.pcrs import PcrBanks
from imasim.tpm.verify import verify_quote
from pe.make_pe import make_pe
from tools import need

VECTORS = Path(__file__).parent.parent / "vectors"
CA = x509.load_pem_x509_certificate(
    (VECTORS / "debian" / "debian-secure-boot-ca.pem").read_bytes()).public_bytes(Encoding.DER)
SHIM = make_pe(seed="shim")
GRUB = make_pe(seed="grub")
KERNEL = make_pe(seed="vmlinuz")
CMDLINE = "root=/dev/vda1 ima_policy=tcb"
INITRD = b"imasim initrd " * 100
BANKS = (H.SHA1, H.SHA256, H.SHA384)
NONCE = b"eventlog-nonce-01234"


def uefi(secure_boot: bool = True) -> UefiBoot:
    return UefiBoot(secure_boot=secure_boot, pk=(CA,), kek=(CA,), db=(CA,),
                    dbx=(bytes(range(32)),),
                    images=(BootImage("/EFI/debian/shimx64.efi", SHIM),
                            BootImage("/EFI/debian/grubx64.efi", GRUB),
                            BootImage("/boot/vmlinuz", KERNEL)),
                    authority=CA, cmdline=CMDLINE, initrd=INITRD)


def machine(firmware: str = "ovmf", secure_boot: bool = True) -> Machine:
    fw = SimulatedFirmware(firmware, uefi(secure_boot) if firmware == "ovmf" else None,
                           secure_boot)
    m = Machine.create(cmdline="ima_policy=tcb", banks=BANKS, firmware=fw,
                       secure_boot=secure_boot)
    m.boot()
    return m


def quoted(m: Machine) -> PcrBanks:
    ak = m.tpm.create_ak("rsa", seed=b"eventlog")
    sel = {b: range(11) for b in BANKS}
    q = m.tpm.quote(ak, PcrSelection(sel), NONCE)
    values = {b: {i: m.tpm.read(b, i) for i in range(11)} for b in BANKS}
    return verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=values).pcrs


def reference() -> ReferenceState:
    return ReferenceState(
        secure_boot=True, db=frozenset({("8be4df61-93ca-11d2-aa0d-00e098032b8c", CA)}),
        dbx_required=frozenset({("8be4df61-93ca-11d2-aa0d-00e098032b8c", bytes(range(32)))}),
        boot_digests=frozenset(authenticode_digest(i) for i in (SHIM, GRUB, KERNEL)),
        initrd_digests=frozenset({H.SHA256.hash(INITRD)}), cmdline_exact=CMDLINE)


@pytest.mark.parametrize("firmware", ["legacy", "seabios", "ovmf"])
def test_log_replays_to_the_machine_pcrs(firmware: str) -> None:
    m = machine(firmware)
    log = m.firmware_log
    assert log is not None and EventLog.parse(log.encode()) == log
    r = replay(log)
    for b in BANKS:
        for i in range(10):
            assert r.value(b, i) == m.tpm.read(b, i), (firmware, b, i)
    v = verify_eventlog(log, quoted(m))
    assert v.authenticated and v.verified_pcrs >= frozenset(range(10))
    assert check_boot_aggregate(m.measurements[0], v.pcrs)


def test_legacy_firmware_keeps_the_default_firmware_pcr_values() -> None:
    default = Machine.create(banks=BANKS)
    logged = Machine.create(banks=BANKS, firmware=SimulatedFirmware())
    assert default.firmware_log is None and logged.firmware_log is not None
    assert default.pcr_values(range(24)) == logged.pcr_values(range(24))
    want = H.SHA256.hash(bytes(32) + H.SHA256.hash(b"imasim firmware measurement 3"))
    assert logged.tpm.read(H.SHA256, 3) == want


@pytest.mark.interop
@pytest.mark.parametrize("firmware", ["seabios", "ovmf"])
def test_tpm2_eventlog_reads_the_simulated_log(firmware: str, tmp_path: Path) -> None:
    tool = need("tpm2_eventlog")
    m = machine(firmware)
    assert m.firmware_log is not None
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(m.firmware_log.encode())
    out = subprocess.run([tool, "--eventlog-version=2", str(path)], capture_output=True,
                         text=True, check=True).stdout
    doc = read_tpm2_yaml(out)
    assert doc == norm(describe_log(m.firmware_log))
    for bank, values in doc["pcrs"].items():
        alg = H.from_name(bank)
        for idx, val in values.items():
            assert val == "0x" + m.tpm.read(alg, int(idx)).hex()


def test_judgement_of_a_good_secure_boot() -> None:
    m = machine()
    assert m.firmware_log is not None
    v = verify_eventlog(m.firmware_log, quoted(m))
    verdict = judge(v, reference())
    assert verdict.ok, verdict.reasons
    s = verdict.state
    assert s.secure_boot is True and len(s.applications) == 3
    assert s.applications[0].path == "\\EFI\\debian\\shimx64.efi"
    assert s.load_options is not None
    assert s.load_options[H.SHA256] == load_options_digest(CMDLINE)


def test_judgement_names_what_differs() -> None:
    m = machine(secure_boot=False)
    assert m.firmware_log is not None
    v = verify_eventlog(m.firmware_log, quoted(m))
    ref = ReferenceState(secure_boot=True, boot_digests=frozenset({authenticode_digest(SHIM)}),
                         initrd_digests=frozenset({bytes(32)}), cmdline_exact="quiet")
    codes = [r.code for r in judge(v, ref).reasons]
    assert codes == ["secure_boot_off", "boot_application_unknown",
                     "boot_application_unknown", "initrd_unknown", "cmdline_differs"]


def test_unquoted_values_are_never_trusted() -> None:
    m = machine()
    assert m.firmware_log is not None
    pcrs = PcrBanks.unauthenticated({b: {i: m.tpm.read(b, i) for i in range(10)} for b in BANKS})
    verdict = judge(verify_eventlog(m.firmware_log, pcrs), reference())
    assert [r.code for r in verdict.reasons] == ["unauthenticated"]


def _rebuild(log: EventLog, events: list) -> EventLog:  # type: ignore[type-arg]
    return EventLog(log.format, log.spec_id, tuple(events))


def test_tampering_is_detected_and_named() -> None:
    m = machine()
    log = m.firmware_log
    assert log is not None
    pcrs = quoted(m)
    evs = list(log.events)
    sb = next(e for e in evs if e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG)
    # 1. SecureBoot's data changed, digests left: replay matches, the judgement names it
    forged = _rebuild(log, [replace(e, data=e.data[:-1] + b"\x00") if e is sb else e
                            for e in evs])
    verdict = judge(verify_eventlog(forged, pcrs), reference())
    # the forged "off" is never read: the state does not know, and says why
    assert [r.code for r in verdict.reasons] == ["event_changed", "secure_boot_unknown"]
    assert verdict.state.secure_boot is None
    # 2. the variable rewritten consistently (new digests): PCR 7 no longer matches the quote
    rebuilt = EventLog.build(BANKS, [(e.pcr, e.event_type,
                                      e.data[:-1] + b"\x00" if e is sb else e.data)
                                     for e in log.measurements if e is sb])
    rewritten = _rebuild(log, [replace(e, digests=rebuilt.events[1].digests,
                                       data=rebuilt.events[1].data) if e is sb else e
                               for e in evs])
    with pytest.raises(PcrMismatchError) as ei:
        verify_eventlog(rewritten, pcrs)
    assert {(d.bank, d.pcr) for d in ei.value.mismatches} == {(b, 7) for b in BANKS}
    # 3. an event dropped
    app = next(e for e in evs if e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION)
    with pytest.raises(PcrMismatchError) as ei:
        verify_eventlog(_rebuild(log, [e for e in evs if e is not app]), pcrs)
    assert {d.pcr for d in ei.value.mismatches} == {4}
    # 4. a digest changed
    bad = replace(app, digests=tuple(replace(d, value=bytes(len(d.value)))
                                     for d in app.digests))
    with pytest.raises(PcrMismatchError):
        verify_eventlog(_rebuild(log, [bad if e is app else e for e in evs]), pcrs)


def test_kexec_keeps_the_firmware_log() -> None:
    m = machine()
    before = m.firmware_log
    m.add_file("/boot/vmlinuz-2", b"kernel two")
    m.kexec_load("/boot/vmlinuz-2", cmdline="ima_policy=tcb")
    m.kexec_execute()
    assert m.firmware_log == before
    assert before is not None
    # kexec leaves PCR 0-9 alone: every boot_aggregate (old and new kernel's) checks out
    pcrs = verify_eventlog(before, quoted(m)).pcrs
    aggregates = [e for e in m.measurements if e.event_name == "boot_aggregate"]
    assert len(aggregates) == 2
    assert all(check_boot_aggregate(e, pcrs) for e in aggregates)
    m.power_cycle()
    assert m.firmware_log == before  # the same firmware measures the same things


def _apps_and_files(tmp_path: Path) -> list[tuple[bytes, Path]]:
    """(the sha256 digest each boot-application event carries, the image it measured)."""
    m = machine()
    assert m.firmware_log is not None
    apps = [e for e in m.firmware_log.measurements
            if e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION]
    out = []
    for n, (ev, image) in enumerate(zip(apps, (SHIM, GRUB, KERNEL), strict=True)):
        f = tmp_path / f"image{n}.efi"
        f.write_bytes(image)
        d = ev.digest(H.SHA256)
        assert d is not None
        out.append((d, f))
    return out


def test_boot_application_digests_equal_imasim_pe_digest(tmp_path: Path, capsys) -> None:
    for digest, f in _apps_and_files(tmp_path):
        assert main(["pe", "digest", str(f)]) == 0
        assert digest.hex() in capsys.readouterr().out


@pytest.mark.interop
def test_boot_application_digests_equal_pesign(tmp_path: Path) -> None:
    pesign = need("pesign")
    for digest, f in _apps_and_files(tmp_path):
        out = subprocess.run([pesign, "-h", "-i", str(f)], capture_output=True, text=True,
                             check=True).stdout
        assert out.split()[-1] == digest.hex()


def test_keylime_reference_state() -> None:
    owner = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
    doc = {"db": [{"SignatureOwner": owner, "SignatureData": "0x" + CA.hex()}],
           "dbx": [{"SignatureOwner": owner, "SignatureData": "0x" + bytes(range(32)).hex()}],
           "kernels": [{"shim_authcode_sha256": "0x" + authenticode_digest(SHIM).hex(),
                        "grub_authcode_sha256": "0x" + authenticode_digest(GRUB).hex(),
                        "kernel_authcode_sha256": "0x" + authenticode_digest(KERNEL).hex(),
                        "initrd_plain_sha256": "0x" + H.SHA256.hash(INITRD).hex()}]}
    ref = ReferenceState.from_keylime(json.loads(json.dumps(doc)))
    m = machine()
    assert m.firmware_log is not None
    assert judge(verify_eventlog(m.firmware_log, quoted(m)), ref).ok
    doc["kernels"][0]["kernel_authcode_sha256"] = "0x" + bytes(32).hex()
    bad = judge(verify_eventlog(m.firmware_log, quoted(m)), ReferenceState.from_keylime(doc))
    assert [r.code for r in bad.reasons] == ["boot_application_unknown"]


def test_seabios_log_has_no_uefi_state() -> None:
    log = seabios_log(BANKS)
    v = verify_eventlog(log, PcrBanks.unauthenticated(replay(log).values))
    verdict = judge(v, ReferenceState(secure_boot=True, require_authenticated=False))
    assert [r.code for r in verdict.reasons] == ["secure_boot_unknown"]


@pytest.mark.interop
def test_debian_shim_grub_kernel_boot(tmp_path: Path) -> None:
    """An OVMF-like Secure Boot of Debian's signed shim, GRUB and kernel: the log's PCR 4
    digests are the images' Authenticode digests as pesign -h computes them, and a
    reference of exactly those digests accepts the verified log."""
    from pe.pe_support import debian_image

    pesign = need("pesign")
    images = [("/EFI/debian/shimx64.efi", "shimx64.efi.signed"),
              ("/EFI/debian/grubx64.efi", "grubx64.efi.signed"), ("/boot/vmlinuz", "vmlinuz")]
    boot = replace(uefi(), images=tuple(BootImage(p, debian_image(n)) for p, n in images))
    m = Machine.create(cmdline="ima_policy=tcb", banks=BANKS, secure_boot=True,
                       firmware=SimulatedFirmware("ovmf", boot, True))
    m.boot()
    assert m.firmware_log is not None
    apps = [e for e in m.firmware_log.measurements
            if e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION]
    pesigned = []
    for _path, name in images:
        f = tmp_path / name
        f.write_bytes(debian_image(name))
        out = subprocess.run([pesign, "-h", "-i", str(f)], capture_output=True, text=True,
                             check=True).stdout
        pesigned.append(bytes.fromhex(out.split()[-1]))
    assert [e.digest(H.SHA256) for e in apps] == pesigned
    ref = replace(reference(), boot_digests=frozenset(pesigned))
    assert judge(verify_eventlog(m.firmware_log, quoted(m)), ref).ok
