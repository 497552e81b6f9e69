"""A simulated fleet: N machines of one kind running varied software, some compromised.

Every machine is the same simulated kernel (the ``generic-6.1-ima-kexec`` preset,
``ima_policy=tcb ima_hash=sha256``, TPM banks sha1 and sha256) booted by
:class:`imasim.machine.Machine` on its own OVMF-like UEFI firmware
(:class:`~imasim.eventlog.simulate.SimulatedFirmware`: one of the pool's GRUB builds and
kernels as boot applications in PCR 4, and the EFI stub's command line and the machine's
own initrd in PCR 9), which writes the machine's TCG event log
(``binary_bios_measurements``) and extends its replay into PCRs 0-9, so every machine has
its own boot_aggregate. The machine then executes ~``entries`` files of the packages it
installed from a shared pool (each package in one of up to three versions). Each machine
quotes sha256 PCRs 0-10 with its own ECC attestation key, qualified by the verifier's
challenge.

Booting a machine (firmware, kernel, boot_aggregate) costs ~1 ms and is done per machine;
executing 1,000 files on it would cost ~0.2 s, so the rest is derived: each pool file's
record and template digests are computed once (with :func:`imasim.ima.builders.file_entry`
in the machine's template, as the kernel stores them), a machine's list is its boot
entries and those records in its execution order, its PCR 10 the replay of them, and its
TPM the booted machine's state with that PCR 10 (:meth:`SoftTpm.from_json`).
:func:`machine_reference` runs one machine on a real ``Machine`` instead, and the tests
check the two agree byte for byte. The kexec case always runs on a real ``Machine``.

Compromised machines (``tamper``) are compromised in one of :data:`TAMPER_KINDS`, spread
round-robin, with the ground truth (:class:`GroundTruth`) of what a sound verifier must
say. Everything is a function of the seed: the same spec gives the same bytes.

>>> spec = FleetSpec(machines=3, tamper=1, seed=7, entries=20)
>>> fleet = simulate_fleet(spec)
>>> [(t.machine, t.tamper, t.verdict) for t in fleet.truth]  # doctest: +NORMALIZE_WHITESPACE
[('m000000', None, 'trusted'), ('m000001', 'unknown-binary', 'untrusted'),
 ('m000002', None, 'trusted')]
>>> len(fleet.bundles[0].measurement_list) > 0, len(fleet.challenges[0])
(True, 20)
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from ..algorithms import HashAlgorithm
from ..errors import UsageError
from ..eventlog.codec import EventLog
from ..eventlog.simulate import BootImage, SimulatedFirmware, UefiBoot, apply_log
from ..ima.builders import file_entry
from ..machine import Machine
from ..sig.pefile import build_pe
from ..tpm.marshal import PcrSelection
from ..tpm.soft_tpm import SoftTpm
from ..tpm.verify import write_pcr_file
from .bundle import EvidenceBundle

if TYPE_CHECKING:
    from ..scenario import Scenario

__all__ = [
    "CMDLINE",
    "TAMPER_KINDS",
    "Fleet",
    "FleetSpec",
    "GroundTruth",
    "ScenarioFiles",
    "fleet_policy",
    "machine_id",
    "machine_reference",
    "simulate_fleet",
    "simulate_machines",
]

H1, H256 = HashAlgorithm.SHA1, HashAlgorithm.SHA256

#: The kernel command line of every simulated machine.
CMDLINE: Final = "ima_policy=tcb ima_hash=sha256"
_PRESET: Final = "generic-6.1-ima-kexec"
_QUOTED: Final = PcrSelection({H256: list(range(11))})

#: The ways a machine is compromised, each with the checks a sound verifier fails it on
#: (at least one of them).
TAMPER_KINDS: Final[dict[str, tuple[str, ...]]] = {
    # ran a binary no policy knows
    "unknown-binary": ("unknown-path",),
    # ran a modified (trojaned) pool binary
    "changed-digest": ("digest-mismatch",),
    # hid a binary: the quote covers PCRs 0-9, the PCR file claims a PCR 10 too (refused
    # as tpm2_checkquote refuses it, or its list entries are in a PCR no quote covers)
    "forged-pcr-file": ("quote", "uncovered-pcr"),
    # hid the last entries by cutting the list
    "truncated-list": ("replay",),
    # swapped two entries of the list
    "reordered-list": ("replay",),
    # resent an old, clean bundle (its old nonce)
    "replayed-quote": ("quote",),
    # kexec'd on a kernel that copies the list at load
    "missing-kexec-carry-over": ("replay",),
    # booted a kernel from no release and edited the firmware log to show a released one:
    # the log no longer replays to the quoted PCR 4
    "forged-eventlog": ("eventlog",),
    # sent no firmware event log (what booted cannot be told)
    "missing-eventlog": ("no-eventlog",),
}

_KEXEC_KERNEL: Final = "/boot/vmlinuz-6.1.0-next-amd64"
_KEXEC_INITRD: Final = "/boot/initrd.img-6.1.0-next-amd64"
_KEXEC_CMDLINE: Final = f"root=/dev/vda ro {CMDLINE}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    """What to simulate. ``entries`` is the list length of an untampered machine."""

    machines: int
    tamper: int = 0
    seed: int = 0
    entries: int = 1000
    packages: int = 200
    scenario: Scenario | None = None
    """The base machine: booted and run as this scenario says (``imasim boot``'s
    format), every machine the same; ``None``: the built-in machine, each on its own
    UEFI firmware. A scenario's file reader must pickle for ``write_fleet(workers=2)``
    (:class:`ScenarioFiles`)."""

    def __post_init__(self) -> None:
        if self.machines < 0 or not 0 <= self.tamper <= self.machines:
            raise UsageError("need 0 <= tamper <= machines")
        if not 10 <= self.entries <= 100_000:
            raise UsageError("entries must be 10..100000")
        if self.packages < 1:
            raise UsageError("packages must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """The spec as ``fleet.json`` records it (a scenario by its name and the SHA-256
        of its document and files)."""
        out: dict[str, Any] = {"machines": self.machines, "tamper": self.tamper,
                               "seed": self.seed, "entries": self.entries,
                               "packages": self.packages}
        if self.scenario is not None:
            out["scenario"] = {"name": self.scenario.data.get("name"),
                               "sha256": _scenario_key(self.scenario)}
        return out


@dataclass(frozen=True, slots=True)
class ScenarioFiles:
    """A scenario's ``read`` callback over files read beforehand (name -> bytes): what a
    scenario carries to other processes (a closure over a folder does not pickle)."""

    files: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, scenario: Scenario) -> Scenario:
        """``scenario`` with every file it names (``source =``, anywhere) read now
        through its own reader."""
        names: set[str] = set()

        def walk(v: object) -> None:
            if isinstance(v, dict):
                for k, x in v.items():
                    if k == "source" and isinstance(x, str):
                        names.add(x)
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(scenario.data)
        if not names or scenario.read is None:
            return replace(scenario, read=cls())
        return replace(scenario, read=cls(tuple((n, scenario.read(n)) for n in sorted(names))))

    def __call__(self, name: str) -> bytes:
        for n, data in self.files:
            if n == name:
                return data
        raise UsageError(f"source {name!r}: not among the scenario's files")


def _scenario_key(s: Scenario) -> str:
    """The SHA-256 of a scenario's document and the files its reader holds."""
    h = hashlib.sha256(json.dumps(s.data, sort_keys=True, default=str).encode())
    if isinstance(s.read, ScenarioFiles):
        for name, data in s.read.files:
            h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a sound verifier must say about one machine, and why."""

    machine: str
    tamper: str | None
    verdict: str
    """``trusted`` or ``untrusted``."""
    checks: tuple[str, ...]
    """The checks the machine fails, at least one of them (:data:`TAMPER_KINDS`); empty
    when trusted."""
    detail: str = ""

    def agrees(self, verdict: str, failed: Sequence[str]) -> bool:
        """Does a verifier's verdict and failing checks agree with this truth?"""
        return verdict == self.verdict and (not self.checks or
                                            any(c in failed for c in self.checks))

    def to_dict(self) -> dict[str, Any]:
        """The row of ``ground-truth.json``."""
        return {"machine": self.machine, "tamper": self.tamper, "verdict": self.verdict,
                "checks": list(self.checks), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Fleet:
    """A simulated fleet: bundles, the verifier's challenges, ground truth, the policy."""

    spec: FleetSpec
    bundles: tuple[EvidenceBundle, ...]
    challenges: tuple[bytes, ...]
    truth: tuple[GroundTruth, ...]
    policy: bytes
    """A Keylime runtime policy (JSON) allowing every version of every pool file."""


def machine_id(index: int) -> str:
    """``m000042``: the id of machine ``index``."""
    return f"m{index:06d}"


# -- the package pool and the booted base machine ---------------------------------------
@dataclass(frozen=True, slots=True)
class _Record:
    path: str
    content: bytes
    raw: bytes                  # the binary record, as the kernel writes it
    extends: tuple[bytes, ...]  # what the kernel extends into PCR 10, per bank of the pool


def _record(template: str, banks: Sequence[HashAlgorithm], path: str, content: bytes
            ) -> _Record:
    e = file_entry(template, path, H256.hash(content), H256)
    return _Record(path, content, e.to_bytes(), tuple(e.extend_value(b) for b in banks))


@dataclass(frozen=True, slots=True)
class _Boot:
    """A booted machine, as the fleet derives its machines from it."""

    entries: bytes              # its list so far (binary)
    count: int
    state: str                  # its TPM (SoftTpm.to_json)
    event_log: bytes | None     # its firmware's TCG event log, if the firmware writes one


def _boot_of(m: Machine) -> _Boot:
    log = m.firmware_log
    return _Boot(m.measurements.to_bytes(), len(m.measurements), m.tpm.to_json(),
                 None if log is None else log.encode())


@dataclass(frozen=True, slots=True)
class _Pool:
    packages: tuple[tuple[tuple[_Record, ...], ...], ...]  # package -> version -> files
    base_count: int                                        # entries the booted kernel records
    policy: bytes
    kexec_files: tuple[tuple[str, bytes], ...]
    template: str
    banks: tuple[HashAlgorithm, ...]                       # the TPM's banks
    grubs: tuple[BootImage, ...]                           # the boot loaders in the fleet
    kernels: tuple[tuple[str, BootImage], ...]             # (release, image) in the fleet
    boot: _Boot | None                                     # a scenario's: every machine's
    kinds: tuple[str, ...]                                 # the compromises it can show


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(map(str, ("imasim-fleet", seed, *parts))))


