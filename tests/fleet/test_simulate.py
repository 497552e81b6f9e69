"""The simulated fleet: deterministic, derived machines byte-identical to a Machine that
executes the same files, every kind of compromise present with its ground truth."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm
from imasim.attest import ReferenceValues
from imasim.cli import main
from imasim.errors import PcrMismatchError, UsageError
from imasim.eventlog import EventLog
from imasim.eventlog.replay import verify_eventlog
from imasim.fleet.io import bundle_paths, read_bundle, write_fleet
from imasim.fleet.simulate import (
    TAMPER_KINDS,
    FleetSpec,
    ScenarioFiles,
    machine_reference,
    simulate_fleet,
    simulate_machines,
)
from imasim.fleet.verify import verify_bundle
from imasim.ima.codec import parse_measurement_list
from imasim.ima.replay import check_boot_aggregate
from imasim.scenario import Scenario, parse_scenario, run_scenario
from imasim.tpm.verify import parse_pcr_file, verify_quote

SPEC = FleetSpec(machines=21, tamper=9, seed=11, entries=120)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, b = simulate_fleet(SPEC), simulate_fleet(SPEC)
    assert a == b
    c = simulate_fleet(FleetSpec(machines=21, tamper=9, seed=12, entries=120))
    assert all(x.measurement_list != y.measurement_list for x, y in zip(a.bundles, c.bundles,
                                                                        strict=True))
    # any subset of machines, in any order, gives the same machines
    some = list(simulate_machines(SPEC, [20, 3]))
    assert [s[0] for s in some] == [a.bundles[20], a.bundles[3]]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_derived_machine_equals_a_machine_running_the_same_files(index: int) -> None:
    """The fast derivation (records and PCR 10 computed once per pool file) gives the
    very bytes a simulated Machine gives after adding and executing the same files."""
    fleet = simulate_fleet(FleetSpec(machines=3, seed=11, entries=300))
    assert machine_reference(fleet.spec, index) == (fleet.bundles[index],
                                                    fleet.challenges[index])


def test_every_kind_of_compromise_with_its_ground_truth() -> None:
    fleet = simulate_fleet(SPEC)
    kinds = [t.tamper for t in fleet.truth if t.tamper]
    assert sorted(kinds) == sorted(TAMPER_KINDS)
    for b, c, t in zip(fleet.bundles, fleet.challenges, fleet.truth, strict=True):
        assert t.machine == b.machine
        assert (t.verdict == "trusted") == (t.tamper is None)
        entries = parse_measurement_list(b.measurement_list)
        sel, values = parse_pcr_file(b.pcr_file)
        if t.tamper == "replayed-quote":
            assert b.nonce != c  # the old bundle, its old nonce included
            verify_quote(b.quote_message, b.quote_signature, b.ak_public, nonce=b.nonce,
                         pcr_values=values)
            continue
        assert b.nonce == c
        if t.tamper == "forged-pcr-file":
            # the file claims PCRs 0-10 of a quote of 0-9: refused, as tpm2_checkquote does
            assert [list(p) for _, p in sel.items()] == [list(range(11))]
            with pytest.raises(PcrMismatchError):
                verify_quote(b.quote_message, b.quote_signature, b.ak_public, nonce=c,
                             pcr_values=values)
            values = {a: {i: v for i, v in vals.items() if i < 10} for a, vals in values.items()}
        vq = verify_quote(b.quote_message, b.quote_signature, b.ak_public, nonce=c,
                          pcr_values=values)
        quoted = vq.attest.pcr_select.items()
        width = 10 if t.tamper == "forged-pcr-file" else 11
        assert [list(p) for _, p in quoted] == [list(range(width))]
        if t.tamper in (None, "unknown-binary", "changed-digest"):
            assert len(entries) == SPEC.entries + (t.tamper == "unknown-binary")
        if t.tamper == "missing-kexec-carry-over":
            aggs = [i for i, e in enumerate(entries) if e.event_name == "boot_aggregate"]
            assert len(aggs) == 2
        # the firmware's log: replays to the quoted PCRs 0-9 (but for a forged one),
        # which give the list's boot_aggregate
        if t.tamper == "missing-eventlog":
            assert b.event_log is None
            continue
        assert b.event_log is not None
        log = EventLog.parse(b.event_log)
        pcrs = vq.pcrs
        assert check_boot_aggregate(entries[0], pcrs, banks=[HashAlgorithm.SHA256])
        if t.tamper == "forged-eventlog":
            with pytest.raises(PcrMismatchError, match="PCR 4"):
                verify_eventlog(log, pcrs)
        else:
            assert verify_eventlog(log, pcrs).verified_pcrs == set(range(10))


def test_every_machine_has_its_own_firmware_log() -> None:
    """An OVMF-like UEFI log per machine: the fleet's GRUB builds and kernels as boot
    applications (PCR 4), the EFI stub's command line and the machine's own initrd (PCR
    9), so PCR 9 and boot_aggregate differ from machine to machine."""
    fleet = simulate_fleet(FleetSpec(machines=12, seed=3, entries=20))
    logs = [EventLog.parse(b.event_log or b"") for b in fleet.bundles]
    kinds = [[e.type_name for e in log.measurements] for log in logs]
    assert all(k == kinds[0] for k in kinds)
    assert kinds[0].count("EV_EFI_BOOT_SERVICES_APPLICATION") == 2
    assert "EV_EVENT_TAG" in kinds[0] and kinds[0][0] == "EV_S_CRTM_VERSION"
    apps = {tuple(e.digest(HashAlgorithm.SHA256) for e in log.measurements
                  if e.type_name == "EV_EFI_BOOT_SERVICES_APPLICATION") for log in logs}
    assert 2 <= len(apps) <= 6  # 2 GRUB builds x 3 kernels
    aggs = {parse_measurement_list(b.measurement_list)[0].template_data for b in fleet.bundles}
    assert len(aggs) == 12


def test_policy_allows_the_pool_and_nothing_else() -> None:
    fleet = simulate_fleet(SPEC)
    ref = ReferenceValues.from_keylime_json(fleet.policy)
    for b, t in zip(fleet.bundles, fleet.truth, strict=True):
        if t.tamper is None:
            for e in parse_measurement_list(b.measurement_list)[1:]:
                assert e.file_digest is not None
                assert e.file_digest.digest.hex() in ref.digests[e.event_name]
    assert not any(p.startswith("/tmp/") for p in ref.digests)


def test_spec_bounds() -> None:
    for bad in ({"machines": 2, "tamper": 3}, {"machines": -1}, {"machines": 1, "entries": 5}):
        with pytest.raises(UsageError):
            FleetSpec(**bad)  # type: ignore[arg-type]


def test_write_fleet_in_parallel_writes_the_same_files(tmp_path: Path) -> None:
    spec = FleetSpec(machines=130, tamper=9, seed=2, entries=20)
    one = write_fleet(spec, tmp_path / "one")
    two = write_fleet(spec, tmp_path / "two", workers=2)
    for name in ("policy.json", "challenges.json", "ground-truth.json", "fleet.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    paths = bundle_paths(one)
    assert len(paths) == 130
    for p in paths:
        cmp = filecmp.dircmp(p, two / "machines" / p.name)
        assert not (cmp.diff_files or cmp.left_only or cmp.right_only)
    truth = json.loads((one / "ground-truth.json").read_text())
    assert sum(t["tamper"] is not None for t in truth) == 9
    assert read_bundle(paths[0]).machine == "m000000"


# -- a fleet booted from a scenario ------------------------------------------------------
DEMO = Path(__file__).parents[2] / "src" / "imasim" / "demo.toml"

SMALL = """
name = "fleet-base"
[machine]
cmdline = "ima_policy=tcb ima_hash=sha256"
banks = ["sha1", "sha256", "sha384"]
firmware = "seabios"
[[files]]
path = "/usr/sbin/init"
content = "init v1"
[[actions]]
op = "exec"
path = "/usr/sbin/init"
expect = "allow"
"""


def _scenario(text: str) -> Scenario:
    return ScenarioFiles.of(parse_scenario(text))


@pytest.mark.parametrize("text", [DEMO.read_text(), SMALL], ids=["demo", "seabios"])
def test_scenario_fleet_equals_ground_truth_and_a_machine_running_it(text: str) -> None:
    """The base machine is the scenario's (its firmware log, keys, policy, kexec, its
    own measurements in the fleet's policy); the derived machines are byte for byte what
    the scenario's machine gives after executing the same files; every compromise the
    machine can show is present and caught, the others are left out."""
    scenario = _scenario(text)
    spec = FleetSpec(machines=14, tamper=9, seed=5, entries=60, scenario=scenario)
    fleet = simulate_fleet(spec)
    clean = next(i for i, t in enumerate(fleet.truth) if t.tamper is None)
    assert machine_reference(spec, clean) == (fleet.bundles[clean], fleet.challenges[clean])
    ran = run_scenario(scenario).machine
    base = ran.measurements.to_bytes()
    assert all(b.measurement_list.startswith(base) for b, t in
               zip(fleet.bundles, fleet.truth, strict=True) if t.tamper is None)
    kinds = {t.tamper for t in fleet.truth if t.tamper}
    if "kexec_sig_force" in text:  # the demo: an unsigned kexec kernel is refused
        assert kinds == set(TAMPER_KINDS) - {"missing-kexec-carry-over"}
    else:
        assert kinds == set(TAMPER_KINDS)
    ref = ReferenceValues.from_keylime_json(fleet.policy)
    for b, c, t in zip(fleet.bundles, fleet.challenges, fleet.truth, strict=True):
        v = verify_bundle(b, ref, nonce=c, require_eventlog=True)
        assert t.agrees(v.verdict, v.checks), (t, v)
        if t.tamper is None:
            assert v.entries == v.verified_entries == 60
    assert json.loads(fleet.policy)["digests"]["/usr/" + ("bin/sh" if "demo" in text
                                                          else "sbin/init")]


def test_scenario_without_a_firmware_log_leaves_the_log_compromises_out() -> None:
    scenario = _scenario(SMALL.replace('firmware = "seabios"\n', ""))
    fleet = simulate_fleet(FleetSpec(machines=9, tamper=7, seed=5, entries=40,
                                     scenario=scenario))
    assert all(b.event_log is None for b in fleet.bundles)
    assert {t.tamper for t in fleet.truth if t.tamper} == set(TAMPER_KINDS) - {
        "forged-eventlog", "missing-eventlog"}


def test_scenarios_the_fleet_cannot_derive_from_are_refused() -> None:
    # no measurement of executed files: the fleet's software would not be in the list
    quiet = _scenario(SMALL.replace("ima_policy=tcb ", ""))
    with pytest.raises(UsageError, match="does not measure an executed file"):
        simulate_fleet(FleetSpec(machines=2, entries=40, scenario=quiet))
    # a machine whose own list no quote of PCRs 0-10 covers (a read measured in PCR 11)
    pcr11 = _scenario(SMALL + '''
[[actions]]
op = "load_policy"
text = """
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=FILE_CHECK mask=MAY_READ pcr=11
"""
[[actions]]
op = "open"
path = "/usr/sbin/init"
''')
    with pytest.raises(UsageError, match=r"not trusted.*uncovered-pcr"):
        simulate_fleet(FleetSpec(machines=2, entries=40, scenario=pcr11))
    with pytest.raises(UsageError, match="entries must be at least"):
        simulate_fleet(FleetSpec(machines=2, entries=10, scenario=_scenario(DEMO.read_text())))


def test_cli_simulate_from_a_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "init.bin").write_bytes(b"init from a file")
    (tmp_path / "base" / "s.toml").write_text(SMALL.replace('content = "init v1"',
                                                            'source = "init.bin"'))
    out = tmp_path / "fleet"
    args = ["fleet", "simulate", "--machines", "70", "--tamper", "9", "--entries", "30",
            "--scenario", str(tmp_path / "base" / "s.toml"), "--out"]
    assert main([*args, str(out), "--workers", "2"]) == 0
    assert main([*args, str(tmp_path / "one")]) == 0
    for name in ("policy.json", "ground-truth.json", "fleet.json"):
        assert (out / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert json.loads((out / "fleet.json").read_text())["spec"]["scenario"]["name"] == \
        "fleet-base"
    b = read_bundle(out / "machines" / "m000000")
    assert b"/usr/sbin/init" in b.measurement_list and b.event_log is not None
    (tmp_path / "bad.toml").write_text("[machine]\npreset = 'nope'\n")
    assert main([*args[:-1], str(tmp_path / "bad.toml"), "--out", str(tmp_path / "x")]) == 2
