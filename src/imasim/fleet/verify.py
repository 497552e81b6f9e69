"""Every bundle of a fleet through the one attestation call, here or on Dask distributed.

:func:`verify_bundle` judges one bundle (:class:`MachineVerdict`); :func:`verify_paths`
judges a batch of bundle files, and is what each Dask task runs; :func:`verify_on_dask`
spreads the batches over a Dask cluster (a ``LocalCluster`` of worker processes, or a
running cluster given its scheduler address; the workers must see the same files).

The nonce a quote must carry is the verifier's own record of the challenge it sent
(``challenges``); the bundle's ``nonce.bin`` is used only when the caller says so
(``challenges=None``), since whoever wrote the bundle wrote that file too.

>>> from imasim.fleet.simulate import FleetSpec, simulate_fleet
>>> from imasim.attest import ReferenceValues
>>> fleet = simulate_fleet(FleetSpec(machines=2, tamper=1, seed=7, entries=20))
>>> ref = ReferenceValues.from_keylime_json(fleet.policy)
>>> [(v.machine, v.verdict, v.checks) for v in
...  (verify_bundle(b, ref, nonce=c) for b, c in zip(fleet.bundles, fleet.challenges))]
[('m000000', 'trusted', ()), ('m000001', 'untrusted', ('unknown-path',))]
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..attest import AttestationReport, ReferenceValues
from ..errors import ImasimError
from .bundle import EvidenceBundle

__all__ = [
    "MachineVerdict",
    "attest_bundle",
    "local_cluster",
    "verdicts_table",
    "verify_bundle",
    "verify_on_dask",
    "verify_paths",
]


@dataclass(frozen=True, slots=True)
class MachineVerdict:
    """One machine's verdict: the checks it failed and how much of its list verified."""

    machine: str
    trusted: bool
    checks: tuple[str, ...]
    """Failing checks: ``quote``, ``replay``, ``boot-aggregate``, ``eventlog`` (the
    firmware event log does not replay to the quoted PCRs), ``no-eventlog`` (none sent,
    one required), ``malformed``, ``no-challenge``, or an entry verdict
    (``unknown-path``, ``digest-mismatch``, ...)."""
    entries: int
    """Entries in the list."""
    verified_entries: int
    """Entries the quote covers (the replayed prefix); 0 when nothing replayed."""
    failing_entries: int
    """Entries with a failing verdict."""
    reason: str = ""

    @property
    def verdict(self) -> str:
        """``trusted`` or ``untrusted``."""
        return "trusted" if self.trusted else "untrusted"

    def to_dict(self) -> dict[str, Any]:
        """The row of the JSON verdict table."""
        return {"machine": self.machine, "verdict": self.verdict, "checks": list(self.checks),
                "entries": self.entries, "verified_entries": self.verified_entries,
                "failing_entries": self.failing_entries, "reason": self.reason}


def attest_bundle(bundle: EvidenceBundle, reference: ReferenceValues | None, *,
                  nonce: bytes) -> tuple[AttestationReport, int]:
    """The one call into imasim's attestation for a bundle: the report and the list's
    entry count. (Every fleet verdict comes from here.) The bundle's firmware event log,
    when it has one, goes in too: it must replay to the quoted PCRs.

    The list is checked in one streaming pass (:func:`~imasim.attest.attest_file`, the
    report :func:`~imasim.attest.attest` gives for its entries), so a worker that keeps
    the policy it was sent checks the records it allows through the policy's record index
    once its machines have paid for it."""
    import io

    from ..attest import attest_file
    from ..ima.codec import parse_measurement_list
    from ..tpm.verify import parse_pcr_file

    _, values = parse_pcr_file(bundle.pcr_file)
    eventlog = None
    if bundle.event_log is not None:
        from ..eventlog.codec import EventLog

        eventlog = EventLog.parse(bundle.event_log)
    report = attest_file(io.BytesIO(bundle.measurement_list),
                         quote_attest=bundle.quote_message,
                         quote_signature=bundle.quote_signature, ak_public=bundle.ak_public,
                         nonce=nonce, pcr_values=values, reference=reference,
                         digest_alg=bundle.list_digest_alg, eventlog=eventlog)
    if report.replay is not None:
        return report, report.entries
    # the quote failed before the list was read: a malformed list is still reported
    # as one, and the count is the list's
    return report, len(parse_measurement_list(bundle.measurement_list,
                                              digest_alg=bundle.list_digest_alg))