def _digest(seed: int, *parts: object) -> bytes:
    return hashlib.sha256(":".join(map(str, ("imasim-fleet", seed, *parts))).encode()).digest()


_DIRS: Final = ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu", "/usr/libexec")
_POOLS: dict[tuple[int, int, str | None], _Pool] = {}


def _pool(seed: int, npackages: int, scenario: Scenario | None = None) -> _Pool:
    """The pool for ``seed`` (memoised per process, four at most: a pure function of its
    arguments)."""
    key = (seed, npackages, None if scenario is None else _scenario_key(scenario))
    pool = _POOLS.get(key)
    if pool is None:
        if len(_POOLS) >= 4:
            _POOLS.pop(next(iter(_POOLS)))
        pool = _POOLS[key] = _make_pool(seed, npackages, scenario)
    return pool


def _make_pool(seed: int, npackages: int, scenario: Scenario | None) -> _Pool:
    rng = _rng(seed, "pool")
    m = (_scenario_machine(scenario) if scenario is not None
         else _booted(_firmware_of(UefiBoot(secure_boot=False))))
    template = m.template  # what the kernel records files with (the machine's template)
    banks = m.tpm.banks
    if H256 not in banks:
        raise UsageError("the fleet quotes sha256 PCRs 0-10: the machine needs a sha256 bank")
    packages = []
    digests: dict[str, set[str]] = {}
    for p in range(npackages):
        name = f"pkg{p:03d}"
        nfiles = rng.randint(4, 40)
        paths = [f"{rng.choice(_DIRS)}/{name}-{j}" if j else f"/usr/bin/{name}"
                 for j in range(nfiles)]
        versions = []
        for v in range(rng.randint(1, 3)):
            files = tuple(_record(template, banks, path,
                                  f"{name} {v}.0 {path} {seed}".encode()) for path in paths)
            for r in files:
                digests.setdefault(r.path, set()).add(hashlib.sha256(r.content).hexdigest())
            versions.append(files)
        packages.append(tuple(versions))
    kexec_files = ((_KEXEC_KERNEL, f"kernel {seed}".encode()),
                   (_KEXEC_INITRD, f"initrd {seed}".encode()))
    for path, content in kexec_files:
        digests[path] = {hashlib.sha256(content).hexdigest()}
    digests["kexec-cmdline"] = {hashlib.sha256(_KEXEC_CMDLINE.encode()).hexdigest()}
    policy: dict[str, Any] = {
        "meta": {"version": 1, "generator": "imasim fleet simulate"}, "release": 0,
        "digests": {}, "excludes": [], "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1"}}
    boot, kinds = None, tuple(TAMPER_KINDS)
    if scenario is not None:
        boot = _boot_of(m)
        _reference_base(m, digests, policy)
    policy["digests"] = {p: sorted(d) for p, d in sorted(digests.items())}
    grubs = tuple(BootImage(_GRUB, build_pe(f"GRUB {v} {seed}".encode()))
                  for v in ("2.06-13", "2.06-13+deb12u1"))
    kernels = tuple((r, BootImage(f"/boot/vmlinuz-{r}", build_pe(f"Linux {r} {seed}".encode())))
                    for r in ("6.1.0-25-amd64", "6.1.0-26-amd64", "6.1.0-27-amd64"))
    pool = _Pool(tuple(packages), len(m.measurements),
                 json.dumps(policy, indent=1).encode() + b"\n", kexec_files, template, banks,
                 grubs, kernels, boot, kinds)
    if scenario is not None:
        pool = replace(pool, kinds=_scenario_kinds(pool, scenario))
        _check_scenario_base(pool, scenario, seed)
    return pool


