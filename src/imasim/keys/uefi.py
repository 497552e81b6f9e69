"""security/integrity/platform_certs: the UEFI keys the kernel loads at boot.

On an EFI machine ``load_uefi_certs`` reads the firmware's ``db`` and ``dbx`` variables
(EFI_SIGNATURE_LIST arrays, UEFI 2.10 section 32.4.1): db's X.509 certificates go into
the ``.platform`` keyring (add_to_platform_keyring), dbx's SHA-256 image hashes become
``bin:`` entries and its X509_SHA256 entries ``tbs:`` entries of ``.blacklist``
(uefi_blacklist_binary, uefi_blacklist_x509_tbs); other signature types are skipped.
The same variables are measured into PCR 7 (EV_EFI_VARIABLE_DRIVER_CONFIG), so a firmware
event log carries what the kernel loaded: :func:`variable_data` reads such an event.

>>> lists = parse_signature_lists(bytes(16) + (28 + 48).to_bytes(4, "little") +
...     bytes(4) + (48).to_bytes(4, "little") + bytes(16) + bytes(32))
>>> [(e.kind, len(e.data)) for e in lists]
[('00000000-0000-0000-0000-000000000000', 32)]
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Final

from ..errors import ParseError
from .key import Key
from .keyring import Blacklist, Keyring

__all__ = ["SignatureEntry", "load_uefi_keys", "parse_signature_lists", "variable_data"]

_KINDS: Final = {
    uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072"): "x509",
    uuid.UUID("c1c41626-504c-4092-aca9-41f936934328"): "sha256",
    uuid.UUID("3bd2a492-96c0-4079-b420-fcf98ef103ed"): "x509_sha256",
}


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """One EFI_SIGNATURE_DATA: its list's type (``x509``, ``sha256``, ``x509_sha256`` or
    the GUID), the owner GUID and the data (a DER certificate, or a hash)."""

    kind: str
    owner: uuid.UUID
    data: bytes


def parse_signature_lists(data: bytes) -> tuple[SignatureEntry, ...]:
    """EFI_SIGNATURE_LIST after EFI_SIGNATURE_LIST, as parse_efi_signature_list walks them:
    SignatureType GUID, SignatureListSize, SignatureHeaderSize, SignatureSize (u32 each),
    the header, then (ListSize - 28 - HeaderSize) / SignatureSize entries of owner GUID +
    data. A size that runs past the buffer or does not divide is a ParseError."""
    out: list[SignatureEntry] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 28:
            raise ParseError("truncated EFI_SIGNATURE_LIST header", offset=pos,
                             field="EFI_SIGNATURE_LIST")
        guid = uuid.UUID(bytes_le=bytes(data[pos:pos + 16]))
        lsize, hsize, esize = struct.unpack_from("<III", data, pos + 16)
        if lsize > len(data) - pos or lsize < 28 + hsize or esize <= 16 or \
                (lsize - 28 - hsize) % esize:
            raise ParseError(f"bad EFI_SIGNATURE_LIST sizes (list {lsize}, header {hsize}, "
                             f"entry {esize})", offset=pos, field="SignatureListSize")
        kind = _KINDS.get(guid, str(guid))
        for e in range(pos + 28 + hsize, pos + lsize, esize):
            out.append(SignatureEntry(kind, uuid.UUID(bytes_le=bytes(data[e:e + 16])),
                                      bytes(data[e + 16:e + esize])))
        pos += lsize
    return tuple(out)


def variable_data(event_data: bytes) -> tuple[str, bytes]:
    """UEFI_VARIABLE_DATA (TCG PC Client PFP 10.2.6), the data of an EV_EFI_VARIABLE_*
    event: the variable's name and its value."""
    if len(event_data) < 32:
        raise ParseError("truncated UEFI_VARIABLE_DATA", offset=0, field="UEFI_VARIABLE_DATA")
    nchars, dlen = struct.unpack_from("<QQ", event_data, 16)
    end = 32 + 2 * nchars
    if end + dlen > len(event_data):
        raise ParseError("UEFI_VARIABLE_DATA sizes run past the event", offset=16,
                         field="UnicodeNameLength")
    name = event_data[32:end].decode("utf-16-le", "replace")
    return name, bytes(event_data[end:end + dlen])


def load_uefi_keys(platform: Keyring, blacklist: Blacklist, *, db: bytes | None = None,
                   dbx: bytes | None = None) -> tuple[str, ...]:
    """load_uefi_certs: db's certificates into ``platform``, dbx's hashes into
    ``blacklist``. The kernel's log lines (``Loaded X.509 cert '...'``), in order."""
    log: list[str] = []
    for entry in parse_signature_lists(db) if db else ():
        if entry.kind == "x509":
            key = platform.add(Key.from_certificate(entry.data))
            log.append(f"integrity: Loaded X.509 cert '{key.description}'")
    for entry in parse_signature_lists(dbx) if dbx else ():
        if entry.kind == "sha256":
            blacklist.add_binary_hash(entry.data)
        elif entry.kind == "x509_sha256":
            blacklist.add_tbs_hash(entry.data)
    return tuple(log)
