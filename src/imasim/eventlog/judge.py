"""Measured-boot judgement: what a verified log says about the boot, against a reference state.

:func:`boot_state` reads a :class:`~imasim.eventlog.replay.VerifiedEventLog` and uses an
event's data only when the event's PCR was verified *and* its data hashes to its digest
(:class:`~imasim.eventlog.replay.DataBinding`); anything else is left unknown, never
assumed. :func:`judge` compares that state with a :class:`ReferenceState` (Secure Boot
expected on, allowed PK/KEK/db signers, dbx entries that must be present, allowed
boot-application Authenticode digests, initrd digests, the kernel command line) and gives
a :class:`Verdict` with one :class:`Reason` per failed expectation.
:meth:`ReferenceState.from_keylime` reads Keylime's measured-boot reference state.

>>> from imasim.algorithms import HashAlgorithm as H
>>> from imasim.eventlog.simulate import UefiBoot, ovmf_log
>>> from imasim.eventlog.replay import replay, verify_eventlog
>>> from imasim.tpm.pcrs import PcrBanks
>>> log = ovmf_log([H.SHA256], UefiBoot(secure_boot=False))
>>> v = verify_eventlog(log, PcrBanks.unauthenticated(replay(log).values))
>>> verdict = judge(v, ReferenceState(secure_boot=True))
>>> verdict.ok, [r.code for r in verdict.reasons]
(False, ['secure_boot_off', 'unauthenticated'])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..algorithms import HashAlgorithm
from ..errors import ImasimError, ParseError
from .codec import Event, EventType
from .replay import DataBinding, VerifiedEventLog
from .uefi import (
    EFI_CERT_SHA256_GUID,
    Guid,
    SignatureData,
    SignatureList,
    parse_image_load,
    parse_signature_data,
    parse_signature_lists,
    parse_variable_data,
)

__all__ = [
    "LINUX_INITRD_TAG",
    "LINUX_LOAD_OPTIONS_TAG",
    "BootApplication",
    "MeasuredBootState",
    "Reason",
    "ReferenceState",
    "Verdict",
    "boot_state",
    "judge",
    "load_options_digest",
]

LINUX_INITRD_TAG = 0x8F3B22EC
"""EV_EVENT_TAG id of the Linux EFI stub's initrd measurement (PCR 9)."""
LINUX_LOAD_OPTIONS_TAG = 0x8F3B22ED
"""EV_EVENT_TAG id of the Linux EFI stub's LOADED_IMAGE::LoadOptions measurement (PCR 9)."""

_APPS = (EventType.EV_EFI_BOOT_SERVICES_APPLICATION,)


def load_options_digest(cmdline: str, alg: HashAlgorithm = HashAlgorithm.SHA256) -> bytes:
    """The digest the EFI stub extends for a command line (UTF-16LE with its NUL)."""
    return alg.hash(cmdline.encode("utf-16-le") + b"\x00\x00")


@dataclass(frozen=True, slots=True)
class BootApplication:
    """An EV_EFI_BOOT_SERVICES_APPLICATION: its digests (Authenticode) and file path."""

    event: int
    path: str | None
    digests: Mapping[HashAlgorithm, bytes]


@dataclass(frozen=True, slots=True)
class MeasuredBootState:
    """What the verified part of a log says; None where the log does not tell (or lies)."""

    authenticated: bool
    secure_boot: bool | None
    pk: tuple[SignatureList, ...] | None
    kek: tuple[SignatureList, ...] | None
    db: tuple[SignatureList, ...] | None
    dbx: tuple[SignatureList, ...] | None
    authorities: tuple[SignatureData, ...]
    applications: tuple[BootApplication, ...]
    load_options: Mapping[HashAlgorithm, bytes] | None
    initrd: Mapping[HashAlgorithm, bytes] | None
    grub_cmdline: str | None
    changed_events: tuple[int, ...]
    """Verified-PCR events whose data does not hash to their digest (tampered data)."""
    pcr7_verified: bool = False
    s_crtm: tuple[Mapping[HashAlgorithm, bytes], ...] | None = None
    """Digests of the EV_S_CRTM_VERSION events (None when PCR 0 is not verified)."""
    platform_firmware: tuple[Mapping[HashAlgorithm, bytes], ...] | None = None
    """Digests of the EV_EFI_PLATFORM_FIRMWARE_BLOB(2) events in PCR 0, in log order."""


def _digests(ev: Event, banks: Iterable[HashAlgorithm]) -> dict[HashAlgorithm, bytes]:
    out = {}
    for b in banks:
        d = ev.digest(b)
        if d is not None:
            out[b] = d
    return out