# -- a scenario's machine ----------------------------------------------------------------
def _scenario_machine(s: Scenario) -> Machine:
    from ..scenario import run_scenario

    return run_scenario(s).machine


def _reference_base(m: Machine, digests: dict[str, set[str]], policy: dict[str, Any]
                    ) -> None:
    """Add what the scenario's machine measured before the fleet's software runs to the
    policy (the golden image): file digests under their paths (any template), keys
    under their keyrings, other buffers under ``ima-buf``."""
    from ..runtime_policy import create_runtime_policy

    base = [e for e in m.measurements if not e.is_violation]
    for e in base:
        fd = e.file_digest
        if e.template_name != "ima-buf" and fd is not None and \
                e.event_name != "boot_aggregate":
            digests.setdefault(e.event_name, set()).add(fd.digest.hex())
    made = create_runtime_policy(base, keyrings=True, ima_buf=True)
    policy["keyrings"] = {k: sorted(v) for k, v in sorted(made.keyrings.items())}
    policy["ima-buf"] = {k: sorted(v) for k, v in sorted(made.ima_buf.items())}


def _scenario_kinds(pool: _Pool, s: Scenario) -> tuple[str, ...]:
    """The compromises the scenario's machine can show: the firmware-log ones when its
    firmware writes a log; the kexec one when a kexec on it loses measurements (a kernel
    that copies the list at load, and a kexec the machine allows)."""
    kinds = list(TAMPER_KINDS)
    assert pool.boot is not None
    if pool.boot.event_log is None:
        kinds = [k for k in kinds if k not in ("forged-eventlog", "missing-eventlog")]
    m = _scenario_machine(s)
    r = pool.packages[0][0][0]
    for path, content in pool.kexec_files:
        m.add_file(path, content)
    m.add_file(r.path, r.content)
    from ..errors import ImasimError

    try:
        loaded = m.kexec_load(_KEXEC_KERNEL, _KEXEC_INITRD, _KEXEC_CMDLINE).allowed
        if loaded:
            m.exec(r.path)
            m.kexec_execute()
    except ImasimError:
        loaded = False
    if not loaded or not m.lost_measurements:
        kinds.remove("missing-kexec-carry-over")
    return tuple(kinds)


