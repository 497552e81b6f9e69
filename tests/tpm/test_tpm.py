"""The software TPM: PCR rules, lifecycle, keys, quotes, marshalling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import TPM_BANK_ALGORITHMS
from imasim.algorithms import HashAlgorithm as H
from imasim.env import FixedClock
from imasim.errors import (
    ImasimError,
    NonceMismatchError,
    ParseError,
    PcrMismatchError,
    SignatureInvalidError,
    SimulationError,
)
from imasim.tpm import (
    Attest,
    ClockInfo,
    LocalityError,
    PcrSelection,
    SigScheme,
    SoftTpm,
    parse_attest,
    parse_pcr_file,
    parse_pcr_selection,
    parse_public,
    parse_signature,
    verify_quote,
    write_pcr_file,
)


def test_initial_values() -> None:
    tpm = SoftTpm(TPM_BANK_ALGORITHMS, startup_locality=3)
    for alg in TPM_BANK_ALGORITHMS:
        vals = tpm.pcr_values(alg)
        assert vals[0] == alg.zero[:-1] + b"\x03"
        assert all(v == alg.zero for v in vals[1:17]) and vals[23] == alg.zero
        assert all(v == alg.ones for v in vals[17:23])


def test_extend_is_hash_of_old_and_new() -> None:
    tpm = SoftTpm()
    d = H.SHA256.hash(b"m")
    tpm.extend(10, {H.SHA256: d})
    assert tpm.read(H.SHA256, 10) == H.SHA256.hash(bytes(32) + d)
    assert tpm.read(H.SHA1, 10) == bytes(20)  # banks not given are unchanged


def test_locality_rules() -> None:
    tpm = SoftTpm()
    tpm.extend(16, {H.SHA1: bytes(20)})
    tpm.reset(16)
    tpm.reset(23, locality=3)
    with pytest.raises(LocalityError):
        tpm.reset(10)
    with pytest.raises(LocalityError):
        tpm.reset(17, locality=0)
    with pytest.raises(LocalityError):
        tpm.reset(16, locality=4)  # DRTM TPMs refuse resets at locality 4
    with pytest.raises(LocalityError):
        tpm.extend(17, {H.SHA1: bytes(20)}, locality=0)
    tpm.extend(17, {H.SHA1: bytes(20)}, locality=4)
    tpm.reset(20, locality=2)
    assert tpm.read(H.SHA1, 20) == bytes(20)  # reset is all zeros, not the 0xff start


def test_lifecycle() -> None:
    tpm = SoftTpm()
    tpm.extend(10, {H.SHA1: bytes(20)})
    tpm.extend(16, {H.SHA1: bytes(20)})
    before = tpm.read(H.SHA1, 10)
    tpm.soft_reboot()
    assert tpm.read(H.SHA1, 10) == before and tpm.reset_count == 0
    tpm.shutdown_state()
    tpm.resume()
    assert tpm.read(H.SHA1, 10) == before and tpm.read(H.SHA1, 16) == bytes(20)
    assert tpm.restart_count == 1
    with pytest.raises(SimulationError):
        tpm.resume()
    tpm.power_cycle()
    assert tpm.read(H.SHA1, 10) == bytes(20) and tpm.reset_count == 1
    assert tpm.restart_count == 0
    # Shutdown(STATE) then Startup(CLEAR): a TPM Restart, PCRs cleared
    tpm.extend(10, {H.SHA1: bytes(20)})
    tpm.shutdown_state()
    tpm.power_cycle()
    assert (tpm.reset_count, tpm.restart_count) == (1, 1)
    assert tpm.read(H.SHA1, 10) == bytes(20)
    tpm.shutdown()  # Shutdown(CLEAR) then Startup(CLEAR): a TPM Reset
    tpm.startup(locality=3)
    assert (tpm.reset_count, tpm.restart_count) == (2, 0)
    assert tpm.read(H.SHA1, 0) == bytes(19) + b"\x03"


def test_deterministic_keys() -> None:
    a = SoftTpm().create_ak("ecc", seed=b"s")
    b = SoftTpm().create_ak("ecc", seed=b"s")
    assert a.tpm2b_public == b.tpm2b_public and a.name == b.name
    assert a.name[:2] == b"\x00\x0b" and len(a.name) == 34
    assert len(a.public_area.to_bytes()) == 88
    assert parse_public(a.tpm2b_public) == a.public_area


@pytest.fixture(scope="module")
def rsa_tpm() -> tuple[SoftTpm, object]:
    tpm = SoftTpm(clock=FixedClock(100.0))
    ak = tpm.create_ak("rsa", seed=b"rsa-test")
    return tpm, ak


def test_rsa_ak_template(rsa_tpm) -> None:  # type: ignore[no-untyped-def]
    _, ak = rsa_tpm
    assert len(ak.public_area.to_bytes()) == 280
    assert ak.public_area.attributes == 0x00050072


@pytest.mark.parametrize("kind", ["rsa", "ecc", "pss"])
def test_quote_verifies_and_each_failure_is_distinct(kind: str, rsa_tpm) -> None:  # type: ignore[no-untyped-def]
    tpm, rsa_ak = rsa_tpm
    if kind == "rsa":
        ak = rsa_ak
    elif kind == "pss":
        from imasim.tpm import AttestationKey

        ak = AttestationKey.from_private_key(rsa_ak.private_key, scheme=SigScheme.RSAPSS)
    else:
        ak = tpm.create_ak("ecc", seed=b"e")
    tpm.extend(10, {H.SHA1: H.SHA1.hash(b"a"), H.SHA256: H.SHA256.hash(b"a")})
    q = tpm.quote(ak, {H.SHA256: [0, 10], H.SHA1: [10]}, b"nonce")
    values = q.values_by_bank()
    v = verify_quote(q.attest, q.signature, ak.public_pem, nonce=b"nonce", pcr_values=values)
    assert v.attest.pcr_select == q.selection
    with pytest.raises(NonceMismatchError):
        verify_quote(q.attest, q.signature, ak.public_pem, nonce=b"other", pcr_values=values)
    bad = {a: dict(b) for a, b in values.items()}
    bad[H.SHA256][10] = bytes(32)
    with pytest.raises(PcrMismatchError):
        verify_quote(q.attest, q.signature, ak.public_pem, nonce=b"nonce", pcr_values=bad)
    flipped = bytearray(q.attest)
    flipped[-1] ^= 1
    with pytest.raises(SignatureInvalidError):
        verify_quote(bytes(flipped), q.signature, ak.public_pem, nonce=b"nonce")
    other = SoftTpm().create_ak("ecc", seed=b"other")
    with pytest.raises(SignatureInvalidError):
        verify_quote(q.attest, q.signature, other.public_pem, nonce=b"nonce")
    # the AK can also be given as a TPM2B_PUBLIC
    verify_quote(q.attest, q.signature, ak.tpm2b_public, nonce=b"nonce")


def test_quote_counters_and_clock() -> None:
    clock = FixedClock(0.0)
    tpm = SoftTpm(clock=clock)
    ak = tpm.create_ak("ecc", seed=b"c")
    clock.advance(2.5)
    tpm.power_cycle()
    att = parse_attest(tpm.quote(ak, {H.SHA1: [0]}, b"").attest)
    assert att.clock_info.clock == 2500 and att.clock_info.reset_count == 1
    assert att.qualified_signer == ak.qualified_name


def test_state_round_trip() -> None:
    tpm = SoftTpm((H.SHA256, H.SHA384))
    tpm.extend(10, {H.SHA256: bytes(32)})
    ak = tpm.create_ak("ecc", seed=b"k", handle="ak")
    tpm.power_cycle()
    tpm.extend(11, {H.SHA384: bytes(48)})
    again = SoftTpm.from_json(tpm.to_json())
    assert again.to_json() == tpm.to_json()
    assert again.keys["ak"].public_pem == ak.public_pem
    for bad in ("{", '{"format": "x"}', tpm.to_json().replace('"sha256"', '"md4"', 1)):
        with pytest.raises(ParseError):
            SoftTpm.from_json(bad)


def test_pcr_file_round_trip() -> None:
    sel = PcrSelection({H.SHA256: list(range(10)), H.SHA1: [10]})
    values = [H.SHA256.hash(bytes([i])) for i in range(10)] + [H.SHA1.hash(b"x")]
    data = write_pcr_file(sel, values)
    got_sel, got = parse_pcr_file(data)
    assert got_sel == sel and got[H.SHA256][9] == values[9] and got[H.SHA1][10] == values[10]


# -- marshalling properties --------------------------------------------------------------
banks = st.sampled_from([H.SHA1, H.SHA256, H.SHA384, H.SHA512])
selections = st.lists(st.tuples(banks, st.lists(st.integers(0, 23), max_size=24)),
                      max_size=4, unique_by=lambda t: t[0]).map(PcrSelection)


@given(selections)
def test_selection_roundtrip(sel: PcrSelection) -> None:
    assert parse_pcr_selection(sel.to_bytes()) == sel


@given(selections, st.binary(max_size=64), st.binary(max_size=66), st.integers(0, 2**64 - 1),
       st.integers(0, 2**32 - 1), st.binary(min_size=32, max_size=32))
def test_attest_roundtrip(sel: PcrSelection, nonce: bytes, signer: bytes, clock: int,
                          reset: int, digest: bytes) -> None:
    att = Attest(qualified_signer=signer, extra_data=nonce,
                 clock_info=ClockInfo(clock=clock, reset_count=reset, restart_count=0),
                 firmware_version=clock, pcr_select=sel, pcr_digest=digest)
    data = att.to_bytes()
    again = parse_attest(data)
    assert again == att and again.to_bytes() == data


@settings(max_examples=50)
@given(st.integers(0, 10))
def test_truncated_structures_raise_parse_error_with_offset(n: int) -> None:
    tpm = SoftTpm()
    ak = tpm.create_ak("ecc", seed=bytes([n]))
    q = tpm.quote(ak, {H.SHA1: [0, 10]}, bytes(n))
    for data, parse in ((q.attest, parse_attest), (q.signature, parse_signature),
                        (ak.tpm2b_public, parse_public)):
        assert parse(data).to_bytes() == (data if parse is not parse_public else data[2:])
        for cut in range(len(data)):
            with pytest.raises(ParseError) as exc:
                parse(data[:cut])
            assert exc.value.offset is not None


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_garbage_raises_only_parse_errors(data: bytes) -> None:
    for parse in (parse_attest, parse_signature, parse_public, parse_pcr_selection,
                  parse_pcr_file):
        try:
            parse(data)  # type: ignore[operator]
        except ImasimError:
            pass
