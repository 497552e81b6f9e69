"""crypto/asymmetric_keys/verify_pefile.c: pefile_parse_binary, the PE headers Authenticode uses.

:func:`parse_pe` reads the DOS header, the ``PE\\0\\0`` signature, the COFF file header,
the optional header (PE32 or PE32+), the data directories and the section table of an
image held in ``bytes``/``bytearray``/``memoryview``, without copying it: the returned
:class:`PeImage` keeps a read-only :class:`memoryview` of the caller's buffer.

It makes the kernel's checks, each a :class:`~imasim.errors.ParseError` with the
absolute offset and the field (the kernel's ``-ELIBBAD``):

* the MZ header fits and starts with ``MZ``; ``e_lfanew`` is at least 64 and the 24-byte
  PE header fits and starts with ``PE\\0\\0``;
* the optional header magic is 0x10B or 0x20B and its fixed part fits;
* end of the fixed optional header < ``SizeOfHeaders`` < file length;
* the data directories (``NumberOfRvaAndSizes``) and the section table fit before
  ``SizeOfHeaders``; the section table starts right after the data directories (the
  kernel ignores ``SizeOfOptionalHeader``, and so does imasim);
* a certificate table (directory entry 4 with a non-zero address and size) lies inside
  ``[SizeOfHeaders, file length]``: its "virtual address" is a file offset.

One check goes beyond the 6.1 kernel, which would read past its buffer: the raw data of
every section (``PointerToRawData + SizeOfRawData``) must lie inside the file.

>>> import struct
>>> img = parse_pe(_example())
>>> img.magic.name, img.number_of_sections, img.is_signed
('PE32_PLUS', 1, False)
>>> img.sections[0].name_text, hex(img.sections[0].pointer_to_raw_data)
('.text', '0x200')
>>> try:
...     parse_pe(b"MZ" + bytes(100))
... except ParseError as exc:
...     print(exc.field, hex(exc.offset), exc.expected, exc.actual)
e_lfanew 0x3c >= 64 0
"""

from __future__ import annotations

import enum
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Final

from ..errors import LimitExceededError, ParseError, TruncatedError
from ..limits import DEFAULT_LIMITS, Limits

__all__ = [
    "IMAGE_DIRECTORY_ENTRY_SECURITY",
    "DataDirectory",
    "OptionalHeaderMagic",
    "PeImage",
    "SectionHeader",
    "build_pe",
    "parse_pe",
    "pe_checksum",
]

MZ_MAGIC: Final = b"MZ"
PE_MAGIC: Final = b"PE\0\0"
MZ_HDR_SIZE: Final = 64  # sizeof(struct mz_hdr)
PE_HDR_SIZE: Final = 24  # sizeof(struct pe_hdr): signature + COFF file header
PE32_OPT_HDR_SIZE: Final = 96  # sizeof(struct pe32_opt_hdr), without data directories
PE32PLUS_OPT_HDR_SIZE: Final = 112  # sizeof(struct pe32plus_opt_hdr)
DATA_DIRENT_SIZE: Final = 8
SECTION_HEADER_SIZE: Final = 40
CHECKSUM_OFFSET: Final = 64  # of CheckSum inside the optional header (PE32 and PE32+)
SIZE_OF_HEADERS_OFFSET: Final = 60
IMAGE_DIRECTORY_ENTRY_SECURITY: Final = 4  # the certificate table

_COFF: Final = struct.Struct("<HHIIIHH")
_SECTION: Final = struct.Struct("<8sIIIIIIHHI")
_DIRENT: Final = struct.Struct("<II")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")


class OptionalHeaderMagic(enum.IntEnum):
    """include/linux/pe.h: PE_OPT_MAGIC_PE32 / PE_OPT_MAGIC_PE32PLUS."""

    PE32 = 0x10B
    PE32_PLUS = 0x20B


