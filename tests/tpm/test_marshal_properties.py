"""Hypothesis round trips for every TPM marshal/unmarshal pair, and their bad-input errors.

(PCR selections and TPMS_ATTEST have theirs in test_tpm.py; these add TPMS_CLOCK_INFO's
restartCount/safe, TPMT_SIGNATURE, TPM2B_PUBLIC, and the tpm2-tools PCR file.)
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ParseError
from imasim.tpm import PcrSelection, parse_pcr_file, write_pcr_file
from imasim.tpm.marshal import (
    TPM_ALG_ECC,
    TPM_ALG_RSA,
    Attest,
    ClockInfo,
    PublicArea,
    Signature,
    SigScheme,
    parse_attest,
    parse_pcr_selection,
    parse_public,
    parse_signature,
)

banks = st.sampled_from([H.SHA1, H.SHA256, H.SHA384, H.SHA512])
u16_bytes = st.binary(max_size=80)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.booleans(), st.binary(max_size=64))
def test_clock_info_in_attest_roundtrip(clock: int, reset: int, restart: int, safe: bool,
                                        nonce: bytes) -> None:
    att = Attest(qualified_signer=b"\x00\x0b" + bytes(32), extra_data=nonce,
                 clock_info=ClockInfo(clock=clock, reset_count=reset, restart_count=restart,
                                      safe=safe),
                 firmware_version=7, pcr_select=PcrSelection({H.SHA256: [0, 10]}),
                 pcr_digest=bytes(32))
    data = att.to_bytes()
    assert parse_attest(data) == att and parse_attest(data).to_bytes() == data


@given(st.sampled_from(list(SigScheme)), banks, u16_bytes, u16_bytes, u16_bytes)
def test_signature_roundtrip(scheme: SigScheme, alg: H, sig: bytes, r: bytes, s: bytes) -> None:
    value = (Signature(scheme=scheme, hash_alg=alg, r=r, s=s) if scheme is SigScheme.ECDSA
             else Signature(scheme=scheme, hash_alg=alg, sig=sig))
    data = value.to_bytes()
    assert parse_signature(data) == value
    assert parse_signature(data).to_bytes() == data
    for cut in range(len(data)):
        try:
            parse_signature(data[:cut])
        except ParseError as exc:
            assert exc.offset is not None
        else:  # pragma: no cover - a prefix is never a whole TPMT_SIGNATURE
            raise AssertionError(cut)


@st.composite
def public_areas(draw: st.DrawFn) -> PublicArea:
    common = {"name_alg": draw(banks), "attributes": draw(st.integers(0, 2**32 - 1)),
              "scheme_hash": draw(banks), "auth_policy": draw(st.binary(max_size=64))}
    if draw(st.booleans()):
        return PublicArea(type=TPM_ALG_RSA, scheme=draw(st.sampled_from(
            [SigScheme.RSASSA, SigScheme.RSAPSS])), key_bits=draw(st.integers(0, 0xFFFF)),
            exponent=draw(st.integers(0, 2**32 - 1)), modulus=draw(st.binary(max_size=512)),
            **common)
    return PublicArea(type=TPM_ALG_ECC, scheme=SigScheme.ECDSA,
                      curve=draw(st.integers(0, 0xFFFF)), x=draw(u16_bytes),
                      y=draw(u16_bytes), **common)


@settings(max_examples=200)
@given(public_areas())
def test_public_roundtrip_and_name(area: PublicArea) -> None:
    data = area.to_tpm2b()
    again = parse_public(data)
    assert again == area and again.to_tpm2b() == data and again.name == area.name
    for cut in range(0, len(data), 7):
        try:
            parse_public(data[:cut])
        except ParseError as exc:
            assert exc.offset is not None
        else:  # pragma: no cover
            raise AssertionError(cut)


def test_public_with_a_symmetric_definition_keeps_its_bytes_for_the_name() -> None:
    """A storage-style TPMT_SYM_DEF_OBJECT (AES-128-CFB) between authPolicy and scheme:
    parsed fields drop it, but the Name must hash the bytes as given."""
    body = struct.pack(">HHIH", TPM_ALG_ECC, 0x000B, 0x00030072, 0)
    body += struct.pack(">HHH", 0x0006, 128, 0x0043)  # symmetric AES 128 CFB
    body += struct.pack(">HH", SigScheme.ECDSA, 0x000B)
    body += struct.pack(">HHH", 3, 0x0020, 0x000B)  # curve P-256, kdf KDF1_SP800_56A sha256
    body += struct.pack(">H", 32) + bytes(32) + struct.pack(">H", 32) + bytes(32)
    area = parse_public(struct.pack(">H", len(body)) + body)
    assert area.to_bytes() == body
    assert area.name == b"\x00\x0b" + H.SHA256.hash(body)


@given(st.lists(st.tuples(banks, st.lists(st.integers(0, 23), min_size=1, max_size=24,
                                          unique=True)),
                min_size=1, max_size=4, unique_by=lambda t: t[0]))
def test_pcr_file_roundtrip(items: list[tuple[H, list[int]]]) -> None:
    sel = PcrSelection(items)
    values = [alg.hash(bytes([i])) for alg, pcrs in sel.items() for i in pcrs]
    data = write_pcr_file(sel, values)
    got_sel, got = parse_pcr_file(data)
    assert got_sel == sel
    assert [got[alg][i] for alg, pcrs in sel.items() for i in pcrs] == values
    # the raw form tpm2_checkquote reads with -l: digests concatenated in selection order
    assert parse_pcr_file(b"".join(values), sel)[1] == got
    for cut in (0, 3, len(data) // 2, len(data) - 1):
        try:
            parse_pcr_file(data[:cut])
        except ParseError as exc:
            assert exc.offset is not None
        else:  # pragma: no cover
            raise AssertionError(cut)


_sel_items = st.lists(st.tuples(banks, st.lists(st.integers(0, 23), max_size=24)),
                      max_size=4, unique_by=lambda t: t[0])


@given(_sel_items)
def test_pcr_selection_bytes_roundtrip_and_truncation(items: list[tuple[H, list[int]]]) -> None:
    """TPML_PCR_SELECTION both ways, and every truncation a ParseError with an offset."""
    data = PcrSelection(items).to_bytes()
    assert parse_pcr_selection(data).to_bytes() == data
    for cut in range(len(data)):
        with pytest.raises(ParseError) as exc:
            parse_pcr_selection(data[:cut])
        assert exc.value.offset is not None
