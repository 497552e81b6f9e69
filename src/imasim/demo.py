"""The whole story on built-in defaults: boot, measure, appraise, kexec, attest, catch tampering.

:func:`run_demo` returns a :class:`DemoReport` (steps with their outcome, and the
artifacts as bytes); the CLI prints it and writes the artifacts. Everything is
deterministic: keys come from fixed seeds, the clock is a :class:`~imasim.env.FixedClock`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .algorithms import HashAlgorithm
from .attest import ReferenceValues, attest
from .env import FixedClock, SeededEntropy
from .eventlog.simulate import SimulatedFirmware
from .ima.codec import MeasurementList
from .kconfig import PRESETS
from .keys.generate import NOT_BEFORE, derive_ec_key, make_certificate
from .keys.key import Key
from .machine import Machine
from .sig.authenticode import sign_pe
from .sig.modsig import sign_module
from .sig.pefile import build_pe
from .sig.xattr import sign_xattr
from .tpm.marshal import PcrSelection
from .tpm.verify import write_pcr_file

__all__ = ["DemoReport", "DemoStep", "run_demo"]

_T0 = NOT_BEFORE
BANKS = (HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA384)
POLICY = """\
# measure what runs, appraise executables and modules, record keys and kexec
dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=MMAP_CHECK mask=MAY_EXEC
measure func=MODULE_CHECK template=ima-modsig
measure func=KEXEC_KERNEL_CHECK
measure func=KEXEC_CMDLINE
measure func=KEY_CHECK keyrings=.ima
appraise func=BPRM_CHECK appraise_type=imasig
appraise func=MODULE_CHECK appraise_type=imasig|modsig
"""


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One step of the demo's story: what happened (``title``), what came of it
    (``outcome``) and whether that is what the story expects (``ok``)."""

    title: str
    outcome: str
    ok: bool  # the outcome the story expects


@dataclass
class DemoReport:
    """What :func:`run_demo` did: its steps in order and the files it produced
    (``artifacts``: name -> bytes, what ``imasim demo --out DIR`` writes)."""

    steps: list[DemoStep] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "steps": [{"title": s.title, "outcome": s.outcome, "ok": s.ok}
                                         for s in self.steps],
                "artifacts": sorted(self.artifacts)}


def _key(seed: str) -> ec.EllipticCurvePrivateKey:
    return derive_ec_key(seed)


def _cert(cn: str, key: ec.EllipticCurvePrivateKey,
          issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
          ca: bool) -> x509.Certificate:
    return make_certificate(cn, key, issuer=issuer, ca=ca)


