"""The firmware's TCG event log: the SHA-1 format and the crypto-agile one, byte for byte.

A log is what ``/sys/kernel/security/tpm0/binary_bios_measurements`` holds: a sequence of
``TCG_PCR_EVENT`` records (``u32 pcr | u32 type | 20-byte SHA-1 digest | u32 size | data``)
or, when the first record is the ``Spec ID Event03`` header, that header followed by
``TCG_PCR_EVENT2`` records (``u32 pcr | u32 type | u32 count | count x (u16 alg | digest) |
u32 size | data``) whose digest sizes come from the header (TCG PC Client Platform Firmware
Profile, section 10; the kernel's ``include/linux/tpm_eventlog.h``).

Parsing is bounded: every length is checked against the bytes that remain, a digest count
above the header's number of algorithms or an algorithm the header does not list is a
:class:`~imasim.errors.ParseError` with the byte offset (as the kernel refuses such an
event), and :meth:`EventLog.encode` gives back the input byte for byte.

>>> from imasim.eventlog import EventLog
>>> from imasim.algorithms import HashAlgorithm as H
>>> log = EventLog.build([H.SHA256], [(0, 0x80000007, b"Calling EFI Application")])
>>> EventLog.parse(log.encode()) == log
True
>>> ev = log.events[1]
>>> ev.type_name, ev.digest(H.SHA256) == H.SHA256.hash(b"Calling EFI Application")
('EV_EFI_ACTION', True)
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .._wire import Reader
from ..algorithms import HashAlgorithm
from ..errors import (
    LimitExceededError,
    ParseError,
    TruncatedError,
    UnsupportedAlgorithmError,
    UsageError,
)
from ..limits import DEFAULT_LIMITS, Limits

__all__ = [
    "SPEC_ID_SIGNATURE",
    "Digest",
    "Event",
    "EventLog",
    "EventSpec",
    "EventType",
    "LogFormat",
    "SpecIdEvent",
    "parse_eventlog",
]

SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
"""The 16-byte signature that makes the first event a crypto-agile log's header."""

_HDR1 = struct.Struct("<II20sI")  # TCG_PCR_EVENT up to eventDataSize
_HDR2 = struct.Struct("<III")  # TCG_PCR_EVENT2 up to digests.count
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_PCR_COUNT = 24  # TPM2_MAX_PCRS on a PC Client TPM (tpm2_eventlog refuses more too)


class EventType(enum.IntEnum):
    """Event types of the TCG PC Client Platform Firmware Profile (as tpm2_eventlog names them)."""

    EV_PREBOOT_CERT = 0x0
    EV_POST_CODE = 0x1
    EV_UNUSED = 0x2
    EV_NO_ACTION = 0x3
    EV_SEPARATOR = 0x4
    EV_ACTION = 0x5
    EV_EVENT_TAG = 0x6
    EV_S_CRTM_CONTENTS = 0x7
    EV_S_CRTM_VERSION = 0x8
    EV_CPU_MICROCODE = 0x9
    EV_PLATFORM_CONFIG_FLAGS = 0xA
    EV_TABLE_OF_DEVICES = 0xB
    EV_COMPACT_HASH = 0xC
    EV_IPL = 0xD
    EV_IPL_PARTITION_DATA = 0xE
    EV_NONHOST_CODE = 0xF
    EV_NONHOST_CONFIG = 0x10
    EV_NONHOST_INFO = 0x11
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x12
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2

    @classmethod
    def name_of(cls, value: int) -> str:
        """The type's name, or ``tpm2_eventlog``'s ``Unknown event type`` for any other."""
        try:
            return cls(value).name
        except ValueError:
            return "Unknown event type"


class LogFormat(enum.Enum):
    """Which of the two event-log formats a log is in."""

    SHA1 = "sha1"
    """TCG 1.2 ``TCG_PCR_EVENT`` records only (SHA-1 digests)."""
    CRYPTO_AGILE = "crypto-agile"
    """A ``Spec ID Event03`` header then ``TCG_PCR_EVENT2`` records (any set of banks)."""