def _check_scenario_base(pool: _Pool, s: Scenario, seed: int) -> None:
    """The derivation holds for this machine (a pool file it executes is recorded as the
    fleet derives it), and the machine verifies as trusted against the fleet's policy:
    or the ground truth would be wrong."""
    from .verify import verify_bundle

    m = _scenario_machine(s)
    r = pool.packages[0][0][0]
    m.add_file(r.path, r.content)
    m.exec(r.path)
    assert pool.boot is not None
    got = m.measurements.to_bytes()[len(pool.boot.entries):]
    if got != r.raw:
        raise UsageError(f"the scenario's machine does not measure an executed file as the "
                         f"fleet derives it (its policy must measure func=BPRM_CHECK with "
                         f"the {pool.template} template): {r.path} gave "
                         f"{len(got)} bytes of records, expected {len(r.raw)}")
    from ..attest import ReferenceValues

    nonce = _digest(seed, "scenario check")[:20]
    b = _evidence("base", m.tpm, _digest(seed, "scenario check ak"), nonce,
                  m.measurements.to_bytes(), pool.boot.event_log)
    v = verify_bundle(b, ReferenceValues.from_keylime_json(pool.policy), nonce=nonce)
    if not v.trusted:
        raise UsageError(f"the scenario's machine itself is not trusted by the fleet's "
                         f"policy ({', '.join(v.checks)}: {v.reason}): every machine would "
                         f"be untrusted")