def boot_state(v: VerifiedEventLog) -> MeasuredBootState:
    """Read the Secure Boot variables, authorities, boot applications and PCR 9 events."""
    banks = v.banks
    sb: bool | None = None
    lists: dict[str, tuple[SignatureList, ...]] = {}
    authorities: list[SignatureData] = []
    apps: list[BootApplication] = []
    load_options: dict[HashAlgorithm, bytes] | None = None
    initrd: dict[HashAlgorithm, bytes] | None = None
    grub_cmdline: str | None = None
    changed: list[int] = []
    scrtm: list[Mapping[HashAlgorithm, bytes]] = []
    blobs: list[Mapping[HashAlgorithm, bytes]] = []
    for ev in v.events:
        binding = v.binding(ev)
        if binding is DataBinding.MISMATCH:
            changed.append(ev.number)
            continue
        et = ev.event_type
        if ev.pcr == 0 and et == EventType.EV_S_CRTM_VERSION:
            scrtm.append(_digests(ev, banks))
        elif ev.pcr == 0 and et in (EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB,
                                    EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2):
            blobs.append(_digests(ev, banks))
        try:
            if et == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG and ev.pcr == 7:
                var = parse_variable_data(ev.data)
                if var.name == "SecureBoot":
                    sb = var.data[:1] not in (b"", b"\x00")
                elif var.name in ("PK", "KEK", "db", "dbx"):
                    lists[var.name] = parse_signature_lists(var.data)
            elif et == EventType.EV_EFI_VARIABLE_AUTHORITY and ev.pcr == 7:
                var = parse_variable_data(ev.data)
                if var.name in ("db", "Shim", "MokList"):
                    authorities.append(parse_signature_data(var.data))
            elif et in _APPS:
                img = parse_image_load(ev.data)
                apps.append(BootApplication(ev.number, img.file_path(), _digests(ev, banks)))
            elif et == EventType.EV_EVENT_TAG and ev.pcr == 9 and len(ev.data) >= 8:
                tag = int.from_bytes(ev.data[:4], "little")
                if tag == LINUX_INITRD_TAG:
                    initrd = _digests(ev, banks)
                elif tag == LINUX_LOAD_OPTIONS_TAG:
                    load_options = _digests(ev, banks)
            elif et == EventType.EV_IPL and ev.pcr == 8 and binding is DataBinding.BOUND:
                text = ev.data.rstrip(b"\x00").decode("utf-8", "replace")
                if text.startswith("kernel_cmdline: "):
                    grub_cmdline = text.removeprefix("kernel_cmdline: ")
        except ImasimError:
            changed.append(ev.number)
    pcr7 = 7 in v.verified_pcrs
    return MeasuredBootState(
        authenticated=v.authenticated, secure_boot=sb if pcr7 else None,
        pk=lists.get("PK"), kek=lists.get("KEK"), db=lists.get("db"), dbx=lists.get("dbx"),
        authorities=tuple(authorities), applications=tuple(apps),
        load_options=load_options, initrd=initrd, grub_cmdline=grub_cmdline,
        changed_events=tuple(changed), pcr7_verified=pcr7,
        s_crtm=tuple(scrtm) if 0 in v.verified_pcrs else None,
        platform_firmware=tuple(blobs) if 0 in v.verified_pcrs else None)


@dataclass(frozen=True, slots=True)
class Reason:
    """One failed expectation: a stable ``code`` and a sentence."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement: ``ok`` when no reason was found; the state it was read from."""

    ok: bool
    reasons: tuple[Reason, ...]
    state: MeasuredBootState

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {"ok": self.ok,
                "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
                "secure_boot": s.secure_boot, "authenticated": s.authenticated,
                "boot_applications": [{"event": a.event, "path": a.path,
                                       "sha256": (a.digests.get(HashAlgorithm.SHA256) or b"").hex()}
                                      for a in s.applications],
                "changed_events": list(s.changed_events)}


def _sig_entries(lists: tuple[SignatureList, ...] | None) -> set[tuple[str, bytes]]:
    return {(str(sd.owner), sd.data) for sl in lists or () for sd in sl.signatures}