@dataclass(frozen=True, slots=True)
class Digest:
    """One ``TPMT_HA`` of an event: the TPM_ALG_ID as written, and the digest bytes."""

    alg_id: int
    value: bytes

    @property
    def algorithm(self) -> HashAlgorithm | None:
        """The hash algorithm, or None for an id imasim does not know."""
        try:
            return HashAlgorithm.from_tpm_alg_id(self.alg_id)
        except UnsupportedAlgorithmError:
            return None


@dataclass(frozen=True, slots=True)
class SpecIdEvent:
    """The ``TCG_EfiSpecIDEventStruct`` of a crypto-agile log's first event."""

    platform_class: int
    spec_version_minor: int
    spec_version_major: int
    spec_errata: int
    uintn_size: int
    algorithms: tuple[tuple[int, int], ...]
    """``(TPM_ALG_ID, digest size)`` in header order."""
    vendor_info: bytes = b""

    def digest_size(self, alg_id: int) -> int | None:
        for a, size in self.algorithms:
            if a == alg_id:
                return size
        return None

    @property
    def banks(self) -> tuple[HashAlgorithm, ...]:
        """The header's algorithms that imasim knows, in header order."""
        out = []
        for a, _ in self.algorithms:
            try:
                out.append(HashAlgorithm.from_tpm_alg_id(a))
            except UnsupportedAlgorithmError:
                continue
        return tuple(out)

    def encode(self) -> bytes:
        out = bytearray(SPEC_ID_SIGNATURE)
        out += struct.pack("<IBBBBI", self.platform_class, self.spec_version_minor,
                           self.spec_version_major, self.spec_errata, self.uintn_size,
                           len(self.algorithms))
        for a, size in self.algorithms:
            out += struct.pack("<HH", a, size)
        out.append(len(self.vendor_info))
        out += self.vendor_info
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes | memoryview, *, base: int = 0) -> SpecIdEvent:
        r = Reader(data, base=base, path=("Spec ID event",))
        sig = r.take(16, "Signature")
        if sig != SPEC_ID_SIGNATURE:
            raise ParseError("not a crypto-agile log header", offset=base, field="Signature",
                             path=r.path, expected=SPEC_ID_SIGNATURE, actual=sig)
        platform_class = r.u32("platformClass")
        minor, major, errata, uintn = (r.u8(f) for f in (
            "specVersionMinor", "specVersionMajor", "specErrata", "uintnSize"))
        start = r.offset
        n = r.u32("numberOfAlgorithms")
        if n == 0 or 4 * n > r.remaining:
            raise ParseError(f"numberOfAlgorithms {n} does not fit the header", offset=start,
                             field="numberOfAlgorithms", path=r.path,
                             expected=f"1..{r.remaining // 4}", actual=n)
        algs: list[tuple[int, int]] = []
        for _ in range(n):
            off = r.offset
            a, size = r.u16("algorithmId"), r.u16("digestSize")
            if any(a == seen for seen, _ in algs):
                raise ParseError(f"algorithm {a:#06x} listed twice", offset=off,
                                 field="algorithmId", path=r.path)
            known = _known_size(a)
            if known is not None and known != size:
                raise ParseError(f"digestSize {size} for algorithm {a:#06x}", offset=off + 2,
                                 field="digestSize", path=r.path, expected=known, actual=size)
            if size == 0:
                raise ParseError("digestSize 0", offset=off + 2, field="digestSize", path=r.path)
            algs.append((a, size))
        vendor = _vendor(r)
        r.expect_end("Spec ID event")
        return cls(platform_class, minor, major, errata, uintn, tuple(algs), vendor)


def _vendor(r: Reader) -> bytes:
    n = r.u8("vendorInfoSize")
    return r.take(n, "vendorInfo")


