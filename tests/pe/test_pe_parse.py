"""parse_pe: the kernel's pefile_parse_binary checks, offsets, zero copy; the digest rules."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import LimitExceededError, ParseError, TruncatedError
from imasim.limits import Limits
from imasim.sig.authenticode import (
    DigestRules,
    _canonical_sections,
    authenticode_digest,
    authenticode_ranges,
)
from imasim.sig.pefile import OptionalHeaderMagic, parse_pe, pe_checksum
from pe.pe_support import SectionSpec, default_sections, make_pe, unsigned

PE = 0x80  # e_lfanew of the generated images
OPT = PE + 24


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def test_headers_of_a_generated_image() -> None:
    img = parse_pe(unsigned())
    assert img.magic is OptionalHeaderMagic.PE32_PLUS
    assert (img.pe_offset, img.machine, img.subsystem) == (PE, 0x8664, 10)
    assert img.checksum_offset == OPT + 64
    assert img.size_of_headers == 0x400
    assert img.number_of_rva_and_sizes == 16
    assert img.certificate_directory is not None
    assert img.certificate_directory.offset == OPT + 112 + 4 * 8
    assert [s.name_text for s in img.sections] == [".text", ".data"]
    assert [(s.pointer_to_raw_data, s.size_of_raw_data) for s in img.sections] == [
        (0x400, 0x600), (0xA00, 0x600)]
    assert img.section_table_offset == img.spec_section_table_offset
    assert not img.is_signed and len(img.certificate_table) == 0
    assert img.to_bytes() == unsigned()


def test_pe32_offsets() -> None:
    img = parse_pe(make_pe(pe32=True, sections=default_sections(3)))
    assert img.magic is OptionalHeaderMagic.PE32
    assert img.certificate_directory is not None
    assert img.certificate_directory.offset == OPT + 96 + 4 * 8
    assert len(img.sections) == 3


def test_zero_copy_view_of_the_callers_buffer() -> None:
    buf = bytearray(unsigned())
    img = parse_pe(buf)
    assert img.raw.obj is buf and img.raw.readonly
    mv = memoryview(buf)
    assert parse_pe(mv).raw.obj is buf


@pytest.mark.parametrize(("mutate", "field", "offset"), [
    (lambda d: d[:64], "mz_hdr", 0),  # the kernel wants more than sizeof(mz_hdr)
    (lambda d: b"ZM" + d[2:], "e_magic", 0),
    (lambda d: _patch(d, 0x3C, "<I", 0x20), "e_lfanew", 0x3C),  # inside the MZ header
    (lambda d: _patch(d, 0x3C, "<I", len(d)), "e_lfanew", 0x3C),
    (lambda d: d[:PE] + b"PX\0\0" + d[PE + 4:], "pe_magic", PE),
    (lambda d: _patch(d, OPT, "<H", 0x107), "optional_header.magic", OPT),
    (lambda d: _patch(d, OPT + 60, "<I", OPT + 100), "SizeOfHeaders", OPT + 60),
    (lambda d: _patch(d, OPT + 60, "<I", len(d)), "SizeOfHeaders", OPT + 60),
    (lambda d: _patch(d, OPT + 108, "<I", 200), "NumberOfRvaAndSizes", OPT + 108),
    (lambda d: _patch(d, PE + 6, "<H", 30), "NumberOfSections", PE + 6),
    (lambda d: _patch(d, OPT + 112 + 32, "<II", 0x400, 0x10000), "certificate_table",
     OPT + 112 + 32),
    (lambda d: _patch(d, OPT + 112 + 32, "<II", 0x100, 8), "certificate_table", OPT + 144),
    (lambda d: _patch(d, OPT + 112 + 16 * 8 + 40 + 20, "<I", 0xF000), "PointerToRawData",
     OPT + 112 + 16 * 8 + 40 + 20),
])
def test_kernel_refusals_carry_field_and_offset(mutate, field: str, offset: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError) as exc:
        parse_pe(mutate(unsigned()))
    assert exc.value.field == field
    assert exc.value.offset == offset


def test_section_limit() -> None:
    data = make_pe(sections=default_sections(6, 0x200), header_size=0x600)
    assert len(parse_pe(data).sections) == 6
    with pytest.raises(LimitExceededError):
        parse_pe(data, limits=Limits(max_pe_sections=5))


def test_every_truncation_is_a_parse_error() -> None:
    data = unsigned()
    for n in range(0, len(data), 7):
        try:
            parse_pe(data[:n])
        except ParseError:
            continue


def test_checksum_matches_the_tools_value() -> None:
    # osslsigncode printed "Calculated PE checksum: 0000F46F" for this exact image
    data = unsigned()
    assert pe_checksum(data, parse_pe(data).checksum_offset) == 0xF46F
    assert pe_checksum(bytes(64) + b"\x01", 0) == 1 + 65


# -- the image hash ---------------------------------------------------------------------
def test_digest_ranges_skip_checksum_and_certificate_entry() -> None:
    img = parse_pe(unsigned())
    assert authenticode_ranges(img) == (
        (0, OPT + 64), (OPT + 68, 76), (OPT + 152, 0x400 - OPT - 152),
        (0x400, 0x600), (0xA00, 0x600))
    manual = H.SHA256.hash(b"".join(img.raw[o:o + n] for o, n in authenticode_ranges(img)))
    assert authenticode_digest(img) == manual


def test_checksum_and_certificate_entry_do_not_change_the_digest() -> None:
    d = unsigned()
    base = authenticode_digest(d)
    assert authenticode_digest(_patch(d, OPT + 64, "<I", 0xDEADBEEF)) == base
    assert authenticode_digest(_patch(d, OPT + 144, "<II", 0, 0)) == base
    assert authenticode_digest(_patch(d, OPT + 72, "<I", 5)) != base


def test_canonical_section_order() -> None:
    # section headers listed in reverse file order: the sections are hashed in file order
    d = bytearray(unsigned())
    t = OPT + 112 + 16 * 8
    first, second = bytes(d[t:t + 40]), bytes(d[t + 40:t + 80])
    d[t:t + 80] = second + first
    img = parse_pe(bytes(d))
    assert [s.name_text for s in img.sections] == [".data", ".text"]
    assert authenticode_ranges(img)[3:] == ((0x400, 0x600), (0xA00, 0x600))
    # ties on PointerToRawData are broken by VirtualAddress, then the name (strcmp)
    d = bytearray(unsigned())
    struct.pack_into("<I", d, t + 40 + 20, 0x400)
    struct.pack_into("<I", d, t + 40 + 12, 0x1000)
    img = parse_pe(bytes(d))
    assert [s.name_text for s in img.sections] == [".text", ".data"]
    assert [s.virtual_address for s in img.sections] == [0x1000, 0x1000]
    ordered = [img.sections[i].name_text for i in _canonical_sections(img)]
    assert ordered == [".data", ".text"]  # strcmp: ".d" < ".t"


def test_kernel_and_flat_rules_agree_on_well_formed_images() -> None:
    for data in (unsigned(), make_pe(pe32=True), make_pe(trailing=b"x" * 24)):
        assert authenticode_digest(data) == authenticode_digest(data, rules=DigestRules.FLAT)


def test_rules_differ_on_a_gap_and_unaligned_end() -> None:
    gap = make_pe(sections=[SectionSpec(b".text", 0x200, 0x60000020)], trailing=b"G" * 0x200)
    b = bytearray(gap)
    # a second section after a 0x200-byte gap: the kernel does not hash the gap
    g = bytearray(make_pe(sections=default_sections(2, 0x200)))
    img = parse_pe(bytes(g))
    s = img.sections[1]
    struct.pack_into("<I", g, s.offset + 20, s.pointer_to_raw_data + 0x200)
    g[s.pointer_to_raw_data:s.pointer_to_raw_data] = b"G" * 0x200
    kernel, flat = (authenticode_digest(bytes(g)),
                    authenticode_digest(bytes(g), rules=DigestRules.FLAT))
    assert kernel != flat
    g2 = bytearray(g)
    g2[s.pointer_to_raw_data + 5] ^= 1  # inside the gap: only the flat rule sees it
    assert authenticode_digest(bytes(g2)) == kernel  # not covered by the kernel's hash
    assert authenticode_digest(bytes(g2), rules=DigestRules.FLAT) != flat
    # unaligned end: osslsigncode pads with zeros, the kernel does not
    odd = bytes(b) + b"abc"
    assert authenticode_ranges(odd, rules=DigestRules.FLAT)[-1] == (-1, 5)
    assert authenticode_digest(odd, rules=DigestRules.FLAT) == \
        authenticode_digest(odd + bytes(5), rules=DigestRules.FLAT)
    assert authenticode_digest(odd) != authenticode_digest(odd + bytes(5))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 0x900), st.integers(0, 3)), min_size=1, max_size=4),
       st.booleans(), st.binary(max_size=40))
def test_generated_images_parse_and_hash(specs: list[tuple[int, int]], pe32: bool,
                                         trailing: bytes) -> None:
    sections = [SectionSpec(f".s{i}".encode(), size, 0x40000040) for i, (size, _) in
                enumerate(specs)]
    data = make_pe(sections=sections, pe32=pe32, trailing=trailing)
    img = parse_pe(data)
    assert img.to_bytes() == data
    assert [s.size_of_raw_data for s in img.sections] == [
        (size + 0x1FF) // 0x200 * 0x200 for size, _ in specs]
    covered = sum(n for _, n in authenticode_ranges(img))
    assert covered == len(data) - 4 - 8
    assert len(authenticode_digest(img, H.SHA384)) == 48


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0x3FF), st.binary(min_size=1, max_size=4))
def test_corrupted_headers_raise_only_parse_errors(offset: int, junk: bytes) -> None:
    d = bytearray(unsigned())
    d[offset:offset + len(junk)] = junk
    try:
        img = parse_pe(bytes(d))
        authenticode_digest(img)
    except ParseError:
        pass


def test_truncated_section_is_refused() -> None:
    with pytest.raises(TruncatedError) as exc:
        parse_pe(unsigned()[:0xC00])
    assert exc.value.field == "PointerToRawData"