def _verdict(machine: str, report: AttestationReport, entries: int) -> MachineVerdict:
    checks: list[str] = []
    reasons: list[str] = []
    if not report.quote_valid:
        # nothing vouches for any PCR value: the list was not replayed against anything
        checks.append("quote")
        reasons.append(str(report.quote_error))
    else:
        r = report.replay
        if r is None or not r.matched:
            checks.append("replay")
            reasons.append("the list does not replay to the quoted PCRs" if r is not None
                           else "the quote covers no PCR the list extends")
        if not report.boot_aggregate_ok:
            checks.append("boot-aggregate")
        fw = report.firmware_log
        if fw is not None and not fw.ok:
            checks.append("eventlog")
            reasons.append(f"firmware event log: {fw.error}")
    for f in report.failures:
        name = "boot-aggregate" if f.verdict.value == "boot-aggregate-mismatch" \
            else f.verdict.value
        if name not in checks:
            checks.append(name)
            reasons.append(f"entry {f.index} {f.path}: {f.verdict.value}")
    reasons += list(report.notes)
    return MachineVerdict(machine, report.trusted, tuple(checks), entries,
                          report.verified_entries, len(report.failures), "; ".join(reasons))


def verify_bundle(bundle: EvidenceBundle, reference: ReferenceValues | None, *,
                  nonce: bytes | None = None, require_eventlog: bool = False
                  ) -> MachineVerdict:
    """Judge one bundle; ``nonce`` is the verifier's challenge (``None``: trust the
    bundle's ``nonce.bin``). Malformed evidence is untrusted (check ``malformed``); with
    ``require_eventlog``, so is a bundle without a firmware event log (``no-eventlog``:
    nothing tells what booted)."""
    try:
        report, n = attest_bundle(bundle, reference,
                                  nonce=bundle.nonce if nonce is None else nonce)
    except ImasimError as exc:
        return MachineVerdict(bundle.machine, False, ("malformed",), 0, 0, 0,
                              f"{type(exc).__name__}: {exc}")
    v = _verdict(bundle.machine, report, n)
    if require_eventlog and bundle.event_log is None:
        reason = "no firmware event log (one is required)"
        v = replace(v, trusted=False, checks=(*v.checks, "no-eventlog"),
                    reason=f"{v.reason}; {reason}" if v.reason else reason)
    return v


def verify_paths(paths: Sequence[str | Path], reference: ReferenceValues | None,
                 challenges: Mapping[str, bytes] | None, *, require_eventlog: bool = False
                 ) -> list[MachineVerdict]:
    """Read and judge a batch of bundles (one Dask task). A bundle that cannot be read
    is ``malformed`` under its file name; one whose machine has no challenge,
    ``no-challenge``."""
    from .io import read_bundle

    out = []
    for p in paths:
        try:
            bundle = read_bundle(p)
        except (ImasimError, OSError) as exc:
            out.append(MachineVerdict(Path(p).name.removesuffix(".tar"), False, ("malformed",),
                                      0, 0, 0, f"{type(exc).__name__}: {exc}"))
            continue
        nonce = None
        if challenges is not None:
            nonce = challenges.get(bundle.machine)
            if nonce is None:
                out.append(MachineVerdict(bundle.machine, False, ("no-challenge",), 0, 0, 0,
                                          "the verifier has no challenge for this machine"))
                continue
        out.append(verify_bundle(bundle, reference, nonce=nonce,
                                 require_eventlog=require_eventlog))
    return out


_MIN_BATCH = 8
_MAX_BATCH = 256