@dataclass(frozen=True, slots=True, kw_only=True)
class DataDirectory:
    """struct data_dirent: one ``{VirtualAddress, Size}`` entry and where it lies."""

    index: int
    virtual_address: int
    size: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SectionHeader:
    """struct section_header (40 bytes); ``offset`` is where the header itself lies."""

    name: bytes  # the raw 8 bytes
    virtual_size: int
    virtual_address: int
    size_of_raw_data: int
    pointer_to_raw_data: int
    pointer_to_relocations: int
    pointer_to_linenumbers: int
    number_of_relocations: int
    number_of_linenumbers: int
    characteristics: int
    offset: int

    @property
    def name_text(self) -> str:
        """The name up to the first NUL (latin-1, so any byte decodes)."""
        return self.name.split(b"\0", 1)[0].decode("latin-1")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeImage:
    """A parsed PE/COFF image. UNTRUSTED: exactly what the headers say.

    ``raw`` is a read-only view of the caller's buffer (no copy), so the caller must not
    change a ``bytearray`` while the image is in use.
    """

    raw: memoryview = field(repr=False)
    pe_offset: int
    machine: int
    number_of_sections: int
    time_date_stamp: int
    size_of_optional_header: int
    characteristics: int
    magic: OptionalHeaderMagic
    optional_header_offset: int
    checksum: int
    checksum_offset: int
    size_of_headers: int
    subsystem: int
    number_of_rva_and_sizes: int
    data_directories: tuple[DataDirectory, ...]
    section_table_offset: int
    sections: tuple[SectionHeader, ...]

    def __len__(self) -> int:
        return len(self.raw)

    def to_bytes(self) -> bytes:
        return bytes(self.raw)

    @property
    def certificate_directory(self) -> DataDirectory | None:
        """Data directory entry 4 (None when the image has fewer than five entries)."""
        if len(self.data_directories) > IMAGE_DIRECTORY_ENTRY_SECURITY:
            return self.data_directories[IMAGE_DIRECTORY_ENTRY_SECURITY]
        return None

    @property
    def is_signed(self) -> bool:
        """The kernel's test: the certificate entry has a non-zero address and size."""
        d = self.certificate_directory
        return d is not None and d.virtual_address != 0 and d.size != 0

    @property
    def certificate_table(self) -> memoryview:
        """The bytes the certificate directory points at (empty when unsigned)."""
        d = self.certificate_directory
        if d is None or not self.is_signed:
            return self.raw[0:0]
        return self.raw[d.virtual_address:d.virtual_address + d.size]

    @property
    def spec_section_table_offset(self) -> int:
        """Where the PE specification puts the section table (after SizeOfOptionalHeader)."""
        return self.optional_header_offset + self.size_of_optional_header


def _chkaddr(base: int, x: int, s: int, datalen: int, *, field: str, offset: int,
             what: str) -> None:
    """verify_pefile.c chkaddr(): ``x`` in ``[base, datalen - s]`` and ``s < datalen``."""
    if x < base or s >= datalen or x > datalen - s:
        if s >= datalen:
            raise TruncatedError(f"{what} does not fit: the file has {datalen} bytes",
                                 offset=offset, field=field, expected=f"> {s} bytes",
                                 actual=datalen)
        err = TruncatedError if x >= base else ParseError
        raise err(f"{what} outside the file", offset=offset, field=field,
                  expected=f">= {base}" if x < base else f"<= {datalen - s}", actual=x)


