"""Firmware-like event logs for the simulated machine: SeaBIOS-like and OVMF-like.

The event sequences follow the real captures in tests/vectors/realkernel (SeaBIOS 1.16
and OVMF 2022.11 under qemu): the same event types, PCRs and data layouts, with the
measured objects given by the caller (the machine's keys in PK/KEK/db/dbx, the images it
boots, hashed with their Authenticode digest as OVMF's DxeTpm2MeasureBootLib does, the
initrd and command line as the Linux EFI stub measures them in PCR 9). Pure functions:
they return an :class:`~imasim.eventlog.codec.EventLog` whose replay is what
:func:`apply_log` extends into a TPM.

>>> from imasim.algorithms import HashAlgorithm as H
>>> log = seabios_log([H.SHA1, H.SHA256])
>>> [e.type_name for e in log.measurements][:2]
['EV_EVENT_TAG', 'EV_ACTION']
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..algorithms import HashAlgorithm
from ..errors import UsageError
from ..sig.authenticode import authenticode_digest
from .codec import EventLog, EventSpec, EventType
from .judge import LINUX_INITRD_TAG, LINUX_LOAD_OPTIONS_TAG
from .uefi import (
    EFI_CERT_SHA256_GUID,
    EFI_CERT_X509_GUID,
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE_GUID,
    Guid,
    ImageLoadEvent,
    SignatureData,
    SignatureList,
    VariableData,
    encode_signature_lists,
)

if TYPE_CHECKING:
    from ..tpm.soft_tpm import SoftTpm

__all__ = [
    "FLAVOURS",
    "IMASIM_OWNER",
    "BootImage",
    "SimulatedFirmware",
    "UefiBoot",
    "apply_log",
    "firmware_log",
    "legacy_log",
    "ovmf_log",
    "seabios_log",
]

IMASIM_OWNER = Guid.parse("8be4df61-93ca-11d2-aa0d-00e098032b8c")
"""The SignatureOwner of the entries the simulation enrols (EFI_GLOBAL_VARIABLE)."""


@dataclass(frozen=True, slots=True)
class BootImage:
    """A PE image the firmware (or shim) starts, with the path its device path names."""

    path: str
    image: bytes

    def digests(self, banks: Sequence[HashAlgorithm]) -> dict[HashAlgorithm, bytes]:
        """The Authenticode digest in each bank (what OVMF extends into PCR 4)."""
        return {b: authenticode_digest(self.image, b) for b in banks}


@dataclass(frozen=True, slots=True)
class UefiBoot:
    """What an OVMF-like firmware measures: Secure Boot variables, images, PCR 9 objects.

    ``pk``/``kek``/``db`` are DER certificates; ``dbx`` SHA-256 digests; ``images`` are
    started in order (shim, GRUB, the kernel) and, with Secure Boot on, each is preceded by
    an EV_EFI_VARIABLE_AUTHORITY naming ``authority`` (the db certificate that verified it,
    once per distinct authority as EDK2 does). ``cmdline`` and ``initrd`` are what the
    Linux EFI stub measures (LOADED_IMAGE::LoadOptions and the initrd, EV_EVENT_TAG).
    """

    secure_boot: bool = True
    pk: tuple[bytes, ...] = ()
    kek: tuple[bytes, ...] = ()
    db: tuple[bytes, ...] = ()
    dbx: tuple[bytes, ...] = ()
    images: tuple[BootImage, ...] = ()
    authority: bytes | None = None
    cmdline: str | None = None
    initrd: bytes | None = None


def _var(name: str, vendor: Guid, value: bytes) -> bytes:
    return VariableData(vendor, name, value).encode()


def _certs(ders: Sequence[bytes]) -> bytes:
    return encode_signature_lists([SignatureList.of(EFI_CERT_X509_GUID, IMASIM_OWNER, [d])
                                   for d in ders])


def _file_path(path: str) -> bytes:
    """A device path: one media file-path node and the end node."""
    text = path.replace("/", "\\").encode("utf-16-le") + b"\x00\x00"
    return struct.pack("<BBH", 4, 4, 4 + len(text)) + text + b"\x7f\xff\x04\x00"


def _tag(tag: int, description: bytes) -> bytes:
    return struct.pack("<II", tag, len(description)) + description


def legacy_log(banks: Sequence[HashAlgorithm]) -> EventLog:
    """The machine's historical firmware: one EV_ACTION per PCR 0-7 ("imasim firmware
    measurement N"), digests over the text (the PCR values imasim always gave)."""
    return EventLog.build(banks, [(p, EventType.EV_ACTION,
                                   f"imasim firmware measurement {p}".encode())
                                  for p in range(8)])


