"""The firmware log as one input of an attestation: verify it, then judge the boot.

:func:`check_firmware_log` is what :func:`imasim.attest.attest` calls with the PCR values
its verdict rests on (a verified quote's, or unauthenticated ones): it never raises for a
failed check, every outcome is in the :class:`FirmwareLogCheck`.

>>> from imasim.algorithms import HashAlgorithm as H
>>> from imasim.eventlog.simulate import seabios_log
>>> from imasim.eventlog.replay import replay
>>> from imasim.tpm.pcrs import PcrBanks
>>> log = seabios_log([H.SHA256])
>>> good = PcrBanks.unauthenticated(replay(log).values)
>>> check_firmware_log(log, good).ok
True
>>> bad = PcrBanks.unauthenticated({H.SHA256: {0: bytes(32)}})
>>> c = check_firmware_log(log, bad)
>>> c.ok, c.error.startswith("PcrMismatchError")
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import VerificationError
from ..tpm.pcrs import PcrBanks
from .codec import EventLog
from .judge import ReferenceState, Verdict, judge
from .replay import VerifiedEventLog, verify_eventlog

__all__ = ["FirmwareLogCheck", "check_firmware_log"]


@dataclass(frozen=True, slots=True)
class FirmwareLogCheck:
    """The firmware log's part of an attestation report."""

    verified: VerifiedEventLog | None
    error: str | None
    verdict: Verdict | None

    @property
    def ok(self) -> bool:
        """The log replays to the PCR values and (with a reference state) the boot is as
        expected."""
        return self.verified is not None and (self.verdict is None or self.verdict.ok)

    def to_dict(self) -> dict[str, Any]:
        v = self.verified
        return {"ok": self.ok, "error": self.error,
                "verified_pcrs": None if v is None else sorted(v.verified_pcrs),
                "events": None if v is None else len(v.events),
                "unverified_events": None if v is None else len(v.unverified),
                "measured_boot": None if self.verdict is None else self.verdict.to_dict()}

    def summary(self) -> str:
        if self.verified is None:
            return f"firmware event log: does NOT replay to the PCRs: {self.error}"
        pcrs = ",".join(map(str, sorted(self.verified.verified_pcrs)))
        line = (f"firmware event log: replays to PCR {pcrs} "
                f"({len(self.verified.events)} events)")
        if self.verdict is not None:
            line += "; measured boot " + ("as expected" if self.verdict.ok else "REJECTED: "
                                          + "; ".join(r.message for r in self.verdict.reasons))
        return line


def check_firmware_log(log: EventLog, pcrs: PcrBanks,
                       reference: ReferenceState | None = None) -> FirmwareLogCheck:
    """Verify ``log`` against ``pcrs`` and, with ``reference``, judge the boot.

    Whether the PCR values are authenticated is the caller's verdict (attest's TRUSTED
    against CONSISTENT), so the judgement here does not repeat it.
    """
    try:
        v = verify_eventlog(log, pcrs)
    except VerificationError as exc:
        return FirmwareLogCheck(None, f"{type(exc).__name__}: {exc}", None)
    verdict = None
    if reference is not None:
        verdict = judge(v, replace(reference, require_authenticated=False))
    return FirmwareLogCheck(v, None, verdict)