# -- the built-in machine's firmware -----------------------------------------------------
_GRUB: Final = "/EFI/debian/grubx64.efi"


def _firmware_of(uefi: UefiBoot) -> SimulatedFirmware:
    return SimulatedFirmware("ovmf", uefi=uefi)


def _uefi(pool: _Pool, seed: int, mid: str, *, rogue: bool = False) -> UefiBoot:
    """What machine ``mid``'s firmware boots: one of the fleet's GRUB builds and kernels
    (``rogue``: a kernel of no release), its command line and its own initrd (initramfs
    images are built on each machine)."""
    rng = _rng(seed, "firmware", mid)
    grub = pool.grubs[rng.randrange(len(pool.grubs))]
    release, kernel = pool.kernels[rng.randrange(len(pool.kernels))]
    if rogue:
        kernel = BootImage(kernel.path, build_pe(b"not a released kernel " +
                                                 _digest(seed, mid, "rogue")))
    return UefiBoot(secure_boot=False, images=(grub, kernel),
                    cmdline=f"BOOT_IMAGE=/boot/vmlinuz-{release} root=/dev/vda ro {CMDLINE}",
                    initrd=f"initrd.img-{release} of {mid}\n".encode() + _digest(seed, mid,
                                                                                 "initrd"))


@dataclass(frozen=True, slots=True)
class _Logged:
    """A firmware with its log built beforehand: boots as :class:`SimulatedFirmware`
    does (its log's replay extended into the TPM), without building the log again for
    ``Machine.firmware_log``."""

    event_log: EventLog

    def log(self, banks: Sequence[HashAlgorithm]) -> EventLog:
        return self.event_log

    def __call__(self, tpm: SoftTpm, /) -> None:
        apply_log(tpm, self.event_log)