def _known_size(alg_id: int) -> int | None:
    try:
        return HashAlgorithm.from_tpm_alg_id(alg_id).digest_size
    except UnsupportedAlgorithmError:
        return None


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a log.

    ``number`` is tpm2_eventlog's EventNum (0 for a crypto-agile log's header); ``offset``
    is where the record starts in the log; ``legacy`` says the record is a ``TCG_PCR_EVENT``
    (every event of a SHA-1 log, and a crypto-agile log's header).
    """

    number: int
    pcr: int
    event_type: int
    digests: tuple[Digest, ...]
    data: bytes
    offset: int = field(default=0, compare=False)
    legacy: bool = False

    @property
    def type_name(self) -> str:
        """The event type as tpm2_eventlog names it."""
        return EventType.name_of(self.event_type)

    def digest(self, alg: HashAlgorithm) -> bytes | None:
        """This event's digest in ``alg``'s bank, or None when it carries none."""
        want = alg.tpm_alg_id
        for d in self.digests:
            if d.alg_id == want:
                return d.value
        return None

    def encode(self) -> bytes:
        if self.legacy:
            (d,) = self.digests
            return _HDR1.pack(self.pcr, self.event_type, d.value, len(self.data)) + self.data
        out = bytearray(_HDR2.pack(self.pcr, self.event_type, len(self.digests)))
        for d in self.digests:
            out += _U16.pack(d.alg_id)
            out += d.value
        out += _U32.pack(len(self.data))
        out += self.data
        return bytes(out)


@dataclass(frozen=True, slots=True)
class EventLog:
    """A parsed event log: its format, the crypto-agile header (or None), every event."""

    format: LogFormat
    spec_id: SpecIdEvent | None
    events: tuple[Event, ...]

    # -- codec ------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, *,
              limits: Limits = DEFAULT_LIMITS) -> EventLog:
        """Parse a whole log (raises ParseError with the byte offset on bad input)."""
        return parse_eventlog(data, limits=limits)

    def encode(self) -> bytes:
        """The log's bytes (equal to the parsed input)."""
        return b"".join(e.encode() for e in self.events)

    # -- views ------------------------------------------------------------------------
    @property
    def banks(self) -> tuple[HashAlgorithm, ...]:
        """The banks the log carries digests for (header order; SHA-1 for a SHA-1 log)."""
        if self.spec_id is None:
            return (HashAlgorithm.SHA1,)
        return self.spec_id.banks

    @property
    def measurements(self) -> tuple[Event, ...]:
        """The events after the crypto-agile header (every event of a SHA-1 log)."""
        return self.events[1:] if self.spec_id is not None else self.events

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, banks: Sequence[HashAlgorithm], events: Iterable[EventSpec], *,
              spec_errata: int = 2, uintn_size: int = 2) -> EventLog:
        """A crypto-agile log over ``banks`` from ``(pcr, type, data[, measured])`` tuples.

        Without ``measured`` each digest is the bank's hash of ``data``; ``measured`` as
        bytes is hashed instead (a file, a command line); as a mapping it gives each bank's
        digest outright (an image's Authenticode digests). EV_NO_ACTION events get zero
        digests. See :mod:`imasim.eventlog.simulate` for firmware-like logs.
        """
        if not banks:
            raise UsageError("a crypto-agile log needs at least one bank")
        spec = SpecIdEvent(0, 0, 2, spec_errata, uintn_size,
                           tuple((_alg_id(b), b.digest_size) for b in banks))
        out = [Event(0, 0, EventType.EV_NO_ACTION, (Digest(0x0004, bytes(20)),),
                     spec.encode(), legacy=True)]
        offset = len(out[0].encode())
        for n, item in enumerate(events, start=1):
            pcr, etype, data = item[0], item[1], bytes(item[2])
            measured = item[3] if len(item) > 3 else None
            digests: list[Digest] = []
            for b in banks:
                if etype == EventType.EV_NO_ACTION:
                    value = bytes(b.digest_size)
                elif measured is None:
                    value = b.hash(data)
                elif isinstance(measured, bytes | bytearray | memoryview):
                    value = b.hash(measured)
                else:
                    value = bytes(measured[b])
                    if len(value) != b.digest_size:
                        raise UsageError(f"{b.kernel_name} digest of event {n} has "
                                         f"{len(value)} bytes")
                digests.append(Digest(_alg_id(b), value))
            ev = Event(n, pcr, etype, tuple(digests), data, offset)
            offset += len(ev.encode())
            out.append(ev)
        return cls(LogFormat.CRYPTO_AGILE, spec, tuple(out))


