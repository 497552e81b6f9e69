"""Certificates where the kernel and shim keep them, read from the real Debian images.

* ``system_certificate_list(vmlinuz)``: certs/system_certificates.S puts the DER
  certificates the kernel loads into .builtin_trusted_keys (``system_certificate_list``,
  the build-time module signing key first) in the kernel image, followed, 8-byte aligned,
  by the quads ``module_cert_size`` and ``system_certificate_list_size``. The bzImage
  carries the kernel ELF compressed (payload_offset/payload_length in the setup header,
  Documentation/arch/x86/boot.rst); Debian's is XZ.
* ``vendor_cert(shim)``: shim's ``.vendor_cert`` section starts with ``struct cert_table``
  (vendor_authorized_size, vendor_deauthorized_size, vendor_authorized_offset,
  vendor_deauthorized_offset: four little-endian u32) and holds the vendor CA's DER.
"""

from __future__ import annotations

import lzma
import re
import struct

from imasim.sig.pefile import parse_pe


def _der_len(data: bytes, pos: int) -> int | None:
    """The total length of a SEQUENCE with a long-form length at ``pos`` (or None)."""
    if data[pos:pos + 1] != b"\x30" or len(data) < pos + 4:
        return None
    n = data[pos + 1]
    if n == 0x82:
        return 4 + int.from_bytes(data[pos + 2:pos + 4], "big")
    if n == 0x83 and len(data) >= pos + 5:
        return 5 + int.from_bytes(data[pos + 2:pos + 5], "big")
    return None


def decompress_bzimage(image: bytes) -> bytes:
    payload = bzimage_payload(image)
    assert payload[:6] == b"\xfd7zXZ\x00", "Debian's kernel payload is XZ"
    return lzma.LZMADecompressor().decompress(payload)


def system_certificate_list(vmlinuz: bytes) -> list[bytes]:
    """The DER certificates of the kernel's built-in list (module signing key first)."""
    return system_certificate_list_in_elf(decompress_bzimage(vmlinuz))


def bzimage_payload(image: bytes) -> bytes:
    """The compressed kernel (XZ in Debian's 6.1, zstd in its 6.12)."""
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return image[start:start + length]


def system_certificate_list_in_elf(elf: bytes) -> list[bytes]:
    """The certificate list inside a decompressed kernel (vmlinux)."""
    found: list[list[bytes]] = []
    for m in re.finditer(rb"\x30\x82..\x30\x82", elf, re.DOTALL):
        certs, pos = [], m.start()
        while (n := _der_len(elf, pos)) is not None and _der_len(elf, pos + 4) is not None:
            certs.append(elf[pos:pos + n])
            pos += n
        if not certs:
            continue
        total = pos - m.start()
        q = (pos + 7) & ~7  # .align 8 after the list (ELF offsets of .init.data are aligned)
        if elf[pos:q].strip(b"\0") or q + 16 > len(elf):
            continue
        module_cert_size, list_size = struct.unpack_from("<QQ", elf, q)
        if list_size == total and module_cert_size == len(certs[0]):
            found.append(certs)
    assert len(found) == 1, f"{len(found)} candidate certificate lists"
    return found[0]


def vendor_cert(shim: bytes) -> bytes:
    """The vendor_authorized DER of shim's .vendor_cert section."""
    img = parse_pe(shim)
    pe = img.pe_offset
    symptr, nsym = struct.unpack_from("<II", shim, pe + 4 + 8)
    strtab = symptr + nsym * 18
    for s in img.sections:
        name = s.name_text
        if name.startswith("/"):  # a long name: offset into the COFF string table
            o = strtab + int(name[1:])
            name = shim[o:shim.index(b"\0", o)].decode()
        if name == ".vendor_cert":
            raw = shim[s.pointer_to_raw_data:s.pointer_to_raw_data + s.virtual_size]
            size, _, offset, _ = struct.unpack_from("<IIII", raw)
            return raw[offset:offset + size]
    raise AssertionError("no .vendor_cert section")