def _booted(firmware: SimulatedFirmware | _Logged) -> Machine:
    m = Machine.create(preset=_PRESET, cmdline=CMDLINE, firmware=firmware)
    m.boot()
    return m


def _fresh(spec: FleetSpec, pool: _Pool, mid: str) -> Machine:
    """Machine ``mid`` booted for real (the kexec machines, :func:`machine_reference`)."""
    if spec.scenario is not None:
        return _scenario_machine(spec.scenario)
    return _booted(_firmware_of(_uefi(pool, spec.seed, mid)))


def _forged_log(log: bytes) -> bytes:
    """A firmware log with the digests of its last event in PCRs 0-7 changed: an edit
    that hides what that event measured."""
    from ..eventlog.codec import Digest, EventLog, EventType

    parsed = EventLog.parse(log)
    events = list(parsed.events)
    first = 0 if parsed.spec_id is None else 1  # the crypto-agile header is no event
    k = max(i for i, e in enumerate(events) if i >= first and e.pcr < 8 and
            e.event_type != EventType.EV_NO_ACTION)
    e = events[k]
    events[k] = replace(e, digests=tuple(
        Digest(d.alg_id, hashlib.sha512(b"imasim forged" + d.value).digest()[:len(d.value)])
        for d in e.digests))
    return replace(parsed, events=tuple(events)).encode()


# -- one machine -------------------------------------------------------------------------
def _software(pool: _Pool, spec: FleetSpec, rng: random.Random) -> list[_Record]:
    """The files a machine executes, in order: whole packages (a random version each)
    until the list holds ``spec.entries`` entries."""
    want = spec.entries - pool.base_count
    order = list(range(len(pool.packages)))
    rng.shuffle(order)
    files: list[_Record] = []
    for p in order:
        if len(files) >= want:
            break
        versions = pool.packages[p]
        files += versions[rng.randrange(len(versions))]
    files = files[:want]
    rng.shuffle(files)
    return files


def _replay(banks: Sequence[HashAlgorithm], start: Sequence[bytes],
            records: Sequence[_Record]) -> dict[HashAlgorithm, bytes]:
    out = {}
    for k, b in enumerate(banks):
        h, v = getattr(hashlib, b.kernel_name, b.new), start[k]
        for r in records:
            v = h(v + r.extends[k]).digest()
        out[b] = v
    return out


def _tpm(base_state: str, pcr10: dict[HashAlgorithm, bytes]) -> SoftTpm:
    state = json.loads(base_state)
    for alg, v in pcr10.items():
        state["pcrs"][alg.kernel_name][10] = v.hex()
    return SoftTpm.from_json(json.dumps(state))


def _evidence(machine: str, tpm: SoftTpm, ak_seed: bytes, nonce: bytes, listed: bytes,
              event_log: bytes | None, *, selection: PcrSelection = _QUOTED,
              pcr_file: bytes | None = None) -> EvidenceBundle:
    ak = tpm.create_ak("ecc", seed=ak_seed)
    q = tpm.quote(ak, selection, nonce)
    if pcr_file is None:
        pcr_file = write_pcr_file(q.selection, [v for _, _, v in q.pcr_values])
    return EvidenceBundle(machine=machine, quote_message=q.attest, quote_signature=q.signature,
                          pcr_file=pcr_file, ak_public=ak.public_pem, nonce=nonce,
                          measurement_list=listed, event_log=event_log)


def _odd(pool: _Pool, seed: int, machine: str, what: str) -> _Record:
    return _record(pool.template, pool.banks, f"/tmp/.{what}-{machine}",
                   b"not from the pool " + _digest(seed, machine, what))