def parse_pe(data: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS
             ) -> PeImage:
    """pefile_parse_binary. Only :class:`~imasim.errors.ParseError` escapes."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    mv = mv.toreadonly()
    n = len(mv)
    _chkaddr(0, 0, MZ_HDR_SIZE, n, field="mz_hdr", offset=0, what="MZ header")
    if bytes(mv[0:2]) != MZ_MAGIC:
        raise ParseError("not an MZ image", offset=0, field="e_magic", expected="MZ",
                         actual=bytes(mv[0:2]))
    (peaddr,) = _U32.unpack_from(mv, 0x3C)
    _chkaddr(MZ_HDR_SIZE, peaddr, PE_HDR_SIZE, n, field="e_lfanew", offset=0x3C,
             what="PE header")
    if bytes(mv[peaddr:peaddr + 4]) != PE_MAGIC:
        raise ParseError("no PE signature", offset=peaddr, field="pe_magic",
                         expected=PE_MAGIC, actual=bytes(mv[peaddr:peaddr + 4]))
    machine, nsec, stamp, _symtab, _nsyms, opt_size, chars = _COFF.unpack_from(mv, peaddr + 4)
    opt = peaddr + PE_HDR_SIZE
    _chkaddr(0, opt, 2, n, field="optional_header.magic", offset=opt, what="optional header")
    (magic_v,) = _U16.unpack_from(mv, opt)
    if magic_v == OptionalHeaderMagic.PE32:
        fixed, dirs_field = PE32_OPT_HDR_SIZE, opt + 92
    elif magic_v == OptionalHeaderMagic.PE32_PLUS:
        fixed, dirs_field = PE32PLUS_OPT_HDR_SIZE, opt + 108
    else:
        raise ParseError("unknown optional header magic", offset=opt,
                         field="optional_header.magic", expected="0x10b or 0x20b",
                         actual=hex(magic_v))
    magic = OptionalHeaderMagic(magic_v)
    _chkaddr(0, opt, fixed, n, field="optional_header", offset=opt, what="optional header")
    (header_size,) = _U32.unpack_from(mv, opt + SIZE_OF_HEADERS_OFFSET)
    (csum,) = _U32.unpack_from(mv, opt + CHECKSUM_OFFSET)
    (subsystem,) = _U16.unpack_from(mv, opt + 68)
    (n_dirs,) = _U32.unpack_from(mv, dirs_field)
    cursor = opt + fixed
    if not cursor < header_size < n:
        raise ParseError("SizeOfHeaders outside (end of optional header, file length)",
                         offset=opt + SIZE_OF_HEADERS_OFFSET, field="SizeOfHeaders",
                         expected=f"> {cursor} and < {n}", actual=header_size)
    if n_dirs > (header_size - cursor) // DATA_DIRENT_SIZE:
        raise ParseError("data directories do not fit in the headers", offset=dirs_field,
                         field="NumberOfRvaAndSizes",
                         expected=f"<= {(header_size - cursor) // DATA_DIRENT_SIZE}",
                         actual=n_dirs)
    dirs = tuple(
        DataDirectory(index=i, virtual_address=va, size=sz, offset=cursor + 8 * i)
        for i, (va, sz) in enumerate(_DIRENT.iter_unpack(
            mv[cursor:cursor + DATA_DIRENT_SIZE * n_dirs])))
    cursor += DATA_DIRENT_SIZE * n_dirs
    if n_dirs > IMAGE_DIRECTORY_ENTRY_SECURITY:
        cert = dirs[IMAGE_DIRECTORY_ENTRY_SECURITY]
        if cert.virtual_address and cert.size:
            _chkaddr(header_size, cert.virtual_address, cert.size, n,
                     field="certificate_table", offset=cert.offset, what="certificate table")
    if nsec > (header_size - cursor) // SECTION_HEADER_SIZE:
        raise ParseError("section table does not fit in the headers", offset=peaddr + 6,
                         field="NumberOfSections",
                         expected=f"<= {(header_size - cursor) // SECTION_HEADER_SIZE}",
                         actual=nsec)
    if nsec > limits.max_pe_sections:
        raise LimitExceededError("too many sections", offset=peaddr + 6,
                                 field="NumberOfSections",
                                 expected=f"<= {limits.max_pe_sections}", actual=nsec)
    sections = []
    for i in range(nsec):
        off = cursor + SECTION_HEADER_SIZE * i
        (name, vsize, vaddr, rsize, rptr, relptr, lnptr, nrel, nln,
         schars) = _SECTION.unpack_from(mv, off)
        if rsize and (rptr > n or rsize > n - rptr):
            raise TruncatedError(f"section {i} raw data outside the file", offset=off + 20,
                                 field="PointerToRawData", expected=f"end <= {n}",
                                 actual=rptr + rsize)
        sections.append(SectionHeader(
            name=name, virtual_size=vsize, virtual_address=vaddr, size_of_raw_data=rsize,
            pointer_to_raw_data=rptr, pointer_to_relocations=relptr,
            pointer_to_linenumbers=lnptr, number_of_relocations=nrel,
            number_of_linenumbers=nln, characteristics=schars, offset=off))
    return PeImage(
        raw=mv, pe_offset=peaddr, machine=machine, number_of_sections=nsec,
        time_date_stamp=stamp, size_of_optional_header=opt_size, characteristics=chars,
        magic=magic, optional_header_offset=opt, checksum=csum,
        checksum_offset=opt + CHECKSUM_OFFSET, size_of_headers=header_size,
        subsystem=subsystem, number_of_rva_and_sizes=n_dirs, data_directories=dirs,
        section_table_offset=cursor, sections=tuple(sections))


def pe_checksum(data: bytes | bytearray | memoryview, checksum_offset: int) -> int:
    """The PE CheckSum (imagehlp CheckSumMappedFile, sbsign's image_pecoff_update_checksum).

    16-bit little-endian words are added with end-around carry, the 4-byte CheckSum field
    counting as zero and an odd last byte as a word of its own; the file length is added.

    >>> hex(pe_checksum(bytes(64) + b"\\x01\\x02\\x03", 0))
    '0x247'
    """
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    n = len(mv)
    total = 0
    for start, end in ((0, checksum_offset), (checksum_offset + 4, n)):
        if end <= start:
            continue
        even = start + (end - start) // 2 * 2
        words = array("H")
        words.frombytes(mv[start:even])
        if sys.byteorder == "big":
            words.byteswap()
        total += sum(words)
        if even < end:
            total += mv[even]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + n) & 0xFFFFFFFF


def _one_section_headers(img: bytearray) -> int:
    """MZ, PE and COFF headers of a one-section x86-64 PE32+ image; the optional header's
    offset."""
    img[0:2] = b"MZ"
    _U32.pack_into(img, 0x3C, 0x40)
    img[0x40:0x44] = PE_MAGIC
    _COFF.pack_into(img, 0x44, 0x8664, 1, 0, 0, 0, 112 + 16 * 8, 0x22)
    _U16.pack_into(img, 0x58, OptionalHeaderMagic.PE32_PLUS)
    return 0x58


def build_pe(payload: bytes = b"\x31\xc0\xc3", *, name: bytes = b".text") -> bytes:
    """A minimal unsigned PE32+ (x86-64) image whose one code section holds ``payload``:
    what a simulated kernel image or EFI application needs to be hashed, signed with
    :func:`~imasim.sig.authenticode.sign_pe` and verified. The section is padded to the
    512-byte file alignment.

    >>> img = parse_pe(build_pe(b"vmlinuz"))
    >>> img.sections[0].name_text, img.sections[0].virtual_size, len(img.raw)
    ('.text', 7, 1024)
    """
    raw = max(0x200, (len(payload) + 0x1FF) // 0x200 * 0x200)
    img = bytearray(0x200 + raw)
    opt = _one_section_headers(img)
    _U32.pack_into(img, opt + 32, 0x1000)  # SectionAlignment
    _U32.pack_into(img, opt + 36, 0x200)  # FileAlignment
    _U32.pack_into(img, opt + 56, 0x1000 + (len(payload) + 0xFFF) // 0x1000 * 0x1000)
    _U32.pack_into(img, opt + SIZE_OF_HEADERS_OFFSET, 0x200)
    _U16.pack_into(img, opt + 68, 10)  # IMAGE_SUBSYSTEM_EFI_APPLICATION
    _U32.pack_into(img, opt + 108, 16)
    sec = opt + 112 + 16 * 8
    _SECTION.pack_into(img, sec, name, len(payload), 0x1000, raw, 0x200, 0, 0, 0, 0,
                       0x60000020)
    img[0x200:0x200 + len(payload)] = payload
    return bytes(img)


def _example() -> bytes:
    """A tiny PE32+ image with one section (for the doctests)."""
    img = bytearray(0x400)
    opt = _one_section_headers(img)
    _U32.pack_into(img, opt + SIZE_OF_HEADERS_OFFSET, 0x200)
    _U32.pack_into(img, opt + 108, 16)
    sec = opt + 112 + 16 * 8
    _SECTION.pack_into(img, sec, b".text", 0x10, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020)
    return bytes(img)
