"""The whole story on built-in defaults: boot, measure, appraise, kexec, attest, catch tampering.

:func:`run_demo` returns a :class:`DemoReport` (steps with their outcome, and the
artifacts as bytes); the CLI prints it and writes the artifacts. Everything is
deterministic: keys come from fixed seeds, the clock is a :class:`~imasim.env.FixedClock`.
The machine's part of the story is a scenario file shipped with imasim (``demo.toml``,
:func:`demo_scenario`), run like any other scenario.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .algorithms import HashAlgorithm
from .attest import ReferenceValues, attest
from .ima.codec import MeasurementList
from .machine import Machine
from .scenario import ActionResult, parse_scenario, run_scenario
from .tpm.verify import write_pcr_file

__all__ = ["DemoReport", "DemoStep", "demo_scenario", "run_demo"]

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


def demo_scenario() -> str:
    """The machine half of the story: the scenario file shipped with imasim."""
    return resources.files("imasim").joinpath("demo.toml").read_text(encoding="utf-8")


def _outcome(results: Sequence[ActionResult], m: Machine) -> str:
    """One step's outcome line, from the results of its actions."""
    ops = {r.op for r in results}
    access = [r for r in results if r.outcome in ("allow", "deny")]
    if "kexec_execute" in ops:
        record = m.kexec_log[0] if m.kexec_log else None
        entries = m.measurements
        return (f"{record.carried if record else '?'} entries carried, {len(entries)} now, "
                f"{sum(e.event_name == 'boot_aggregate' for e in entries)} boot_aggregates")
    if ops == {"boot"}:
        agg = m.measurements[0].file_digest if len(m.measurements) else None
        return f"{agg}" if agg else "?"
    if "load_policy" in ops:
        return f"{len(m.policy.rules)} rules, key measured as ima-buf"
    if len(access) > 1:
        return f"{sum(r.outcome == 'allow' for r in access)}/{len(access)} allowed"
    if access:
        r = access[0]
        module = r.op == "load_module"
        if r.outcome == "allow":
            return "loaded" if module else "allowed"
        return f"{'refused' if module else 'denied'}: {r.reason}"
    return ", ".join(f"{r.op}: {r.outcome} {r.reason}".strip() for r in results)


def run_demo() -> DemoReport:
    """Run the story (deterministic) and return its steps and artifacts: the machine half
    is :func:`demo_scenario` run by :func:`imasim.scenario.run_scenario`, the verifier
    half is :func:`imasim.attest.attest` on its quote and list."""
    rep = DemoReport()

    def step(title: str, outcome: str, ok: bool) -> None:
        rep.steps.append(DemoStep(title, outcome, ok))

    scenario = parse_scenario(demo_scenario())
    run = run_scenario(scenario)
    m = run.machine
    groups: dict[str, list[ActionResult]] = {}
    for r in run.results:
        if r.title is not None:
            groups.setdefault(r.title, []).append(r)
    for title, results in groups.items():
        step(title, _outcome(results, m), all(r.ok for r in results))
    files = scenario.data["files"]
    signed = {f["path"] for f in files if {"ima_sign", "modsig", "pe_sign"} & set(f)}
    attempts = sorted(f["path"] for f in files if f["path"] not in signed)
    carried = m.measurements

    # -- attestation ------------------------------------------------------------------
    tpm = m.tpm
    q = run.quotes[0]
    ak_pem = run.artifacts["ak.pem"]
    nonce = bytes.fromhex(run.artifacts["nonce.hex"].decode())
    pcrs = q.values_by_bank()
    all_pcrs = m.pcr_values(range(24))
    reference = ReferenceValues(
        {p: frozenset({HashAlgorithm.SHA256.hash(m.files[p].content).hex()})
         for p in sorted(signed)},
        excludes=("kexec-cmdline",), ignored_keyrings=frozenset({".ima"}))
    entries = list(carried)
    report = attest(quote_attest=q.attest, quote_signature=q.signature,
                    ak_public=ak_pem, nonce=nonce, pcr_values=pcrs, entries=entries,
                    reference=reference, eventlog=m.firmware_log)
    fw = report.firmware_log
    step("verifier: the firmware's TCG event log (binary_bios_measurements) replays to the "
         "quoted PCRs 0-9, which give boot_aggregate",
         fw.summary() if fw is not None else "no log",
         fw is not None and fw.ok and fw.verified is not None
         and fw.verified.verified_pcrs >= frozenset(range(10)))
    flagged = sorted({f.path for f in report.failures})
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
                     ak_public=ak_pem, nonce=nonce, pcr_values=pcrs, entries=tampered,
                     reference=reference)
    named = sorted({f.index for f in bad_rep.failures if f.index == i})
    replay_broken = bad_rep.replay is not None and not bad_rep.replay.matched
    step("a tampered list is caught", f"entry {i} ({entries[i].event_name} renamed) flagged, "
         f"replay {'fails' if replay_broken else 'matches'}", replay_broken and named == [i])
    stale = attest(quote_attest=q.attest, quote_signature=q.signature,
                   ak_public=ak_pem, nonce=hashlib.sha256(b"nonce 2").digest()[:20],
                   pcr_values=pcrs, entries=entries, reference=reference)
    step("a stale quote (replayed with an old nonce) is caught",
         stale.quote_error or "accepted", not stale.quote_valid)
    m.exec("/usr/bin/late")
    grown = attest(quote_attest=q.attest, quote_signature=q.signature,
                   ak_public=ak_pem, nonce=nonce, pcr_values=pcrs,
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
        "ak.pem": ak_pem, "nonce.hex": nonce.hex().encode() + b"\n",
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
