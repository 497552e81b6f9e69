"""``fleet verify``: every verdict equals the ground truth, on a real Dask LocalCluster
(scheduler + 2 worker processes) and in one process, and bundles made by hand from real
kernel captures verify as the attestation call judges them directly."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imasim.algorithms import HashAlgorithm
from imasim.attest import ReferenceValues, attest
from imasim.cli import main
from imasim.eventlog import EventLog
from imasim.fleet.bundle import EvidenceBundle
from imasim.fleet.io import write_bundle, write_fleet
from imasim.fleet.simulate import TAMPER_KINDS, FleetSpec, simulate_fleet
from imasim.fleet.verify import verify_bundle, verify_paths
from imasim.ima.codec import parse_measurement_list
from imasim.tpm.marshal import PcrSelection
from imasim.tpm.soft_tpm import STATE_FORMAT, SoftTpm
from imasim.tpm.verify import parse_pcr_file, write_pcr_file
from realdata import REALKERNEL

distributed = pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

SPEC = FleetSpec(machines=60, tamper=21, seed=4, entries=80)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fleet(SPEC, tmp_path_factory.mktemp("fleet"))


def _check(truth: dict[str, Any], got: dict[str, Any]) -> bool:
    return got["verdict"] == truth["verdict"] and (
        not truth["checks"] or any(c in got["checks"] for c in truth["checks"]))


def test_fleet_verify_on_a_local_cluster_equals_ground_truth(
        cluster: Any, fleet_dir: Path, tmp_path: Path) -> None:
    assert len(cluster.workers) == 2
    assert all(w.process is not None for w in cluster.workers.values())  # processes
    out = tmp_path / "verdicts"
    rc = main(["fleet", "verify", str(fleet_dir), "--policy", str(fleet_dir / "policy.json"),
               "--out", str(out), "--scheduler", cluster.scheduler_address,
               "--batch-size", "7", "--require-eventlog"])
    assert rc == 1  # some machines are compromised
    got = {v["machine"]: v for v in json.loads((tmp_path / "verdicts.json").read_text())}
    truth = json.loads((fleet_dir / "ground-truth.json").read_text())
    assert sorted(got) == sorted(t["machine"] for t in truth)
    wrong = [(t, got[t["machine"]]) for t in truth if not _check(t, got[t["machine"]])]
    assert wrong == []
    # the Parquet table holds the same verdicts
    table = pq.read_table(tmp_path / "verdicts.parquet").to_pylist()
    assert {r["machine"]: r for r in table} == got
    assert set(table[0]) == {"machine", "verdict", "checks", "entries", "verified_entries",
                             "failing_entries", "reason"}
    clean = [got[t["machine"]] for t in truth if t["tamper"] is None]
    assert all(v["verified_entries"] == v["entries"] == SPEC.entries for v in clean)


@pytest.mark.parametrize("kind", list(TAMPER_KINDS))
def test_each_compromise_is_caught_in_one_process(kind: str) -> None:
    fleet = simulate_fleet(FleetSpec(machines=9, tamper=9, seed=9, entries=50))
    ref = ReferenceValues.from_keylime_json(fleet.policy)
    for b, c, t in zip(fleet.bundles, fleet.challenges, fleet.truth, strict=True):
        if t.tamper == kind:
            v = verify_bundle(b, ref, nonce=c, require_eventlog=True)
            assert t.agrees(v.verdict, v.checks), v


def test_firmware_log_compromises() -> None:
    """A forged log fails its replay against the quoted PCRs whatever the verifier asks;
    a missing one only when the verifier requires a log (nothing else can tell it); the
    IMA side of both machines is clean, and boot_aggregate (from the quoted PCRs) holds."""
    fleet = simulate_fleet(FleetSpec(machines=12, tamper=9, seed=9, entries=50))
    ref = ReferenceValues.from_keylime_json(fleet.policy)
    by = {t.tamper: (b, c) for b, c, t in zip(fleet.bundles, fleet.challenges, fleet.truth,
                                              strict=True)}
    forged, nonce = by["forged-eventlog"]
    for required in (False, True):
        v = verify_bundle(forged, ref, nonce=nonce, require_eventlog=required)
        assert (v.trusted, v.checks) == (False, ("eventlog",))
        assert "sha256 PCR 4" in v.reason and v.verified_entries == v.entries == 50
    missing, nonce = by["missing-eventlog"]
    assert verify_bundle(missing, ref, nonce=nonce).trusted
    v = verify_bundle(missing, ref, nonce=nonce, require_eventlog=True)
    assert (v.trusted, v.checks) == (False, ("no-eventlog",))
    # the same bundles with the log of another machine of the fleet: refused too
    other = by["unknown-binary"][0].event_log
    swapped = replace(by[None][0], event_log=other)
    v = verify_bundle(swapped, ref, nonce=by[None][1])
    assert (v.trusted, v.checks) == (False, ("eventlog",))
    # a log that is not one: malformed evidence, untrusted
    v = verify_bundle(replace(by[None][0], event_log=b"\x00" * 40), ref, nonce=by[None][1])
    assert (v.trusted, v.checks) == (False, ("malformed",))


def test_replayed_quote_passes_only_when_the_bundle_nonce_is_trusted() -> None:
    """With no record of the challenges (the bundle's own nonce.bin) a resent old bundle
    verifies: why fleet verify wants --challenges unless told --bundle-nonces."""
    fleet = simulate_fleet(FleetSpec(machines=6, tamper=6, seed=9, entries=50))
    ref = ReferenceValues.from_keylime_json(fleet.policy)
    (b,) = [b for b, t in zip(fleet.bundles, fleet.truth, strict=True)
            if t.tamper == "replayed-quote"]
    assert verify_bundle(b, ref).trusted
    assert not verify_bundle(b, ref, nonce=fleet.challenges[fleet.bundles.index(b)]).trusted


def test_cli_local_cluster_and_the_challenges_rule(fleet_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.parquet"
    base = ["fleet", "verify", str(fleet_dir), "--policy", str(fleet_dir / "policy.json"),
            "--out", str(out)]
    assert main([*base, "--workers", "1", "--json", "--require-eventlog"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["machines"], summary["untrusted"]) == (60, 21)
    assert (tmp_path / "v.json").is_file()
    # no record of the challenges: refused unless the bundle nonces are trusted explicitly
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "machines").symlink_to(fleet_dir / "machines")
    assert main([*base[:2], str(lone), *base[3:]]) == 2
    assert "--challenges" in capsys.readouterr().err


def test_unreadable_bundle_and_missing_challenge(fleet_dir: Path, tmp_path: Path) -> None:
    ref = ReferenceValues.from_keylime_json((fleet_dir / "policy.json").read_bytes())
    bad = tmp_path / "m999999"
    bad.mkdir()
    (bad / "bundle.json").write_text("{}")
    good = fleet_dir / "machines" / "m000000"
    v = verify_paths([bad, good], ref, {})
    assert [(x.machine, x.checks) for x in v] == [("m999999", ("malformed",)),
                                                  ("m000000", ("no-challenge",))]


# -- bundles by hand from real captures --------------------------------------------------
def _capture_tpm(pcrs_json: Path) -> SoftTpm:
    """imasim's TPM holding the PCR values the real machine's TPM held."""
    doc = json.loads(pcrs_json.read_text())
    banks = [HashAlgorithm.from_name(a) for a in doc]
    state = {"format": STATE_FORMAT, "banks": [a.kernel_name for a in banks],
             "pcrs": {a.kernel_name: [doc[a.kernel_name][str(i)].lower() for i in range(24)]
                      for a in banks},
             "reset_count": 0, "restart_count": 0, "clock_ms": 0, "startup_locality": 0,
             "saved_state": None, "keys": {}}
    return SoftTpm.from_json(json.dumps(state))


CAPTURES = ["boot-tcb-ima-ng-sha256/stage1", "custom-ima-kexec-carry/stage2",
            "kexec-carry/stage1"]


def _capture_bundle(name: str, event_log: bytes | None = None
                    ) -> tuple[EvidenceBundle, bytes]:
    stage = REALKERNEL / name
    tpm = _capture_tpm(stage / "pcrs.json")
    ak = tpm.create_ak("ecc", seed=name.encode())
    nonce = HashAlgorithm.SHA1.hash(name.encode())
    q = tpm.quote(ak, PcrSelection({HashAlgorithm.SHA256: list(range(11))}), nonce)
    machine = name.replace("/", "-")
    return EvidenceBundle(
        machine=machine, quote_message=q.attest, quote_signature=q.signature,
        pcr_file=write_pcr_file(q.selection, [v for _, _, v in q.pcr_values]),
        ak_public=ak.public_pem, nonce=nonce,
        measurement_list=(stage / "ima" / "binary_runtime_measurements").read_bytes(),
        event_log=event_log), nonce


def _policy_of(lists: list[bytes]) -> bytes:
    """A runtime policy allowing every file the lists measured (as keylime-policy create
    runtime makes one from a list)."""
    digests: dict[str, set[str]] = {}
    for data in lists:
        for e in parse_measurement_list(data):
            d = e.file_digest
            if d is not None and not e.is_violation and e.event_name != "boot_aggregate":
                digests.setdefault(e.event_name, set()).add(d.digest.hex())
    return json.dumps({"meta": {"version": 1},
                       "digests": {p: sorted(d) for p, d in digests.items()}}).encode()


def _fleet_verify(cluster: Any, d: Path, bundles: list[tuple[EvidenceBundle, bytes]],
                  *options: str) -> tuple[int, dict[str, Any], ReferenceValues]:
    """``fleet verify`` on the cluster of a folder of these bundles (the policy allowing
    their lists): the exit code, the verdicts by machine and the policy."""
    policy = _policy_of([b.measurement_list for b, _ in bundles])
    (d / "policy.json").write_bytes(policy)
    (d / "challenges.json").write_text(json.dumps({b.machine: n.hex() for b, n in bundles}))
    for b, _ in bundles:
        write_bundle(d / "machines", b)
    rc = main(["fleet", "verify", str(d), "--policy", str(d / "policy.json"),
               "--out", str(d / "v"), "--scheduler", cluster.scheduler_address, *options])
    got = {v["machine"]: v for v in json.loads((d / "v.json").read_text())}
    return rc, got, ReferenceValues.from_keylime_json(policy)


def _direct(b: EvidenceBundle, nonce: bytes, ref: ReferenceValues) -> Any:
    """The attestation called directly on a bundle's files."""
    _, values = parse_pcr_file(b.pcr_file)
    return attest(quote_attest=b.quote_message, quote_signature=b.quote_signature,
                  ak_public=b.ak_public, nonce=nonce, pcr_values=values,
                  entries=parse_measurement_list(b.measurement_list), reference=ref,
                  eventlog=None if b.event_log is None else EventLog.parse(b.event_log))


def test_real_capture_bundles_verify_as_attest_judges_them(cluster: Any, tmp_path: Path
                                                           ) -> None:
    bundles = [_capture_bundle(n) for n in CAPTURES]
    rc, got, ref = _fleet_verify(cluster, tmp_path, bundles)
    for b, nonce in bundles:
        direct = _direct(b, nonce, ref)
        v = got[b.machine]
        assert v["verdict"] == ("trusted" if direct.trusted else "untrusted")
        assert direct.quote_valid and direct.boot_aggregate_ok
        # every capture holds a violation (a ToMToU/open-writers record): Keylime's
        # default, like imasim's, fails it; the quote, the replay and boot_aggregate hold
        assert v["checks"] == ["violation"], v
        assert v["verified_entries"] == v["entries"] == len(
            parse_measurement_list(b.measurement_list))
    assert rc == 1


OVMF = "k612-uefi-ovmf/stage1"
OVMF_SB = "k612-uefi-ovmf-secureboot/stage1"


def _bios(name: str) -> bytes:
    return (REALKERNEL / name / "tpm0" / "binary_bios_measurements").read_bytes()


def test_real_capture_with_its_firmware_log_verifies_as_attest_judges_it(
        cluster: Any, tmp_path: Path) -> None:
    """The UEFI (OVMF) captures: the bundle carries the machine's own
    binary_bios_measurements, which replays to the PCRs its TPM held; the same capture
    with the other capture's log (a forged log) fails on the firmware log alone."""
    own = _capture_bundle(OVMF, _bios(OVMF))
    sb = _capture_bundle(OVMF_SB, _bios(OVMF_SB))
    forged_b, forged_n = _capture_bundle(OVMF, _bios(OVMF_SB))
    forged = (replace(forged_b, machine="forged-log"), forged_n)
    bare = (replace(own[0], machine="no-log", event_log=None), own[1])
    bundles = [own, sb, forged, bare]
    rc, got, ref = _fleet_verify(cluster, tmp_path, bundles, "--require-eventlog")
    assert rc == 1
    for b, nonce in bundles:
        direct = _direct(b, nonce, ref)
        v = got[b.machine]
        assert direct.quote_valid and direct.boot_aggregate_ok
        fw_ok = direct.firmware_log is not None and direct.firmware_log.ok
        assert v["verdict"] == ("trusted" if direct.trusted else "untrusted")
        # every capture holds a violation (see above); beside it, only the firmware log
        extra = {"forged-log": ["eventlog"], "no-log": ["no-eventlog"]}.get(b.machine, [])
        assert sorted(v["checks"]) == sorted(["violation", *extra]), v
        if b.machine == "forged-log":
            assert direct.firmware_log is not None and not fw_ok
            assert "PcrMismatchError" in v["reason"], v
        elif b.machine == "no-log":
            assert direct.firmware_log is None
        else:
            assert fw_ok, direct.firmware_log


@pytest.mark.parametrize("n", [0, 1, 7, 60, 2000, 10_000])
def test_batches_cover_every_bundle_once_big_first(n: int) -> None:
    """Guided batches: every path once, in order, sizes non-increasing from at most 256
    down to 8 (the last may be smaller), few tasks; a fixed batch size is kept."""
    from imasim.fleet.verify import _batches

    paths = [Path(f"m{i:06d}") for i in range(n)]
    batches = _batches(paths, 2, None)
    assert [p for b in batches for p in b] == paths
    sizes = [len(b) for b in batches]
    assert sizes == sorted(sizes, reverse=True)
    assert all(8 <= s <= 256 for s in sizes[:-1]) and all(s >= 1 for s in sizes)
    assert len(batches) <= max(1, n // 8 + 1) and (n < 2000 or len(batches) <= n // 30)
    assert [len(b) for b in _batches(paths, 2, 7)] == [7] * (n // 7) + ([n % 7] if n % 7 else [])
