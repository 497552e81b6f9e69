"""Replay an event log into PCR values, and verify it against quoted PCRs.

Replay follows the PC Client rules: every PCR starts at its reset value (PCR 0-16 and 23
zero, 17-22 all ones), PCR 0 starts at the locality an ``EV_NO_ACTION`` *StartupLocality*
event names, and EV_NO_ACTION events are never extended.

Verification follows go-attestation's rule: a log is trusted only as far as it replays to
PCR values a verified quote vouches for. :func:`verify_eventlog` takes the
:class:`~imasim.tpm.pcrs.PcrBanks` of a verified quote, replays every bank the log and the
quote share, raises :class:`~imasim.errors.PcrMismatchError` naming each PCR that differs
(and every event whose data does not hash to its digest), and returns a
:class:`VerifiedEventLog` holding only the events of PCRs that matched.

>>> from imasim.algorithms import HashAlgorithm as H
>>> from imasim.eventlog import EventLog
>>> from imasim.tpm.pcrs import PcrBanks
>>> log = EventLog.build([H.SHA256], [(7, 4, bytes(4))])
>>> r = replay(log)
>>> r.value(H.SHA256, 7) == H.SHA256.hash(bytes(32) + H.SHA256.hash(bytes(4)))
True
>>> v = verify_eventlog(log, PcrBanks.unauthenticated({H.SHA256: {7: r.value(H.SHA256, 7)}}))
>>> sorted(v.verified_pcrs), v.authenticated
([7], False)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..algorithms import HashAlgorithm
from ..errors import PcrMismatchError, UsageError, VerificationError
from ..tpm.pcrs import PcrBanks
from .codec import Event, EventLog, EventType

__all__ = [
    "FIRMWARE_PCRS",
    "DataBinding",
    "PcrDifference",
    "Replay",
    "VerifiedEventLog",
    "data_binding",
    "initial_pcr_value",
    "replay",
    "startup_locality",
    "verify_eventlog",
]

FIRMWARE_PCRS = frozenset(range(10))
"""PCR 0-9: what the firmware, the boot loader and the EFI stub measure (boot_aggregate's)."""

_STARTUP_LOCALITY = b"StartupLocality\x00"


def initial_pcr_value(alg: HashAlgorithm, pcr: int, locality: int = 0) -> bytes:
    """A PCR's value after TPM2_Startup (PC Client): PCR 0 carries the startup locality."""
    if 17 <= pcr <= 22:
        return b"\xff" * alg.digest_size
    if pcr == 0 and locality:
        return bytes(alg.digest_size - 1) + bytes([locality])
    return bytes(alg.digest_size)


def startup_locality(log: EventLog) -> int:
    """The locality of an EV_NO_ACTION StartupLocality event on PCR 0, else 0."""
    for ev in log.measurements:
        if (ev.event_type == EventType.EV_NO_ACTION and ev.pcr == 0
                and len(ev.data) == 17 and ev.data[:16] == _STARTUP_LOCALITY):
            return ev.data[16]
    return 0


@dataclass(frozen=True, slots=True)
class Replay:
    """The PCR values a log replays to.

    ``values`` holds, per bank, every PCR at least one event extends; ``missing`` names,
    per bank, the events that carry no digest for it (the bank cannot be replayed past
    them, so their PCRs are left out of ``values``).
    """

    values: Mapping[HashAlgorithm, Mapping[int, bytes]]
    extended: frozenset[int]
    locality: int
    missing: Mapping[HashAlgorithm, tuple[int, ...]]

    def value(self, alg: HashAlgorithm, pcr: int) -> bytes | None:
        """The replayed value (the reset value for a PCR no event extends), None if unknown."""
        bank = self.values.get(alg)
        if bank is None:
            return None
        if pcr in bank:
            return bank[pcr]
        if pcr in self.extended:
            return None  # an event without this bank's digest
        return initial_pcr_value(alg, pcr, self.locality)

    def to_dict(self) -> dict[str, dict[str, str]]:
        """``{"sha256": {"0": "<hex>", ...}}`` as ``imasim log replay --json`` prints."""
        return {a.kernel_name: {str(i): v.hex() for i, v in sorted(b.items())}
                for a, b in self.values.items()}


def replay(log: EventLog, banks: Iterable[HashAlgorithm] | None = None) -> Replay:
    """Replay ``log`` into every bank it carries (or the ``banks`` given)."""
    chosen = tuple(log.banks if banks is None else banks)
    for b in chosen:
        if b not in log.banks:
            raise UsageError(f"the log has no {b.kernel_name} digests "
                             f"(banks: {', '.join(a.kernel_name for a in log.banks) or 'none'})")
    locality = startup_locality(log)
    measurements = [e for e in log.measurements if e.event_type != EventType.EV_NO_ACTION]
    extended = frozenset(e.pcr for e in measurements)
    values: dict[HashAlgorithm, Mapping[int, bytes]] = {}
    missing: dict[HashAlgorithm, tuple[int, ...]] = {}
    for alg in chosen:
        alg_id = alg.tpm_alg_id
        h = alg.constructor()
        bank: dict[int, bytes] = {}
        broken: set[int] = set()
        lacking: list[int] = []
        for ev in measurements:
            d = None
            for dg in ev.digests:
                if dg.alg_id == alg_id:
                    d = dg.value
                    break
            if d is None:
                lacking.append(ev.number)
                broken.add(ev.pcr)
                continue
            cur = bank.get(ev.pcr)
            if cur is None:
                cur = initial_pcr_value(alg, ev.pcr, locality)
            bank[ev.pcr] = h(cur + d).digest()
        for p in broken:
            bank.pop(p, None)
        values[alg] = MappingProxyType(dict(sorted(bank.items())))
        missing[alg] = tuple(lacking)
    return Replay(MappingProxyType(values), extended, locality, MappingProxyType(missing))


# -- does an event's digest cover its data? --------------------------------------------

class DataBinding(enum.Enum):
    """Whether an event's data is what its digest measured."""

    BOUND = "bound"
    """The digest is the hash of the event data: the data is as trustworthy as the digest."""
    MISMATCH = "mismatch"
    """The digest should be the hash of the data and is not: the data was changed."""
    OPAQUE = "opaque"
    """The digest is of something the log does not hold (an image, a firmware volume)."""


_DATA_HASHED = frozenset({
    EventType.EV_SEPARATOR, EventType.EV_S_CRTM_VERSION, EventType.EV_ACTION,
    EventType.EV_EFI_ACTION, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
    EventType.EV_EFI_VARIABLE_AUTHORITY, EventType.EV_EFI_GPT_EVENT,
})
_VAR_BOOT = frozenset({EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_BOOT2})


def data_binding(event: Event, alg: HashAlgorithm) -> DataBinding:
    """Check an event's data against its ``alg`` digest, by the rules of its event type.

    EV_EFI_VARIABLE_BOOT digests are of the whole UEFI_VARIABLE_DATA or, as EDK2 (OVMF)
    measures them, of the variable's value alone; GRUB's EV_IPL strings in PCR 8 hash the
    text after the ``grub_cmd:``/``kernel_cmdline:`` prefix, with or without the NUL.
    """
    d = event.digest(alg)
    if d is None:
        return DataBinding.OPAQUE
    et = event.event_type
    data = event.data
    if et in _DATA_HASHED:
        return DataBinding.BOUND if alg.hash(data) == d else DataBinding.MISMATCH
    if et in _VAR_BOOT:
        if alg.hash(data) == d:
            return DataBinding.BOUND
        from .uefi import parse_variable_data
        try:
            var = parse_variable_data(data)
        except VerificationError:
            return DataBinding.MISMATCH
        except ValueError:
            return DataBinding.MISMATCH
        return DataBinding.BOUND if alg.hash(var.data) == d else DataBinding.MISMATCH
    if et == EventType.EV_IPL and event.pcr == 8:
        sp = data.find(b" ")
        if sp < 0 or not data.endswith(b"\x00"):
            return DataBinding.MISMATCH
        text = data[sp + 1:]
        if alg.hash(text[:-1]) == d or alg.hash(text) == d:
            return DataBinding.BOUND
        return DataBinding.MISMATCH
    return DataBinding.OPAQUE


# -- verification against quoted PCRs --------------------------------------------------

@dataclass(frozen=True, slots=True)
class PcrDifference:
    """One PCR whose replay differs from the quoted value (or cannot be replayed)."""

    bank: HashAlgorithm
    pcr: int
    quoted: bytes
    replayed: bytes | None
    suspects: tuple[int, ...] = ()
    """Numbers of the events of this PCR whose data does not hash to their digest."""

    def __str__(self) -> str:
        got = "no value (an event lacks this bank)" if self.replayed is None \
            else self.replayed.hex()
        s = (f"{self.bank.kernel_name} PCR {self.pcr}: quoted {self.quoted.hex()}, "
             f"log replays to {got}")
        if self.suspects:
            s += f"; event(s) {', '.join(map(str, self.suspects))} changed"
        return s


@dataclass(frozen=True, slots=True)
class VerifiedEventLog:
    """The part of a log that replays to quoted PCR values.

    ``events`` are the log's extending events on ``verified_pcrs`` only; ``pcrs`` the PCR
    values they replay to, carrying the :class:`~imasim.tpm.pcrs.PcrSource` of the values
    they were checked against (``authenticated`` only when those came from a verified
    quote). Events on other PCRs are in ``unverified``: nothing vouches for them.
    """

    log: EventLog
    pcrs: PcrBanks
    verified_pcrs: frozenset[int]
    events: tuple[Event, ...]
    unverified: tuple[Event, ...]
    locality: int

    @property
    def authenticated(self) -> bool:
        return self.pcrs.authenticated

    @property
    def banks(self) -> tuple[HashAlgorithm, ...]:
        return tuple(self.pcrs)

    def binding(self, event: Event) -> DataBinding:
        """:func:`data_binding` of a verified event in every verified bank (worst wins)."""
        worst = DataBinding.OPAQUE
        for b in self.pcrs:
            r = data_binding(event, b)
            if r is DataBinding.MISMATCH:
                return r
            if r is DataBinding.BOUND:
                worst = r
        return worst


def verify_eventlog(log: EventLog, pcrs: PcrBanks, *,
                    pcr_indices: Iterable[int] | None = None) -> VerifiedEventLog:
    """Check ``log`` against ``pcrs`` (from a verified quote) and keep what they vouch for.

    Every bank both hold is replayed; every PCR of ``pcrs`` that is a firmware PCR (0-9)
    or that the log extends (or only those in ``pcr_indices``) must match in every such
    bank, else :class:`~imasim.errors.PcrMismatchError` lists the :class:`PcrDifference`
    of each. A PCR is verified when every shared bank holding it matched.
    """
    if not isinstance(pcrs, PcrBanks):
        raise UsageError("verify_eventlog takes PcrBanks (VerifiedQuote.pcrs, or "
                         "PcrBanks.unauthenticated(...) for values read without a quote)")
    shared = [b for b in log.banks if b in pcrs]
    if not shared:
        raise VerificationError(
            "the log and the PCR values share no bank (log: "
            f"{', '.join(b.kernel_name for b in log.banks) or 'none'}; PCRs: "
            f"{', '.join(b.kernel_name for b in pcrs) or 'none'})")
    r = replay(log, shared)
    wanted = (FIRMWARE_PCRS | r.extended) if pcr_indices is None else frozenset(pcr_indices)
    diffs: list[PcrDifference] = []
    checked: dict[int, bool] = {}
    values: dict[HashAlgorithm, dict[int, bytes]] = {}
    for b in shared:
        for idx, quoted in pcrs[b].items():
            if idx not in wanted:
                continue
            got = r.value(b, idx)
            if got == quoted:
                checked.setdefault(idx, True)
                values.setdefault(b, {})[idx] = quoted
                continue
            checked[idx] = False
            suspects = tuple(e.number for e in log.measurements
                             if e.pcr == idx and data_binding(e, b) is DataBinding.MISMATCH)
            diffs.append(PcrDifference(b, idx, quoted, got, suspects))
    if diffs:
        raise PcrMismatchError(
            "the event log does not replay to the PCR values: "
            + "; ".join(str(d) for d in diffs), tuple(diffs))
    verified = frozenset(i for i, ok in checked.items() if ok)
    extending = [e for e in log.measurements if e.event_type != EventType.EV_NO_ACTION]
    return VerifiedEventLog(
        log=log,
        pcrs=PcrBanks(values, source=pcrs.source),
        verified_pcrs=verified,
        events=tuple(e for e in extending if e.pcr in verified),
        unverified=tuple(e for e in extending if e.pcr not in verified),
        locality=r.locality,
    )