def _machine(spec: FleetSpec, index: int, tamper: str | None
             ) -> tuple[EvidenceBundle, bytes, GroundTruth]:
    pool = _pool(spec.seed, spec.packages, spec.scenario)
    mid = machine_id(index)
    rng = _rng(spec.seed, "machine", index)
    challenge = _digest(spec.seed, mid, "challenge")[:20]
    ak_seed = _digest(spec.seed, mid, "ak")
    if spec.entries < pool.base_count + 10:
        raise UsageError(f"entries must be at least {pool.base_count + 10} on this machine "
                         f"(it records {pool.base_count} before the fleet's software runs)")
    files = _software(pool, spec, rng)
    if tamper == "missing-kexec-carry-over":
        return _kexec_machine(spec, pool, mid, files, challenge, ak_seed)
    # the boot: a scenario's machine, or the machine's own firmware (its event log,
    # boot_aggregate and PCRs 0-9)
    boot = pool.boot or _boot_of(_booted(_Logged(_firmware_of(
        _uefi(pool, spec.seed, mid, rogue=tamper == "forged-eventlog")).log(pool.banks))))
    base, base_state, event_log = boot.entries, boot.state, boot.event_log
    tpm0 = json.loads(base_state)["pcrs"]
    start = [bytes.fromhex(tpm0[a.kernel_name][10]) for a in pool.banks]
    detail = ""
    if tamper == "forged-eventlog":
        if pool.boot is None:
            # the log of the same boot with a released kernel where the rogue one was
            event_log = _firmware_of(_uefi(pool, spec.seed, mid)).log(pool.banks).encode()
            detail = "booted a kernel of no release; the event log shows a released one"
        else:
            assert event_log is not None
            event_log = _forged_log(event_log)
            detail = "edited the firmware event log (the digests of its last PCR 0-7 event)"
    elif tamper == "missing-eventlog":
        event_log = None
        detail = "sent no firmware event log"
    if tamper == "unknown-binary":
        files.insert(rng.randrange(len(files) + 1), _odd(pool, spec.seed, mid, "miner"))
        detail = "executed a binary from no package"
    elif tamper == "changed-digest":
        k = rng.randrange(len(files))
        files[k] = _record(pool.template, pool.banks, files[k].path,
                           files[k].content + b" trojaned")
        detail = f"executed a modified {files[k].path}"
    ran = files  # what the kernel measured and extended, in order
    listed = files  # what the list shows
    if tamper == "truncated-list":
        ran = [*files, _odd(pool, spec.seed, mid, "implant")]
        listed = files[:len(files) - rng.randint(0, 3)]
        detail = f"cut the list after {pool.base_count + len(listed)} entries"
    elif tamper == "reordered-list":
        k = rng.randrange(len(files) - 1)
        listed = [*files[:k], files[k + 1], files[k], *files[k + 2:]]
        detail = f"swapped entries {pool.base_count + k} and the next"
    elif tamper == "forged-pcr-file":
        k = rng.randrange(len(files) + 1)
        ran = [*files[:k], _odd(pool, spec.seed, mid, "implant"), *files[k:]]
        detail = "quoted PCRs 0-9 only, PCR file claims PCR 10 of a list without the implant"
    tpm = _tpm(base_state, _replay(pool.banks, start, ran))
    body = base + b"".join(r.raw for r in listed)
    if tamper == "forged-pcr-file":
        forged = _replay(pool.banks, start, listed)[H256]
        values = [tpm.read(H256, i) for i in range(10)] + [forged]
        bundle = _evidence(mid, tpm, ak_seed, challenge, body, event_log,
                           selection=PcrSelection({H256: list(range(10))}),
                           pcr_file=write_pcr_file(_QUOTED, values))
    elif tamper == "replayed-quote":
        k = rng.randrange(len(files) // 2, len(files))
        old_nonce = _digest(spec.seed, mid, "old challenge")[:20]
        old = _tpm(base_state, _replay(pool.banks, start, files[:k]))
        bundle = _evidence(mid, old, ak_seed, old_nonce,
                           base + b"".join(r.raw for r in files[:k]), event_log)
        detail = f"resent the bundle of an earlier round ({pool.base_count + k} entries)"
    else:
        bundle = _evidence(mid, tpm, ak_seed, challenge, body, event_log)
    truth = GroundTruth(mid, tamper, "untrusted" if tamper else "trusted",
                        TAMPER_KINDS[tamper] if tamper else (), detail)
    return bundle, challenge, truth


def _kexec_machine(spec: FleetSpec, pool: _Pool, mid: str, files: list[_Record],
                   challenge: bytes, ak_seed: bytes) -> tuple[EvidenceBundle, bytes, GroundTruth]:
    """A real Machine: runs a third of its files, kexec-loads the next kernel, runs a
    third, executes the kexec (the list copied at load comes along), runs the rest."""
    m = _fresh(spec, pool, mid)
    for path, content in pool.kexec_files:
        m.add_file(path, content)
    for r in files:
        m.add_file(r.path, r.content)
    a, b = len(files) // 3, 2 * len(files) // 3
    for r in files[:a]:
        m.exec(r.path)
    m.kexec_load(_KEXEC_KERNEL, _KEXEC_INITRD, _KEXEC_CMDLINE)
    for r in files[a:b]:
        m.exec(r.path)
    m.kexec_execute()
    for r in files[b:]:
        m.exec(r.path)
    bundle = _evidence(mid, m.tpm, ak_seed, challenge, m.measurements.to_bytes(),
                       _log_bytes(m))
    lost = len(m.lost_measurements)
    return bundle, challenge, GroundTruth(
        mid, "missing-kexec-carry-over", "untrusted", ("replay",),
        f"kexec on a kernel that copies the list at load: {lost} measurements in PCR 10 "
        f"are not in the list")


def machine_reference(spec: FleetSpec, index: int) -> tuple[EvidenceBundle, bytes]:
    """Machine ``index`` of an untampered fleet, run on a real :class:`Machine` (every
    file added and executed): the bundle and challenge :func:`simulate_fleet` derives
    for it must be the same bytes."""
    pool = _pool(spec.seed, spec.packages, spec.scenario)
    mid = machine_id(index)
    files = _software(pool, spec, _rng(spec.seed, "machine", index))
    m = _fresh(spec, pool, mid)
    for r in files:
        m.add_file(r.path, r.content)
        m.exec(r.path)
    challenge = _digest(spec.seed, mid, "challenge")[:20]
    return (_evidence(mid, m.tpm, _digest(spec.seed, mid, "ak"), challenge,
                      m.measurements.to_bytes(), _log_bytes(m)), challenge)


def _log_bytes(m: Machine) -> bytes | None:
    log = m.firmware_log
    return None if log is None else log.encode()


def _tampered(spec: FleetSpec) -> dict[int, str]:
    chosen = sorted(_rng(spec.seed, "tamper").sample(range(spec.machines), spec.tamper))
    kinds = (list(TAMPER_KINDS) if spec.scenario is None
             else list(_pool(spec.seed, spec.packages, spec.scenario).kinds))
    return {i: kinds[n % len(kinds)] for n, i in enumerate(chosen)}


def simulate_machines(spec: FleetSpec, indices: Sequence[int]
                      ) -> Iterator[tuple[EvidenceBundle, bytes, GroundTruth]]:
    """Machines ``indices`` of the fleet: (bundle, the verifier's challenge, truth) each.
    Any subset, in any process, gives the same machines (for parallel simulation)."""
    tampered = _tampered(spec)
    for i in indices:
        if not 0 <= i < spec.machines:
            raise UsageError(f"machine {i} is not in a fleet of {spec.machines}")
        yield _machine(spec, i, tampered.get(i))


def fleet_policy(spec: FleetSpec) -> bytes:
    """The Keylime runtime policy of the fleet's pool (and of a scenario machine's own
    measurements)."""
    return _pool(spec.seed, spec.packages, spec.scenario).policy


def simulate_fleet(spec: FleetSpec) -> Fleet:
    """The whole fleet in memory (for small fleets; the CLI streams machines to disk)."""
    out = list(simulate_machines(spec, range(spec.machines)))
    return Fleet(spec, tuple(b for b, _, _ in out), tuple(c for _, c, _ in out),
                 tuple(t for _, _, t in out), fleet_policy(spec))