def _batches(paths: Sequence[Path], workers: int, batch_size: int | None
             ) -> list[Sequence[Path]]:
    """Fixed ``batch_size`` batches, or (``None``) guided ones: each a quarter of what
    is left per worker, between 8 and 256 bundles. Big batches first keep the tasks few
    (the scheduler's and client's work is per task); the small ones last keep every
    worker busy to the end (with equal batches a worker idles while the other finishes
    its last one: up to a whole batch, ~5 s of 256 machines)."""
    if batch_size is not None:
        return [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    out, i, share = [], 0, max(1, workers) * 4
    while i < len(paths):
        size = max(_MIN_BATCH, min(_MAX_BATCH, math.ceil((len(paths) - i) / share)))
        out.append(paths[i:i + size])
        i += size
    return out


def local_cluster(workers: int = 2) -> Any:
    """The ``LocalCluster`` :func:`verify_on_dask` starts without a scheduler address:
    ``workers`` processes of one thread each (the attestation is pure Python: threads
    would share one GIL), no dashboard, and the workers' statistical profiler off (it
    samples the computing thread's stack every 10 ms, for a dashboard nobody reads).
    The caller closes it. Needs the ``fleet`` extra."""
    import dask

    dd: Any = importlib.import_module("dask.distributed")  # untyped: keep it Any
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)


def verify_on_dask(paths: Sequence[Path], reference: ReferenceValues | None,
                   challenges: Mapping[str, bytes] | None, *, workers: int = 2,
                   scheduler: str | None = None, batch_size: int | None = None,
                   on_progress: Callable[[int], None] | None = None,
                   require_eventlog: bool = False) -> list[MachineVerdict]:
    """:func:`verify_paths` over batches of ``paths`` on Dask distributed, verdicts sorted
    by machine. Without ``scheduler``, a ``LocalCluster`` of ``workers`` processes (one
    thread each) is started and stopped; with it, the cluster at that address is used
    (its workers must read the same paths). ``on_progress(n)`` is called as batches of
    ``n`` machines finish. Needs the ``fleet`` extra.

    The policy and the challenges go to every worker once (scattered), not with every
    task; a task is a list of paths (its worker reads the bundles) and returns its
    verdicts. Batches are guided (:func:`_batches`) unless ``batch_size`` is given."""
    try:
        dd: Any = importlib.import_module("dask.distributed")  # untyped: keep it Any
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"{exc}: fleet verification runs on Dask: pip install 'imasim[fleet]'") from None
    cluster = None
    if scheduler is None:
        cluster = local_cluster(workers)
        client = dd.Client(cluster)
    else:
        client = dd.Client(scheduler)
    try:
        nworkers = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        # a list of one: scatter() would scatter a dict's values one by one
        ref, nonces = client.scatter([reference, None if challenges is None
                                      else dict(challenges)], broadcast=True)
        futures = [client.submit(verify_paths, [str(p) for p in batch], ref, nonces,
                                 require_eventlog=require_eventlog, pure=False)
                   for batch in _batches(list(paths), nworkers, batch_size)]
        out: list[MachineVerdict] = []
        for fut in dd.as_completed(futures):
            res = fut.result()
            out += res
            if on_progress is not None:
                on_progress(len(res))
        return sorted(out, key=lambda v: v.machine)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def verdicts_table(verdicts: Sequence[MachineVerdict]) -> Any:
    """The verdicts as a ``pyarrow.Table`` (machine, verdict, checks, entries,
    verified_entries, failing_entries, reason). Needs the ``fleet`` extra."""
    import pyarrow as pa

    return pa.table({
        "machine": pa.array([v.machine for v in verdicts], pa.string()),
        "verdict": pa.array([v.verdict for v in verdicts], pa.string()),
        "checks": pa.array([list(v.checks) for v in verdicts], pa.list_(pa.string())),
        "entries": pa.array([v.entries for v in verdicts], pa.int64()),
        "verified_entries": pa.array([v.verified_entries for v in verdicts], pa.int64()),
        "failing_entries": pa.array([v.failing_entries for v in verdicts], pa.int64()),
        "reason": pa.array([v.reason for v in verdicts], pa.string()),
    })