def run_demo() -> DemoReport:
    """Run the story (deterministic) and return its steps and artifacts."""
    rep = DemoReport()

    def step(title: str, outcome: str, ok: bool) -> None:
        rep.steps.append(DemoStep(title, outcome, ok))

    # -- a vendor PKI ---------------------------------------------------------------
    ca_key = _key("vendor-ca")
    ca = _cert("Vendor Root CA", ca_key, None, True)
    ima_key = _key("ima-signer")
    ima_cert = _cert("Vendor IMA signer", ima_key, (ca, ca_key), False)
    mod_key = _key("module-signer")
    mod_cert = _cert("Vendor module signer", mod_key, (ca, ca_key), False)
    ca_k = Key.from_certificate(ca.public_bytes(serialization.Encoding.DER))
    ima_k = Key.from_certificate(ima_cert.public_bytes(serialization.Encoding.DER))
    mod_k = Key.from_certificate(mod_cert.public_bytes(serialization.Encoding.DER))

    clock = FixedClock(1_750_000_000.0)
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(module_sig_force=True, kexec_sig_force=True)
    m = Machine.create(config=cfg, banks=BANKS, builtin_keys=[ca_k],
                       cmdline="root=/dev/ram0 ima_policy=tcb ima_appraise=enforce",
                       clock=clock, entropy=SeededEntropy(b"demo"),
                       firmware=SimulatedFirmware())
    m.boot()
    agg = m.measurements[0].file_digest
    step("boot: firmware measured PCRs 0-7, IMA recorded boot_aggregate",
         f"{agg}" if agg else "?", agg is not None)

    # -- signed user space ------------------------------------------------------------
    def sign(content: bytes) -> bytes:
        return sign_xattr(HashAlgorithm.SHA256.hash(content), key=ima_key,
                          keyid=ima_k.key_id_v2)

    programs = {f"/usr/bin/{n}": f"\x7fELF {n} v1".encode()
                for n in ("sh", "ls", "cat", "systemd", "sshd")}
    for path, content in programs.items():
        m.add_file(path, content, xattrs={"security.ima": sign(content)})
    m.add_file("/usr/local/bin/dropper", b"\x7fELF unsigned dropper")
    m.load_policy(POLICY)
    m.add_key(".ima", ima_k)
    step("policy loaded; the IMA signing key enters .ima (signed by the builtin CA)",
         f"{len(m.policy.rules)} rules, key measured as ima-buf", True)
    m.keyrings.secondary.add(mod_k)
    m.add_key(".ima", mod_k)  # IMA verifies modsig against .ima (ima_modsig_verify)
    allowed = [p for p in programs if m.exec(p).allowed]
    step("signed programs run and are measured", f"{len(allowed)}/{len(programs)} allowed",
         len(allowed) == len(programs))
    r = m.exec("/usr/local/bin/dropper")
    step("an unsigned program is refused (ima_appraise=enforce)",
         f"denied: {r.reason}" if not r.allowed else "ALLOWED", not r.allowed)

    # -- modules ----------------------------------------------------------------------
    vendor_ko = sign_module(b"\x7fELF vendor module", key=mod_key, certificate=mod_cert)
    m.add_file("/lib/modules/vendor.ko", vendor_ko)
    m.add_file("/lib/modules/rootkit.ko", b"\x7fELF rootkit module")
    good, bad = m.load_module("/lib/modules/vendor.ko"), m.load_module("/lib/modules/rootkit.ko")
    step("a module with a valid appended signature loads", "loaded" if good else good.reason,
         good.allowed)
    step("an unsigned module is refused", f"refused: {bad.reason}" if not bad else "LOADED",
         not bad.allowed)

    # -- kexec ------------------------------------------------------------------------
    kernel = sign_pe(build_pe(b"vendor kernel 6.1 image"), key=mod_key, certificate=mod_cert,
                     signing_time=_T0)
    m.add_file("/boot/vmlinuz-next", kernel)
    before = len(m.measurements)
    lk = m.kexec_load("/boot/vmlinuz-next",
                      cmdline="root=/dev/ram0 ima_policy=tcb ima_appraise=enforce")
    m.kexec_execute()
    m.load_policy(POLICY)
    m.add_key(".ima", ima_k)
    m.exec("/usr/bin/sh")
    carried = m.measurements
    step("kexec into a signed kernel; the list is carried, the TPM is not reset",
         f"{before} entries carried, {len(carried)} now, "
         f"{sum(e.event_name == 'boot_aggregate' for e in carried)} boot_aggregates",
         lk.allowed and len(carried) > before)

    # -- attestation ------------------------------------------------------------------
    tpm = m.tpm
    ak = tpm.create_ak("ecc", seed=b"demo-ak", handle="ak")
    nonce = hashlib.sha256(b"verifier nonce 1").digest()[:20]
    sel = PcrSelection({HashAlgorithm.SHA256: list(range(11)), HashAlgorithm.SHA1: [10],
                        HashAlgorithm.SHA384: [10]})
    q = tpm.quote(ak, sel, nonce)
    pcrs = q.values_by_bank()
    all_pcrs = m.pcr_values(range(24))
    reference = ReferenceValues(
        {**{p: frozenset({HashAlgorithm.SHA256.hash(c).hex()}) for p, c in programs.items()},
         "/lib/modules/vendor.ko": frozenset({HashAlgorithm.SHA256.hash(vendor_ko).hex()}),
         "/boot/vmlinuz-next": frozenset({HashAlgorithm.SHA256.hash(kernel).hex()})},
        excludes=("kexec-cmdline",), ignored_keyrings=frozenset({".ima"}))
    entries = list(carried)
    report = attest(quote_attest=q.attest, quote_signature=q.signature,
                    ak_public=ak.public_pem, nonce=nonce, pcr_values=pcrs, entries=entries,
                    reference=reference, eventlog=m.firmware_log)
    fw = report.firmware_log
    step("verifier: the firmware's TCG event log (binary_bios_measurements) replays to the "
         "quoted PCRs 0-9, which give boot_aggregate",
         fw.summary() if fw is not None else "no log",
         fw is not None and fw.ok and fw.verified is not None
         and fw.verified.verified_pcrs >= frozenset(range(10)))
    flagged = sorted({f.path for f in report.failures})
    attempts = ["/lib/modules/rootkit.ko", "/usr/local/bin/dropper"]
    evidence_ok = (report.quote_valid and report.boot_aggregate_ok and report.replay is not None
                   and report.replay.matched and flagged == attempts)
    step("verifier: the quote verifies, the list replays in every bank, boot_aggregate "
         "checks out, and the reference values flag exactly the refused attempts",
         f"quote valid, {len(entries)} entries replay, flagged: {', '.join(flagged)}",
         evidence_ok)

    tampered = list(entries)
    i = next(k for k, e in enumerate(entries) if e.event_name == "/usr/bin/ls")
    tampered[i] = entries[i]._replace(template_data=entries[i].template_data.replace(
        b"/usr/bin/ls", b"/usr/bin/lz"))
    bad_rep = attest(quote_attest=q.attest, quote_signature=q.signature,
                     ak_public=ak.public_pem, nonce=nonce, pcr_values=pcrs, entries=tampered,
                     reference=reference)
    named = sorted({f.index for f in bad_rep.failures if f.index == i})
    replay_broken = bad_rep.replay is not None and not bad_rep.replay.matched
    step("a tampered list is caught", f"entry {i} ({entries[i].event_name} renamed) flagged, "
         f"replay {'fails' if replay_broken else 'matches'}", replay_broken and named == [i])
    stale = attest(quote_attest=q.attest, quote_signature=q.signature,
                   ak_public=ak.public_pem, nonce=hashlib.sha256(b"nonce 2").digest()[:20],
                   pcr_values=pcrs, entries=entries, reference=reference)
    step("a stale quote (replayed with an old nonce) is caught",
         stale.quote_error or "accepted", not stale.quote_valid)
    m.add_file("/usr/bin/late", b"\x7fELF late", xattrs={"security.ima": sign(b"\x7fELF late")})
    m.exec("/usr/bin/late")
    grown = attest(quote_attest=q.attest, quote_signature=q.signature,
                   ak_public=ak.public_pem, nonce=nonce, pcr_values=pcrs,
                   entries=list(m.measurements), reference=reference)
    banks = grown.replay.banks if grown.replay else ()
    step("a list that grew after the quote matches only its quoted prefix",
         ", ".join(f"{b.bank.kernel_name} at {b.matched_at}/{len(m.measurements)}"
                   for b in banks), all(b.matched_at == len(entries) for b in banks))

    # -- artifacts --------------------------------------------------------------------
    lst = MeasurementList(entries)
    rep.artifacts = {
        "binary_runtime_measurements": lst.to_bytes(),
        "binary_bios_measurements": m.firmware_log.encode() if m.firmware_log else b"",
        "ascii_runtime_measurements": lst.to_ascii().encode(),
        "tpm-state.json": tpm.to_json().encode(),
        "quote.msg": q.attest, "quote.sig": q.signature,
        "quote.pcrs": write_pcr_file(q.selection, [v for _, _, v in q.pcr_values]),
        "ak.pem": ak.public_pem, "nonce.hex": nonce.hex().encode() + b"\n",
        "pcrs.json": json.dumps({a.kernel_name: {str(i): v.hex() for i, v in b.items()}
                                 for a, b in all_pcrs.items()}, indent=1).encode(),
        "audit.log": "".join(f"{a}\n" for a in m.audit).encode(),
        "runtime-policy.json": json.dumps({
            "meta": {"version": 1},
            "digests": {p: sorted(d) for p, d in reference.digests.items()},
            "excludes": list(reference.excludes),
            "ima": {"ignored_keyrings": sorted(reference.ignored_keyrings)}}, indent=1).encode(),
        "report.json": report.to_json().encode(),
    }
    return rep
