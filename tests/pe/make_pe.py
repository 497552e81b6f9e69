"""Deterministic generator of small, valid PE/COFF EFI applications for the PE tests.

The images are what a linker would produce for a trivial UEFI application: a DOS stub
header, ``PE\\0\\0``, a COFF header for x86-64 (or i386 with ``pe32=True``), an optional
header (PE32+ or PE32) with 16 data directories, and a few file-aligned sections whose
contents come from a seeded SHA-256 stream. ``.text`` starts with ``xor eax, eax; ret``
(return EFI_SUCCESS). sbsign, sbverify, osslsigncode and pesign accept them.

    python tests/pe/make_pe.py OUT [--sections N] [--size BYTES] [--pe32] [--trailing N]
"""

from __future__ import annotations

import argparse
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

FILE_ALIGNMENT = 0x200
SECTION_ALIGNMENT = 0x1000
IMAGE_SCN_CNT_CODE = 0x00000020
IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_MEM_READ = 0x40000000
IMAGE_SCN_MEM_WRITE = 0x80000000
IMAGE_SUBSYSTEM_EFI_APPLICATION = 10


@dataclass(frozen=True)
class SectionSpec:
    name: bytes
    size: int
    characteristics: int


def _stream(seed: str, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def _align(v: int, a: int) -> int:
    return (v + a - 1) // a * a


def default_sections(n: int = 2, size: int = 0x600) -> list[SectionSpec]:
    """``.text`` (code) then ``.data``, ``.rdata``, ``.sect3``... of ``size`` bytes each."""
    names = [b".text", b".data", b".rdata", b".reloc"]
    specs = []
    for i in range(n):
        name = names[i] if i < len(names) else f".s{i}".encode()
        ch = (IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_READ if i == 0 else
              IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_WRITE)
        specs.append(SectionSpec(name, size, ch))
    return specs


def make_pe(*, sections: list[SectionSpec] | None = None, pe32: bool = False,
            seed: str = "imasim-pe", trailing: bytes = b"", header_size: int = 0x400) -> bytes:
    """Build a PE/COFF image. Section raw sizes are rounded up to the file alignment."""
    specs = sections if sections is not None else default_sections()
    n = len(specs)
    e_lfanew = 0x80
    opt_size = (96 if pe32 else 112) + 16 * 8
    sec_table = e_lfanew + 24 + opt_size
    if sec_table + 40 * n > header_size:
        raise ValueError("header_size too small for the section table")
    # layout
    raw_ptr = header_size
    rva = SECTION_ALIGNMENT
    layout = []
    for s in specs:
        raw = _align(s.size, FILE_ALIGNMENT)
        layout.append((s, rva, raw_ptr, raw))
        raw_ptr += raw
        rva += _align(max(s.size, 1), SECTION_ALIGNMENT)
    size_of_image = rva
    code = [x for x in layout if x[0].characteristics & IMAGE_SCN_CNT_CODE]
    text_rva = code[0][1] if code else 0
    size_of_code = sum(x[3] for x in code)
    size_of_data = sum(x[3] for x in layout if not x[0].characteristics & IMAGE_SCN_CNT_CODE)

    img = bytearray(raw_ptr)
    # DOS header: "MZ", e_lfanew at 0x3c, and the classic stub message
    img[0:2] = b"MZ"
    struct.pack_into("<HHHHHHHHHHHHH", img, 2, 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0,
                     0x40, 0)
    struct.pack_into("<I", img, 0x3C, e_lfanew)
    stub = b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21This program cannot be " \
           b"run in DOS mode.\r\r\n$"
    img[0x40:0x40 + len(stub)] = stub
    # PE signature + COFF file header
    machine = 0x14C if pe32 else 0x8664
    characteristics = 0x0102 if pe32 else 0x0022  # EXECUTABLE_IMAGE | 32BIT / LARGE_ADDRESS
    img[e_lfanew:e_lfanew + 4] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", img, e_lfanew + 4, machine, n, 0, 0, 0, opt_size,
                     characteristics)
    o = e_lfanew + 24
    if pe32:
        struct.pack_into("<HBBIIIIII", img, o, 0x10B, 2, 38, size_of_code, size_of_data, 0,
                         text_rva, text_rva, 0)
        struct.pack_into("<I", img, o + 28, 0x400000)  # ImageBase
        tail = o + 32
    else:
        struct.pack_into("<HBBIIIII", img, o, 0x20B, 2, 38, size_of_code, size_of_data, 0,
                         text_rva, text_rva)
        struct.pack_into("<Q", img, o + 24, 0x140000000)  # ImageBase
        tail = o + 32
    struct.pack_into("<IIHHHHHHIIIIHH", img, tail, SECTION_ALIGNMENT, FILE_ALIGNMENT,
                     0, 0, 0, 0, 0, 0, 0, size_of_image, header_size, 0,
                     IMAGE_SUBSYSTEM_EFI_APPLICATION, 0)
    p = tail + 40
    if pe32:
        struct.pack_into("<IIIIII", img, p, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
        dirs = p + 24
    else:
        struct.pack_into("<QQQQII", img, p, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
        dirs = p + 40
    assert dirs + 16 * 8 == sec_table
    # section table and contents
    for i, (s, srva, ptr, raw) in enumerate(layout):
        struct.pack_into("<8sIIIIIIHHI", img, sec_table + 40 * i, s.name, s.size, srva, raw, ptr,
                         0, 0, 0, 0, s.characteristics)
        body = _stream(f"{seed}:{s.name.decode()}", s.size)
        if s.characteristics & IMAGE_SCN_CNT_CODE:
            body = b"\x31\xc0\xc3" + body[3:]  # xor eax, eax; ret
        img[ptr:ptr + s.size] = body
    return bytes(img) + trailing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sections", type=int, default=2)
    ap.add_argument("--size", type=lambda s: int(s, 0), default=0x600)
    ap.add_argument("--pe32", action="store_true")
    ap.add_argument("--trailing", type=int, default=0)
    ap.add_argument("--seed", default="imasim-pe")
    a = ap.parse_args()
    a.out.write_bytes(make_pe(sections=default_sections(a.sections, a.size), pe32=a.pe32,
                              seed=a.seed, trailing=_stream("trailing", a.trailing)))


if __name__ == "__main__":
    main()