EventSpec = (tuple[int, int, bytes]
             | tuple[int, int, bytes, bytes | Mapping[HashAlgorithm, bytes] | None])
"""``(pcr, type, data)`` or ``(pcr, type, data, measured)`` for :meth:`EventLog.build`."""


def _alg_id(alg: HashAlgorithm) -> int:
    if alg.tpm_alg_id is None:
        raise UsageError(f"{alg.kernel_name} is not a TPM bank")
    return alg.tpm_alg_id


def parse_eventlog(data: bytes | bytearray | memoryview, *,
                   limits: Limits = DEFAULT_LIMITS) -> EventLog:
    """Parse a SHA-1 or crypto-agile event log (see :class:`EventLog`)."""
    mv = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    buf = bytes(mv)
    end = len(buf)
    if end < _HDR1.size:
        raise TruncatedError(f"an event log needs at least {_HDR1.size} bytes", offset=0,
                         field="TCG_PCR_EVENT", expected=f">= {_HDR1.size}", actual=end)
    pcr, etype, digest, size = _HDR1.unpack_from(buf, 0)
    is_agile = (etype == EventType.EV_NO_ACTION and pcr == 0 and digest == bytes(20)
                and size >= 16 and end >= _HDR1.size + 16
                and buf[_HDR1.size:_HDR1.size + 16] == SPEC_ID_SIGNATURE)
    if not is_agile:
        events = _parse_sha1(buf, 0, end, limits)
        return EventLog(LogFormat.SHA1, None, events)
    if size > end - _HDR1.size:
        raise TruncatedError(f"eventDataSize {size} exceeds the remaining {end - _HDR1.size} bytes",
                         offset=_HDR1.size - 4, field="eventDataSize",
                         path=("event[0]",), expected=f"<= {end - _HDR1.size}", actual=size)
    header_data = buf[_HDR1.size:_HDR1.size + size]
    spec = SpecIdEvent.decode(header_data, base=_HDR1.size)
    header = Event(0, 0, EventType.EV_NO_ACTION, (Digest(0x0004, bytes(20)),), header_data,
                   0, legacy=True)
    rest = _parse_agile(buf, _HDR1.size + size, end, spec, limits)
    return EventLog(LogFormat.CRYPTO_AGILE, spec, (header, *rest))


def _parse_sha1(buf: bytes, pos: int, end: int, limits: Limits) -> tuple[Event, ...]:
    out: list[Event] = []
    unpack = _HDR1.unpack_from
    n = 0
    while pos < end:
        if len(out) >= limits.max_entries:
            raise LimitExceededError(f"more than {limits.max_entries} events", offset=pos,
                                     field="event", expected=f"<= {limits.max_entries}")
        if end - pos < _HDR1.size:
            raise TruncatedError(f"event header needs {_HDR1.size} bytes, {end - pos} remain",
                             offset=pos, field="TCG_PCR_EVENT", path=(f"event[{n}]",),
                             expected=_HDR1.size, actual=end - pos)
        pcr, etype, digest, size = unpack(buf, pos)
        if pcr >= _PCR_COUNT:
            raise ParseError(f"PCR index {pcr} out of range", offset=pos, field="pcrIndex",
                             path=(f"event[{n}]",), expected=f"< {_PCR_COUNT}", actual=pcr)
        dstart = pos + _HDR1.size
        if size > end - dstart:
            raise TruncatedError(f"eventDataSize {size} exceeds the remaining {end - dstart} bytes",
                             offset=dstart - 4, field="eventDataSize", path=(f"event[{n}]",),
                             expected=f"<= {end - dstart}", actual=size)
        out.append(Event(n, pcr, etype, (Digest(0x0004, digest),), buf[dstart:dstart + size],
                         pos, legacy=True))
        pos = dstart + size
        n += 1
    return tuple(out)