@dataclass(frozen=True, slots=True)
class ReferenceState:
    """The expected measured boot. None (or empty) means "not checked".

    ``pk``/``kek``/``db``: the allowed (owner GUID, signature data) entries (every measured
    entry must be one, as Keylime's ``KeySubset``);
    ``dbx_required``: entries dbx must contain (revocations that must be present);
    ``boot_digests``: allowed SHA-256 Authenticode digests of every boot application;
    ``initrd_digests``: allowed SHA-256 digests of the initrd; ``kernel_cmdline``: a
    regular expression the whole command line must match (checked against GRUB's
    ``kernel_cmdline:`` text, or ``cmdline_exact`` against the EFI stub's LoadOptions
    digest); ``require_authenticated``: the PCRs must come from a verified quote.
    """

    secure_boot: bool | None = None
    pk: frozenset[tuple[str, bytes]] | None = None
    kek: frozenset[tuple[str, bytes]] | None = None
    db: frozenset[tuple[str, bytes]] | None = None
    dbx_required: frozenset[tuple[str, bytes]] = field(default_factory=frozenset)
    boot_digests: frozenset[bytes] | None = None
    initrd_digests: frozenset[bytes] | None = None
    kernel_cmdline: str | None = None
    cmdline_exact: str | None = None
    require_authenticated: bool = True
    scrtm_and_bios: tuple[tuple[Mapping[HashAlgorithm, bytes],
                                tuple[Mapping[HashAlgorithm, bytes], ...]], ...] | None = None
    """Allowed (S-CRTM version digest, platform firmware blob digests in order) pairs."""

    @classmethod
    def from_keylime(cls, doc: Mapping[str, Any]) -> ReferenceState:
        """Keylime's measured-boot reference state (``create_mb_refstate`` output).

        Reads ``pk``, ``kek``, ``db`` and ``dbx`` (lists of ``{"SignatureOwner",
        "SignatureData"}``) and ``kernels`` (``shim_authcode_sha256``,
        ``grub_authcode_sha256``, ``kernel_authcode_sha256``, ``initrd_plain_sha256``,
        ``kernel_cmdline``), ``scrtm_and_bios`` and ``has_secureboot`` (Secure Boot is
        expected on without it, as Keylime's example policy does).
        """
        has_sb = bool(doc.get("has_secureboot", True))

        def entries(key: str) -> frozenset[tuple[str, bytes]] | None:
            raw = doc.get(key)
            if raw is None or (not raw and not has_sb and key != "dbx"):
                return None  # Keylime: no Secure Boot and nothing listed, not checked
            try:
                return frozenset((str(Guid.parse(e["SignatureOwner"])),
                                  bytes.fromhex(str(e["SignatureData"]).removeprefix("0x")))
                                 for e in raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise ParseError(f"bad {key} entry in the reference state: {exc}",
                                 field=key) from None

        boot: set[bytes] = set()
        initrd: set[bytes] = set()
        cmdlines: list[str] = []
        kernels = doc.get("kernels") or []
        if not isinstance(kernels, list):
            raise ParseError("kernels must be a list", field="kernels")
        for k in kernels:
            if not isinstance(k, Mapping):
                raise ParseError("a kernels entry must be an object", field="kernels")
            try:
                for name in ("shim_authcode_sha256", "grub_authcode_sha256",
                             "kernel_authcode_sha256"):
                    if name in k:
                        boot.add(bytes.fromhex(str(k[name]).removeprefix("0x")))
                if "initrd_plain_sha256" in k:
                    initrd.add(bytes.fromhex(str(k["initrd_plain_sha256"]).removeprefix("0x")))
            except ValueError as exc:
                raise ParseError(f"bad digest in kernels: {exc}", field="kernels") from None
            if "kernel_cmdline" in k:
                cmdlines.append(str(k["kernel_cmdline"]))
        def digest(d: Any) -> dict[HashAlgorithm, bytes]:
            if not isinstance(d, Mapping):
                raise ParseError("a digest must be an object {alg: 0xhex}",
                                 field="scrtm_and_bios")
            try:
                return {HashAlgorithm.from_name(a): bytes.fromhex(str(h).removeprefix("0x"))
                        for a, h in d.items()}
            except (ValueError, ImasimError) as exc:
                raise ParseError(f"bad digest {d!r}: {exc}", field="scrtm_and_bios") from None

        sab = doc.get("scrtm_and_bios")
        allowed_sab = None
        if sab is not None:
            if not isinstance(sab, list) or not all(isinstance(x, Mapping) for x in sab):
                raise ParseError("scrtm_and_bios must be a list of objects",
                                 field="scrtm_and_bios")
            try:
                allowed_sab = tuple((digest(x["scrtm"]),
                                     tuple(digest(p) for p in x["platform_firmware"]))
                                    for x in sab)
            except (KeyError, TypeError) as exc:
                raise ParseError(f"bad scrtm_and_bios entry: {exc}",
                                 field="scrtm_and_bios") from None
        return cls(secure_boot=has_sb,
                   scrtm_and_bios=allowed_sab, pk=entries("pk"), kek=entries("kek"),
                   db=entries("db"),
                   dbx_required=entries("dbx") or frozenset(),
                   boot_digests=frozenset(boot) if boot else None,
                   initrd_digests=frozenset(initrd) if initrd else None,
                   kernel_cmdline="|".join(f"(?:{c})" for c in cmdlines) if cmdlines else None)


def _same(got: tuple[Mapping[HashAlgorithm, bytes], ...],
          want: tuple[Mapping[HashAlgorithm, bytes], ...]) -> bool:
    """Same length, and each digest equal in every algorithm both name (at least one)."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        common = [a for a in w if a in g]
        if not common or any(g[a] != w[a] for a in common):
            return False
    return True


def judge(v: VerifiedEventLog, ref: ReferenceState) -> Verdict:
    """Judge a verified log against ``ref``; every failed expectation is a :class:`Reason`."""
    s = boot_state(v)
    reasons: list[Reason] = []

    def fail(code: str, message: str) -> None:
        reasons.append(Reason(code, message))

    for n in s.changed_events:
        fail("event_changed", f"event {n}: its data does not hash to its digest")
    if ref.scrtm_and_bios is not None:
        if s.s_crtm is None or s.platform_firmware is None:
            fail("firmware_unknown", "PCR 0 is not verified")
        elif not any(_same(s.s_crtm, (scrtm,)) and _same(s.platform_firmware, blobs)
                     for scrtm, blobs in ref.scrtm_and_bios):
            fail("firmware_differs", "the S-CRTM version or the platform firmware blobs "
                 "measured in PCR 0 are not an allowed pair")
    if ref.secure_boot is not None:
        if s.secure_boot is None:
            fail("secure_boot_unknown", "PCR 7 is not verified or SecureBoot was not measured")
        elif s.secure_boot != ref.secure_boot:
            fail("secure_boot_off" if ref.secure_boot else "secure_boot_on",
                 f"Secure Boot is {'on' if s.secure_boot else 'off'}")
    for name, want, got in (("PK", ref.pk, s.pk), ("KEK", ref.kek, s.kek), ("db", ref.db, s.db)):
        if want is None:
            continue
        if got is None or not s.pcr7_verified:
            fail(f"{name.lower()}_unknown", f"{name} was not measured in a verified PCR 7")
        elif not _sig_entries(got) <= set(want):
            extra = len(_sig_entries(got) - set(want))
            fail(f"{name.lower()}_differs",
                 f"{name} holds {extra} entr{'y' if extra == 1 else 'ies'} the reference "
                 "does not allow")
    if ref.dbx_required:
        if s.dbx is None or not s.pcr7_verified:
            fail("dbx_unknown", "dbx was not measured in a verified PCR 7")
        else:
            missing_dbx = set(ref.dbx_required) - _sig_entries(s.dbx)
            if missing_dbx:
                fail("dbx_missing", f"dbx lacks {len(missing_dbx)} required revocation(s)")
    if ref.boot_digests is not None:
        if not s.applications:
            fail("no_boot_application", "no verified EV_EFI_BOOT_SERVICES_APPLICATION")
        for app in s.applications:
            d = app.digests.get(HashAlgorithm.SHA256)
            if d is None or d not in ref.boot_digests:
                fail("boot_application_unknown",
                     f"event {app.event}: boot application {app.path or '?'} has a digest "
                     f"not in the reference ({(d or b'').hex()})")
    if ref.initrd_digests is not None:
        got_initrd = (s.initrd or {}).get(HashAlgorithm.SHA256)
        if got_initrd is None or got_initrd not in ref.initrd_digests:
            fail("initrd_unknown", "the initrd measured in PCR 9 is not in the reference")
    if ref.cmdline_exact is not None:
        want_lo = load_options_digest(ref.cmdline_exact)
        if (s.load_options or {}).get(HashAlgorithm.SHA256) != want_lo and \
                s.grub_cmdline != ref.cmdline_exact:
            fail("cmdline_differs", "the kernel command line is not the expected one")
    if ref.kernel_cmdline is not None:
        if s.grub_cmdline is None:
            fail("cmdline_unknown", "no verified kernel_cmdline text (GRUB, PCR 8)")
        elif not re.fullmatch(ref.kernel_cmdline, s.grub_cmdline):
            fail("cmdline_differs", f"kernel command line {s.grub_cmdline!r} does not match")
    if ref.require_authenticated and not s.authenticated:
        fail("unauthenticated", "the PCR values come from no verified quote")
    # a Secure Boot dbx hit: an application whose digest dbx revokes
    for app in s.applications:
        d = app.digests.get(HashAlgorithm.SHA256)
        if d is not None and s.dbx is not None and any(
                sl.signature_type == EFI_CERT_SHA256_GUID and sd.data == d
                for sl in s.dbx for sd in sl.signatures):
            fail("boot_application_revoked", f"event {app.event}: its digest is in dbx")
    return Verdict(not reasons, tuple(reasons), s)