def seabios_log(banks: Sequence[HashAlgorithm], *, smbios: bytes = b"imasim SMBIOS",
                option_roms: Sequence[bytes] = (b"imasim vga rom",)) -> EventLog:
    """A SeaBIOS-like log (qemu's default BIOS, direct kernel boot), as in the captures.

    PCR 1 the SMBIOS tables (EV_EVENT_TAG 1), PCR 2 "Start Option ROM Scan" and one
    EV_EVENT_TAG 7 per option ROM, PCR 4 "Calling INT 19h", separators 0xffffffff in
    PCR 0-7 (SeaBIOS's separator value).
    """
    ev: list[EventSpec] = [(1, EventType.EV_EVENT_TAG, _tag(1, b"\x13" * 20), smbios),
                           (2, EventType.EV_ACTION, b"Start Option ROM Scan")]
    for rom in option_roms:
        ev.append((2, EventType.EV_EVENT_TAG, _tag(7, struct.pack("<Q", 0) + b"\x00" * 16),
                   rom))
    ev.append((4, EventType.EV_ACTION, b"Calling INT 19h"))
    ev.extend((p, EventType.EV_SEPARATOR, b"\xff\xff\xff\xff") for p in range(8))
    return EventLog.build(banks, ev)


def ovmf_log(banks: Sequence[HashAlgorithm], boot: UefiBoot) -> EventLog:
    """An OVMF-like UEFI log of ``boot`` (order and layouts of OVMF 2022.11's log)."""
    ev: list[EventSpec] = [
        (0, EventType.EV_S_CRTM_VERSION, b"\x00\x00"),
        (0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB, struct.pack("<QQ", 0x820000, 0xE0000),
         b"imasim firmware volume PEIFV"),
        (0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB, struct.pack("<QQ", 0x900000, 0xC00000),
         b"imasim firmware volume DXEFV"),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         _var("SecureBoot", EFI_GLOBAL_VARIABLE, b"\x01" if boot.secure_boot else b"\x00")),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         _var("PK", EFI_GLOBAL_VARIABLE, _certs(boot.pk))),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         _var("KEK", EFI_GLOBAL_VARIABLE, _certs(boot.kek))),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         _var("db", EFI_IMAGE_SECURITY_DATABASE_GUID, _certs(boot.db))),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         _var("dbx", EFI_IMAGE_SECURITY_DATABASE_GUID,
              SignatureList.of(EFI_CERT_SHA256_GUID, IMASIM_OWNER, list(boot.dbx)).encode()
              if boot.dbx else b"")),
        (7, EventType.EV_SEPARATOR, bytes(4)),
    ]
    boot_order = struct.pack("<H", 0)
    option = (struct.pack("<IH", 1, 4) + "imasim".encode("utf-16-le") + b"\x00\x00"
              + b"\x7f\xff\x04\x00")
    ev.append((1, EventType.EV_EFI_VARIABLE_BOOT, _var("BootOrder", EFI_GLOBAL_VARIABLE,
                                                       boot_order), boot_order))
    ev.append((1, EventType.EV_EFI_VARIABLE_BOOT, _var("Boot0000", EFI_GLOBAL_VARIABLE, option),
               option))
    ev.append((4, EventType.EV_EFI_ACTION, b"Calling EFI Application from Boot Option"))
    ev.extend((p, EventType.EV_SEPARATOR, bytes(4)) for p in range(7))
    seen_authority = False
    for n, img in enumerate(boot.images):
        if boot.secure_boot and boot.authority is not None and not seen_authority:
            sd = SignatureData(IMASIM_OWNER, boot.authority).encode()
            ev.append((7, EventType.EV_EFI_VARIABLE_AUTHORITY,
                       _var("db", EFI_IMAGE_SECURITY_DATABASE_GUID, sd)))
            seen_authority = True
        load = ImageLoadEvent(0x7C000000 + n * 0x1000000, len(img.image), 0,
                              _file_path(img.path))
        ev.append((4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, load.encode(),
                   img.digests(banks)))
    if boot.cmdline is not None:
        ev.append((9, EventType.EV_EVENT_TAG,
                   _tag(LINUX_LOAD_OPTIONS_TAG, b"LOADED_IMAGE::LoadOptions\x00"),
                   boot.cmdline.encode("utf-16-le") + b"\x00\x00"))
    if boot.initrd is not None:
        ev.append((9, EventType.EV_EVENT_TAG, _tag(LINUX_INITRD_TAG, b"Linux initrd\x00"),
                   boot.initrd))
    ev.append((5, EventType.EV_EFI_ACTION, b"Exit Boot Services Invocation"))
    ev.append((5, EventType.EV_EFI_ACTION, b"Exit Boot Services Returned with Success"))
    return EventLog.build(banks, ev)


