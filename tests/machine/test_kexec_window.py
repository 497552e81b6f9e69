"""The kexec window as a verifier sees it, and signature checks inside attest()."""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import AttestationReport, Verdict, attest
from imasim.machine import Machine
from imasim.sig import sign_module
from imasim.sig.xattr import sign_xattr
from imasim.tpm.marshal import PcrSelection
from pki import pki

BANKS = (H.SHA1, H.SHA256)
NONCE = b"verifier-nonce-0123"


def _machine(preset: str, cmdline: str = "ima_policy=tcb") -> Machine:
    m = Machine.create(preset=preset, cmdline=cmdline, banks=BANKS,
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    return m


def _attest(m: Machine, **kw: object) -> AttestationReport:
    ak = m.tpm.create_ak("ecc", seed=b"window-ak")
    q = m.tpm.quote(ak, PcrSelection({H.SHA256: list(range(11)), H.SHA1: [10]}), NONCE)
    return attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                  nonce=NONCE, pcr_values=q.values_by_bank(), entries=list(m.measurements),
                  **kw)  # type: ignore[arg-type]


def _kexec_with_late_measurement(m: Machine) -> None:
    m.add_file("/usr/bin/early", b"early")
    m.exec("/usr/bin/early")
    m.add_file("/boot/vmlinuz", b"kernel")
    m.add_file("/usr/bin/late", b"late")
    m.kexec_load("/boot/vmlinuz", cmdline="ima_policy=tcb")
    m.exec("/usr/bin/late")  # between load and execute
    m.kexec_execute()


def test_copy_at_load_names_the_lost_measurements_and_the_verifier_sees_the_mismatch() -> None:
    m = _machine("custom-6.1-ima-kexec")
    _kexec_with_late_measurement(m)
    (rec,) = m.kexec_log
    assert rec.copied_at == "load" and rec.carried == 2
    assert [e.event_name for e in m.lost_measurements] == ["/usr/bin/late"]
    report = _attest(m)
    assert report.quote_valid and not report.trusted
    assert report.replay is not None and not any(b.matched for b in report.replay.banks)
    assert len(report.notes) == 1 and "kexec" in report.notes[0]
    assert "missing from a list copied at load" in report.summary()
    # the lost entry is exactly what the list lacks: put it back and it replays
    entries = list(m.measurements)
    fixed = entries[:rec.carried] + list(rec.lost) + entries[rec.carried:]
    ak = m.tpm.create_ak("ecc", seed=b"window-ak")
    q = m.tpm.quote(ak, PcrSelection({H.SHA256: list(range(11)), H.SHA1: [10]}), NONCE)
    ok = attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                nonce=NONCE, pcr_values=q.values_by_bank(), entries=fixed)
    assert ok.trusted and not ok.notes


def test_copy_at_execute_loses_nothing() -> None:
    m = _machine("mainline-6.16-ima-kexec")
    _kexec_with_late_measurement(m)
    (rec,) = m.kexec_log
    assert rec.copied_at == "execute" and rec.lost == ()
    report = _attest(m)
    assert report.trusted and report.notes == ()


def test_without_ima_kexec_everything_before_is_lost() -> None:
    m = _machine("debian12-6.1")
    _kexec_with_late_measurement(m)
    (rec,) = m.kexec_log
    assert rec.copied_at == "not carried" and rec.carried == 0
    assert rec.lost[0].event_name == "boot_aggregate"
    assert not _attest(m).trusted


@pytest.mark.parametrize("n", [1, 2, 10])
def test_chains_record_every_kexec(n: int) -> None:
    m = _machine("custom-6.1-ima-kexec")
    for i in range(n):
        m.add_file(f"/boot/k{i}", f"kernel {i}".encode())
        m.kexec_load(f"/boot/k{i}", cmdline="ima_policy=tcb")
        m.kexec_execute()
    assert [r.generation for r in m.kexec_log] == list(range(n))
    assert m.lost_measurements == ()
    assert _attest(m).trusted
    m.power_cycle()
    assert m.kexec_log == ()


def _signed_machine(template: str) -> Machine:
    m = _machine("generic-6.1-ima-kexec", f"ima_policy=tcb ima_template={template}")
    m.add_key(".ima", pki()["leaf"].as_key())
    return m


def _sign(content: bytes, who: str = "leaf") -> bytes:
    s = pki()[who]
    return sign_xattr(H.SHA256.hash(content), key=s.key,
                      keyid=s.as_key().key_id_v2)


def test_attest_checks_ima_sig_signatures() -> None:
    m = _signed_machine("ima-sig")
    m.add_file("/usr/bin/good", b"good", xattrs={"security.ima": _sign(b"good")})
    m.add_file("/usr/bin/forged", b"forged", xattrs={"security.ima": _sign(b"other")})
    m.add_file("/usr/bin/stranger", b"s", xattrs={"security.ima": _sign(b"s", "stranger")})
    m.add_file("/usr/bin/plain", b"plain")
    for p in ("good", "forged", "stranger", "plain"):
        m.exec(f"/usr/bin/{p}")  # measure only: no appraise rule
    report = _attest(m, signature_keyring=m.keyrings.ima)
    bad = {f.path: f for f in report.failures}
    assert set(bad) == {"/usr/bin/forged", "/usr/bin/stranger"}
    assert all(f.verdict is Verdict.BAD_SIGNATURE for f in bad.values())
    assert "KeyNotFound" in bad["/usr/bin/stranger"].detail
    strict = _attest(m, signature_keyring=m.keyrings.ima, require_signatures=True)
    assert {f.path: f.verdict for f in strict.failures}["/usr/bin/plain"] is Verdict.UNSIGNED


def test_attest_checks_ima_modsig_signatures() -> None:
    m = _signed_machine("ima-modsig")
    leaf, stranger = pki()["leaf"], pki()["stranger"]
    m.add_file("/lib/modules/good.ko", sign_module(b"good", key=leaf.key,
                                                   certificate=leaf.cert))
    m.add_file("/lib/modules/bad.ko", sign_module(b"bad", key=stranger.key,
                                                  certificate=stranger.cert))
    m.load_module("/lib/modules/good.ko")
    m.load_module("/lib/modules/bad.ko")
    entries = {e.event_name: e for e in m.measurements}
    assert entries["/lib/modules/good.ko"].fields["modsig"]
    report = _attest(m, signature_keyring=m.keyrings.ima)
    assert [(f.path, f.verdict) for f in report.failures] == [
        ("/lib/modules/bad.ko", Verdict.BAD_SIGNATURE)]
    assert report.replay is not None and report.replay.matched