def _parse_agile(buf: bytes, pos: int, end: int, spec: SpecIdEvent,
                 limits: Limits) -> list[Event]:
    sizes = dict(spec.algorithms)
    nalgs = len(sizes)
    unpack_hdr = _HDR2.unpack_from
    unpack_u16 = _U16.unpack_from
    unpack_u32 = _U32.unpack_from
    out: list[Event] = []
    n = 1
    max_events = limits.max_entries
    while pos < end:
        if n > max_events:
            raise LimitExceededError(f"more than {max_events} events", offset=pos,
                                     field="event", expected=f"<= {max_events}")
        start = pos
        if end - pos < _HDR2.size:
            raise TruncatedError(f"event header needs {_HDR2.size} bytes, {end - pos} remain",
                             offset=pos, field="TCG_PCR_EVENT2", path=(f"event[{n}]",),
                             expected=_HDR2.size, actual=end - pos)
        pcr, etype, count = unpack_hdr(buf, pos)
        if pcr >= _PCR_COUNT:
            raise ParseError(f"PCR index {pcr} out of range", offset=pos, field="pcrIndex",
                             path=(f"event[{n}]",), expected=f"< {_PCR_COUNT}", actual=pcr)
        if count > nalgs:
            raise ParseError(f"{count} digests but the header lists {nalgs} algorithms",
                             offset=pos + 8, field="digests.count", path=(f"event[{n}]",),
                             expected=f"<= {nalgs}", actual=count)
        pos += _HDR2.size
        digests: list[Digest] = []
        for _ in range(count):
            if end - pos < 2:
                raise TruncatedError("truncated digest", offset=pos, field="hashAlg",
                                 path=(f"event[{n}]",), expected=2, actual=end - pos)
            (alg,) = unpack_u16(buf, pos)
            dsize = sizes.get(alg)
            if dsize is None:
                raise ParseError(f"digest of algorithm {alg:#06x} that the header does not list",
                                 offset=pos, field="hashAlg", path=(f"event[{n}]",),
                                 expected=[f"{a:#06x}" for a in sizes], actual=f"{alg:#06x}")
            if any(d.alg_id == alg for d in digests):
                raise ParseError(f"two digests of algorithm {alg:#06x}", offset=pos,
                                 field="hashAlg", path=(f"event[{n}]",))
            pos += 2
            if end - pos < dsize:
                raise TruncatedError(f"digest needs {dsize} bytes, {end - pos} remain", offset=pos,
                                 field="digest", path=(f"event[{n}]",), expected=dsize,
                                 actual=end - pos)
            digests.append(Digest(alg, buf[pos:pos + dsize]))
            pos += dsize
        if end - pos < 4:
            raise TruncatedError("truncated eventSize", offset=pos, field="eventSize",
                             path=(f"event[{n}]",), expected=4, actual=end - pos)
        (size,) = unpack_u32(buf, pos)
        pos += 4
        if size > end - pos:
            raise TruncatedError(f"eventSize {size} exceeds the remaining {end - pos} bytes",
                             offset=pos - 4, field="eventSize", path=(f"event[{n}]",),
                             expected=f"<= {end - pos}", actual=size)
        out.append(Event(n, pcr, etype, tuple(digests), buf[pos:pos + size], start))
        pos += size
        n += 1
    return out
