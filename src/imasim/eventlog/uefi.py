"""UEFI structures that event data carries: variables, signature lists, image loads, GPT.

Each ``parse_*`` takes the event data and raises :class:`~imasim.errors.ParseError` (with
the offset inside the event data) when it does not have the structure; each value object
has ``encode()`` giving the bytes back.

>>> v = VariableData(EFI_GLOBAL_VARIABLE, "SecureBoot", b"\\x01")
>>> parse_variable_data(v.encode()) == v
True
>>> str(EFI_GLOBAL_VARIABLE)
'8be4df61-93ca-11d2-aa0d-00e098032b8c'
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from cryptography import x509

from .._wire import Reader
from ..errors import ParseError

__all__ = [
    "EFI_CERT_SHA256_GUID",
    "EFI_CERT_X509_GUID",
    "EFI_GLOBAL_VARIABLE",
    "EFI_IMAGE_SECURITY_DATABASE_GUID",
    "SHIM_LOCK_GUID",
    "BootOption",
    "GptData",
    "GptPartition",
    "Guid",
    "ImageLoadEvent",
    "PlatformFirmwareBlob",
    "SignatureData",
    "SignatureList",
    "VariableData",
    "encode_signature_lists",
    "parse_boot_option",
    "parse_gpt",
    "parse_image_load",
    "parse_signature_data",
    "parse_signature_lists",
    "parse_variable_data",
]


@dataclass(frozen=True, slots=True, order=True)
class Guid:
    """An EFI_GUID (mixed-endian on the wire), printed as tpm2_eventlog prints it."""

    value: uuid.UUID

    @classmethod
    def parse(cls, text: str) -> Guid:
        return cls(uuid.UUID(text))

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Guid:
        if len(data) != 16:
            raise ParseError(f"a GUID has 16 bytes, not {len(data)}", field="GUID",
                             expected=16, actual=len(data))
        return cls(uuid.UUID(bytes_le=bytes(data)))

    def encode(self) -> bytes:
        return self.value.bytes_le

    def __str__(self) -> str:
        return str(self.value)


EFI_GLOBAL_VARIABLE = Guid.parse("8be4df61-93ca-11d2-aa0d-00e098032b8c")
"""Vendor GUID of SecureBoot, PK, KEK, BootOrder, Boot####."""
EFI_IMAGE_SECURITY_DATABASE_GUID = Guid.parse("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
"""Vendor GUID of db and dbx."""
SHIM_LOCK_GUID = Guid.parse("605dab50-e046-4300-abb6-3dd810dd8b23")
"""Vendor GUID of shim's MokList, SbatLevel, Shim authority events."""
EFI_CERT_X509_GUID = Guid.parse("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA256_GUID = Guid.parse("c1c41626-504c-4092-aca9-41f936934328")

_GUID = 16


@dataclass(frozen=True, slots=True)
class VariableData:
    """UEFI_VARIABLE_DATA: the variable's vendor GUID, its name and its value."""

    vendor: Guid
    name: str
    data: bytes

    def encode(self) -> bytes:
        name = self.name.encode("utf-16-le")
        return (self.vendor.encode() + struct.pack("<QQ", len(name) // 2, len(self.data))
                + name + self.data)


def parse_variable_data(data: bytes | memoryview, *, base: int = 0) -> VariableData:
    """Decode UEFI_VARIABLE_DATA (the whole event data, nothing after it)."""
    r = Reader(data, base=base, path=("UEFI_VARIABLE_DATA",))
    vendor = Guid.from_bytes(r.view(_GUID, "VariableName"))
    name_len = r.u64("UnicodeNameLength")
    data_len = r.u64("VariableDataLength")
    if name_len > r.remaining // 2:
        raise r.error(f"UnicodeNameLength {name_len} exceeds the event data",
                      field="UnicodeNameLength", expected=f"<= {r.remaining // 2}",
                      actual=name_len)
    raw_name = r.take(2 * name_len, "UnicodeName")
    try:
        name = raw_name.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise ParseError("UnicodeName is not UTF-16", offset=base + 32 + exc.start,
                         field="UnicodeName", path=r.path) from None
    if data_len > r.remaining:
        raise r.error(f"VariableDataLength {data_len} exceeds the event data",
                      field="VariableDataLength", expected=f"<= {r.remaining}",
                      actual=data_len)
    value = r.take(data_len, "VariableData")
    r.expect_end("UEFI_VARIABLE_DATA")
    return VariableData(vendor, name, value)


@dataclass(frozen=True, slots=True)
class SignatureData:
    """EFI_SIGNATURE_DATA: an owner GUID and the signature (a DER certificate, a hash)."""

    owner: Guid
    data: bytes

    def encode(self) -> bytes:
        return self.owner.encode() + self.data

    def certificate(self) -> x509.Certificate | None:
        """The X.509 certificate this entry holds, or None when it is not one."""
        try:
            return x509.load_der_x509_certificate(self.data)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class SignatureList:
    """EFI_SIGNATURE_LIST: a signature type and its entries of one size."""

    signature_type: Guid
    header: bytes
    signature_size: int
    signatures: tuple[SignatureData, ...]

    @property
    def is_x509(self) -> bool:
        return self.signature_type == EFI_CERT_X509_GUID

    @property
    def is_sha256(self) -> bool:
        return self.signature_type == EFI_CERT_SHA256_GUID

    @property
    def list_size(self) -> int:
        return 28 + len(self.header) + self.signature_size * len(self.signatures)

    def encode(self) -> bytes:
        out = bytearray(self.signature_type.encode())
        out += struct.pack("<III", self.list_size, len(self.header), self.signature_size)
        out += self.header
        for s in self.signatures:
            out += s.encode()
        return bytes(out)

    @classmethod
    def of(cls, signature_type: Guid, owner: Guid, entries: list[bytes]) -> SignatureList:
        """One list of same-size entries (one certificate, or hashes) with one owner."""
        size = _GUID + (len(entries[0]) if entries else 0)
        if any(len(e) + _GUID != size for e in entries):
            raise ParseError("entries of one EFI_SIGNATURE_LIST must have one size")
        return cls(signature_type, b"", size, tuple(SignatureData(owner, e) for e in entries))


def parse_signature_lists(data: bytes | memoryview, *, base: int = 0) -> tuple[SignatureList, ...]:
    """Decode the EFI_SIGNATURE_LISTs of PK, KEK, db or dbx (the variable's whole value)."""
    r = Reader(data, base=base, path=("EFI_SIGNATURE_LIST",))
    out: list[SignatureList] = []
    while not r.at_end():
        start = r.offset
        stype = Guid.from_bytes(r.view(_GUID, "SignatureType"))
        list_size = r.u32("SignatureListSize")
        header_size = r.u32("SignatureHeaderSize")
        sig_size = r.u32("SignatureSize")
        body = list_size - 28 - header_size
        if list_size < 28 or body < 0 or body > r.remaining:
            raise ParseError(f"SignatureListSize {list_size} does not fit", offset=start + 16,
                             field="SignatureListSize", path=r.path,
                             expected=f"28 + {header_size} .. {28 + r.remaining}",
                             actual=list_size)
        if sig_size < _GUID or body % sig_size:
            raise ParseError(f"SignatureSize {sig_size} does not divide the list",
                             offset=start + 24, field="SignatureSize", path=r.path,
                             expected=f">= {_GUID}", actual=sig_size)
        header = r.take(header_size, "SignatureHeader")
        sigs = []
        for _ in range(body // sig_size):
            owner = Guid.from_bytes(r.view(_GUID, "SignatureOwner"))
            sigs.append(SignatureData(owner, r.take(sig_size - _GUID, "SignatureData")))
        out.append(SignatureList(stype, header, sig_size, tuple(sigs)))
    return tuple(out)


def encode_signature_lists(lists: tuple[SignatureList, ...] | list[SignatureList]) -> bytes:
    """The value of PK, KEK, db or dbx holding ``lists``."""
    return b"".join(sl.encode() for sl in lists)


def parse_signature_data(data: bytes | memoryview, *, base: int = 0) -> SignatureData:
    """One EFI_SIGNATURE_DATA (an EV_EFI_VARIABLE_AUTHORITY value: the db entry used)."""
    r = Reader(data, base=base, path=("EFI_SIGNATURE_DATA",))
    owner = Guid.from_bytes(r.view(_GUID, "SignatureOwner"))
    return SignatureData(owner, bytes(r.rest()))


@dataclass(frozen=True, slots=True)
class ImageLoadEvent:
    """UEFI_IMAGE_LOAD_EVENT of EV_EFI_BOOT_SERVICES_APPLICATION/DRIVER, RUNTIME_SERVICES_DRIVER."""

    location: int
    length: int
    link_time_address: int
    device_path: bytes

    def encode(self) -> bytes:
        return struct.pack("<QQQQ", self.location, self.length, self.link_time_address,
                           len(self.device_path)) + self.device_path

    def file_path(self) -> str | None:
        """The text of the device path's first media file-path node (``\\EFI\\BOOT\\...``)."""
        pos = 0
        dp = self.device_path
        while pos + 4 <= len(dp):
            typ, sub, ln = dp[pos], dp[pos + 1], int.from_bytes(dp[pos + 2:pos + 4], "little")
            if ln < 4 or pos + ln > len(dp):
                return None
            if typ == 4 and sub == 4:
                try:
                    return dp[pos + 4:pos + ln].decode("utf-16-le").rstrip("\x00")
                except UnicodeDecodeError:
                    return None
            if typ == 0x7F:
                return None
            pos += ln
        return None


def parse_image_load(data: bytes | memoryview, *, base: int = 0) -> ImageLoadEvent:
    """Decode UEFI_IMAGE_LOAD_EVENT (the data of a boot application or driver event)."""
    r = Reader(data, base=base, path=("UEFI_IMAGE_LOAD_EVENT",))
    loc, length, link = r.u64("ImageLocationInMemory"), r.u64("ImageLengthInMemory"), \
        r.u64("ImageLinkTimeAddress")
    dp_len = r.u64("LengthOfDevicePath")
    if dp_len > r.remaining:
        raise r.error(f"LengthOfDevicePath {dp_len} exceeds the event data",
                      field="LengthOfDevicePath", expected=f"<= {r.remaining}", actual=dp_len)
    dp = r.take(dp_len, "DevicePath")
    r.expect_end("UEFI_IMAGE_LOAD_EVENT")
    return ImageLoadEvent(loc, length, link, dp)


@dataclass(frozen=True, slots=True)
class PlatformFirmwareBlob:
    """UEFI_PLATFORM_FIRMWARE_BLOB(2): where a measured firmware volume sits."""

    base: int
    length: int
    description: bytes | None = None

    def encode(self) -> bytes:
        head = b"" if self.description is None else \
            bytes([len(self.description)]) + self.description
        return head + struct.pack("<QQ", self.base, self.length)


@dataclass(frozen=True, slots=True)
class BootOption:
    """EFI_LOAD_OPTION of a Boot#### variable."""

    attributes: int
    description: str
    file_path_list: bytes
    optional_data: bytes

    @property
    def active(self) -> bool:
        return bool(self.attributes & 1)


def parse_boot_option(data: bytes | memoryview, *, base: int = 0) -> BootOption:
    """Decode a Boot#### variable's EFI_LOAD_OPTION."""
    r = Reader(data, base=base, path=("EFI_LOAD_OPTION",))
    attrs = r.u32("Attributes")
    fpl = r.u16("FilePathListLength")
    chars: list[int] = []
    while True:
        c = r.u16("Description")
        if c == 0:
            break
        chars.append(c)
    desc = struct.pack(f"<{len(chars)}H", *chars).decode("utf-16-le", "replace")
    paths = r.take(fpl, "FilePathList")
    return BootOption(attrs, desc, paths, bytes(r.rest()))


@dataclass(frozen=True, slots=True)
class GptPartition:
    """One entry of the partition table EV_EFI_GPT_EVENT records (UEFI_PARTITION_ENTRY):
    type and unique GUIDs, first and last LBA, attribute bits and the UTF-16 name."""

    type_guid: Guid
    unique_guid: Guid
    starting_lba: int
    ending_lba: int
    attributes: int
    name: str


@dataclass(frozen=True, slots=True)
class GptData:
    """UEFI_GPT_DATA: the GPT header and the partition entries in use."""

    header: bytes
    partitions: tuple[GptPartition, ...]

    @property
    def disk_guid(self) -> Guid:
        return Guid.from_bytes(self.header[56:72])


def parse_gpt(data: bytes | memoryview, *, base: int = 0) -> GptData:
    """Decode EV_EFI_GPT_EVENT data (UEFI_GPT_DATA, entries of 128 bytes)."""
    r = Reader(data, base=base, path=("UEFI_GPT_DATA",))
    header = r.take(92, "UEFIPartitionHeader")
    n = r.u64("NumberOfPartitions")
    entry_size = 128
    if n > r.remaining // entry_size:
        raise r.error(f"NumberOfPartitions {n} exceeds the event data",
                      field="NumberOfPartitions", expected=f"<= {r.remaining // entry_size}",
                      actual=n)
    parts = []
    for _ in range(n):
        e = r.sub(entry_size, "Partitions")
        t = Guid.from_bytes(e.view(16, "PartitionTypeGUID"))
        u = Guid.from_bytes(e.view(16, "UniquePartitionGUID"))
        start, end, attrs = e.u64("StartingLBA"), e.u64("EndingLBA"), e.u64("Attributes")
        name = e.take(72, "PartitionName").decode("utf-16-le", "replace").split("\x00")[0]
        parts.append(GptPartition(t, u, start, end, attrs, name))
    r.expect_end("UEFI_GPT_DATA")
    return GptData(header, tuple(parts))