def apply_log(tpm: SoftTpm, log: EventLog) -> None:
    """Extend every measurement of ``log`` into ``tpm`` (a SoftTpm), bank by bank.

    Every bank of the TPM must have digests in the log (a real firmware extends them all).
    """
    banks = tpm.banks
    for ev in log.measurements:
        if ev.event_type == EventType.EV_NO_ACTION:
            continue
        digests = {}
        for b in banks:
            d = ev.digest(b)
            if d is None:
                raise UsageError(f"event {ev.number} has no {b.kernel_name} digest")
            digests[b] = d
        tpm.extend(ev.pcr, digests)


FLAVOURS = ("legacy", "seabios", "ovmf")
"""The firmware flavours :func:`firmware_log` knows."""


def firmware_log(flavour: str, banks: Sequence[HashAlgorithm], *,
                 uefi: UefiBoot | None = None, secure_boot: bool = False) -> EventLog:
    """The log of one firmware flavour (what the machine's firmware measures at power-on).

    ``legacy`` is imasim's historical 8-event firmware (the PCR 0-7 values machines always
    had), ``seabios`` the SeaBIOS-like log, ``ovmf`` the OVMF-like one of ``uefi`` (by
    default a boot with no keys, Secure Boot as ``secure_boot`` says).
    """
    if flavour == "legacy":
        return legacy_log(banks)
    if flavour == "seabios":
        return seabios_log(banks)
    if flavour == "ovmf":
        return ovmf_log(banks, uefi if uefi is not None else UefiBoot(secure_boot=secure_boot))
    raise UsageError(f"unknown firmware {flavour!r} (one of {', '.join(FLAVOURS)})")


@dataclass(frozen=True, slots=True)
class SimulatedFirmware:
    """A firmware for :meth:`imasim.machine.Machine.create` (``firmware=``) that writes a log.

    Calling it with a TPM extends the replay of :meth:`log` (what
    :func:`imasim.kernel.measure_firmware` does without a log); ``Machine.firmware_log``
    is :meth:`log` of the machine's banks. ``legacy`` gives the PCR values of imasim's
    default firmware.
    """

    flavour: str = "legacy"
    uefi: UefiBoot | None = None
    secure_boot: bool = False

    def log(self, banks: Sequence[HashAlgorithm]) -> EventLog:
        """The log this firmware writes on a TPM with ``banks``."""
        return firmware_log(self.flavour, banks, uefi=self.uefi, secure_boot=self.secure_boot)

    def __call__(self, tpm: SoftTpm, /) -> None:
        apply_log(tpm, self.log(tpm.banks))
