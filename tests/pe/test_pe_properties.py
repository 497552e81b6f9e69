"""Round trips and the "only ParseError escapes" contract for the Authenticode codecs."""

from __future__ import annotations

import struct
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ImasimError, KeyRejectedError, ParseError
from imasim.keys import Keyring
from imasim.sig.authenticode import (
    SignMode,
    SpcIndirectDataContent,
    WinCertificate,
    authenticode_digest,
    parse_authenticode,
    parse_certificate_table,
    parse_spc_indirect_data,
    sign_pe,
    verify_authenticode,
)
from imasim.sig.pefile import parse_pe, pe_checksum
from pe.pe_support import pki, unsigned

_ALGS = [H.SHA1, H.SHA224, H.SHA256, H.SHA384, H.SHA512]


def _with_table(table: bytes) -> bytes:
    """The generated image with ``table`` appended and pointed at by entry 4."""
    base = bytearray(unsigned())
    d = parse_pe(bytes(base)).certificate_directory
    assert d is not None
    struct.pack_into("<II", base, d.offset, len(base), len(table))
    return bytes(base) + table


@cache
def _signed() -> bytes:
    leaf = pki()["leaf"]
    first = sign_pe(unsigned(), key=leaf.key, certificate=leaf.cert)
    return sign_pe(first, key=leaf.key, certificate=leaf.cert, mode=SignMode.NEST,
                   hash_alg=H.SHA384)


_entry = st.builds(
    lambda body, rev, typ: WinCertificate(offset=0, length=len(body) + 8, revision=rev,
                                          certificate_type=typ, certificate=body),
    st.binary(max_size=40), st.sampled_from([0x100, 0x200]), st.integers(1, 4))


@settings(max_examples=100, deadline=None)
@given(st.lists(_entry, min_size=1, max_size=5))
def test_certificate_table_round_trip(entries: list[WinCertificate]) -> None:
    table = b"".join(e.to_bytes() + bytes(-e.length % 8) for e in entries)
    data = _with_table(table)
    parsed = parse_certificate_table(data)
    assert [(p.length, p.revision, p.certificate_type, p.certificate) for p in parsed] == [
        (e.length, e.revision, e.certificate_type, e.certificate) for e in entries]
    assert all(p.offset % 8 == 0 for p in parsed)
    assert b"".join(p.to_bytes() + bytes(-p.length % 8) for p in parsed) == table


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(_ALGS), st.data())
def test_spc_indirect_data_round_trip(alg: H, data: st.DataObject) -> None:
    digest = data.draw(st.binary(min_size=alg.digest_size, max_size=alg.digest_size))
    spc = SpcIndirectDataContent.create(digest, alg)
    again = parse_spc_indirect_data(spc.to_bytes())
    assert again == spc and again.to_bytes() == spc.raw
    assert (again.digest, again.digest_alg) == (digest, alg)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_spc_parser_only_raises_parse_errors(blob: bytes) -> None:
    try:
        spc = parse_spc_indirect_data(blob)
    except ParseError:
        return
    assert spc.to_bytes() == blob


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupted_signatures_raise_only_parse_errors(data: st.DataObject) -> None:
    signed = bytearray(_signed())
    d = parse_pe(bytes(signed)).certificate_directory
    assert d is not None
    pos = data.draw(st.integers(d.virtual_address, len(signed) - 1))
    signed[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        signed = signed[:data.draw(st.integers(d.virtual_address, len(signed)))]
    try:
        for sig in parse_authenticode(bytes(signed)):
            assert sig.indirect_data.digest_alg in (H.SHA256, H.SHA384, None)
    except (ParseError, KeyRejectedError):  # KeyRejected: repeated authattrs (-EKEYREJECTED)
        pass


def test_signed_image_parses_back_and_keeps_its_bytes() -> None:
    signed = _signed()
    img = parse_pe(signed)
    assert img.to_bytes() == signed
    assert img.checksum == pe_checksum(signed, img.checksum_offset)
    sigs = parse_authenticode(img)
    assert [s.indirect_data.digest for s in sigs] == [
        authenticode_digest(unsigned()), authenticode_digest(unsigned(), H.SHA384)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_verify_on_corrupted_images_raises_only_imasim_errors(data: st.DataObject) -> None:
    signed = bytearray(_signed())
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(signed) - 1))
        signed[pos] = data.draw(st.integers(0, 255))
    ring = Keyring(".secondary_trusted_keys")
    ring.add(pki()["root"].as_key())
    try:
        verify_authenticode(bytes(signed), keyrings=[ring])
    except ImasimError:
        pass
