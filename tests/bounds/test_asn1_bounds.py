"""ASN.1 entry points refuse oversized or overdeep DER before pyasn1 (or any Python walk
over every element) sees it: PKCS#7, SpcIndirectDataContent, X.509 names."""

from __future__ import annotations

import pytest

from budget import MB, within_budget
from imasim._der import check_bounds, der, der_int, der_oid
from imasim.errors import LimitExceededError, ParseError, TruncatedError
from imasim.limits import Limits
from imasim.sig import parse_modsig, parse_pkcs7
from imasim.sig.authenticode import parse_spc_indirect_data

SHA256 = der(0x30, der_oid("2.16.840.1.101.3.4.2.1"))
RSA = der(0x30, der_oid("1.2.840.113549.1.1.1"))
SIGNER = der(0x30, der_int(1) + der(0x30, der(0x30, b"") + der_int(1)) + SHA256 + RSA
             + der(0x04, b"x"))


def signed_data(*, algs: bytes = SHA256, certs: bytes | None = None, signers: bytes = SIGNER,
                extra_signer: bytes = b"") -> bytes:
    body = der_int(1) + der(0x31, algs) + der(0x30, der_oid("1.2.840.113549.1.7.1"))
    if certs is not None:
        body += der(0xA0, certs)
    body += der(0x31, signers + extra_signer)
    return der(0x30, der_oid("1.2.840.113549.1.7.2") + der(0xA0, der(0x30, body)))


def test_the_minimal_message_parses() -> None:
    sd = parse_pkcs7(signed_data())
    assert len(sd.signer_infos) == 1


def test_a_2mb_set_of_400000_entries_is_refused_quickly() -> None:
    # the input: 18-43 s and ~600 MB in pyasn1 before the bound
    tiny = der(0x30, der(0x06, b"\x01"))  # SEQUENCE { OID 0.1 }: 5 bytes
    msg = signed_data(algs=tiny * 400_000)
    assert 2 * MB - 100_000 < len(msg) < 2.1 * MB
    spent = within_budget(lambda: parse_pkcs7(msg), len(msg), seconds_per_mb=0.25,
                          mb_per_mb=5)
    assert isinstance(spent.error, LimitExceededError)
    assert spent.error.field == "elements"


@pytest.mark.parametrize("field", ["digestAlgorithms", "certificates", "signerInfos"])
def test_each_set_of_holds_at_most_max_pkcs7_entries(field: str) -> None:
    n = Limits().max_pkcs7_entries
    kw = {"digestAlgorithms": {"algs": SHA256 * (n + 1)},
          "certificates": {"certs": der(0x30, b"") * (n + 1)},
          "signerInfos": {"signers": SIGNER * (n + 1)}}[field]
    with pytest.raises(LimitExceededError) as info:
        parse_pkcs7(signed_data(**kw))  # type: ignore[arg-type]
    assert info.value.field == field
    # and exactly the limit is still read
    ok = {"digestAlgorithms": {"algs": SHA256 * n},
          "certificates": {"certs": der(0x30, b"") * n}}.get(field)
    if ok is not None:
        with pytest.raises(ParseError) as info:
            parse_pkcs7(signed_data(**ok))  # type: ignore[arg-type]
            raise ParseError("parsed")  # the empty certificates fail the schema check
        assert not isinstance(info.value, LimitExceededError)


def _deep(depth: int) -> bytes:
    """``depth`` nested SEQUENCEs around an empty OCTET STRING, 6 bytes a level."""
    heads = [b"\x30\x84" + (2 + 6 * (depth - 1 - i)).to_bytes(4, "big") for i in range(depth)]
    return b"".join(heads) + b"\x04\x00"


def test_nesting_is_refused_at_max_asn1_depth_without_recursion() -> None:
    # 1 MB of nested SEQUENCE headers inside the SignerInfo's unsigned attributes
    msg = signed_data(extra_signer=_deep(150_000))
    spent = within_budget(lambda: parse_pkcs7(msg), len(msg))
    assert isinstance(spent.error, LimitExceededError) and spent.error.field == "depth"


def _many_unsigned_attributes(n: int) -> bytes:
    attr = der(0x30, der_oid("1.2.3") + der(0x31, b""))
    si = der(0x30, der_int(1) + der(0x30, der(0x30, b"") + der_int(1)) + SHA256 + RSA
             + der(0x04, b"x") + der(0xA1, attr * n))
    return signed_data(signers=si)


def test_elements_just_under_the_limit_stay_within_budget() -> None:
    # the most elements pyasn1 is ever given: unsigned attributes (decoded by pyasn1 as
    # Attribute SEQUENCEs, 3 elements each) filling max_asn1_elements
    n = (Limits().max_asn1_elements - 40) // 3
    msg = _many_unsigned_attributes(n)
    check_bounds(msg)  # under the limit: pyasn1 runs
    spent = within_budget(lambda: parse_pkcs7(msg), len(msg), memory=False)
    assert spent.error is None
    # memory grows linearly with the elements (tracemalloc slows pyasn1 tenfold, so a
    # quarter of them is measured): at most 100 MB for the whole limit
    quarter = _many_unsigned_attributes(n // 4)
    within_budget(lambda: parse_pkcs7(quarter), len(msg), mb_per_mb=25, seconds_per_mb=10)


def test_modsig_goes_through_the_same_bound() -> None:
    tiny = der(0x30, der(0x06, b"\x01"))
    msg = signed_data(algs=tiny * 100_000)
    # struct module_signature: algo, hash, id_type (2: PKCS#7), signer_len, key_id_len,
    # pad[3], sig_len (big endian)
    blob = b"module" + msg + bytes([0, 0, 2, 0, 0, 0, 0, 0]) + len(msg).to_bytes(
        4, "big") + b"~Module signature appended~\n"
    with pytest.raises(LimitExceededError):
        parse_modsig(blob)


def test_spc_indirect_data_is_bounded() -> None:
    blob = der(0x30, der(0x30, der_oid("1.3.6.1.4.1.311.2.1.15") + der(0x30, b"\x05\x00"
                                                                       * 300_000)) + b"")
    spent = within_budget(lambda: parse_spc_indirect_data(blob), len(blob))
    assert isinstance(spent.error, LimitExceededError)


def test_a_huge_oid_is_refused_not_decoded_quadratically() -> None:
    oid = der(0x06, b"\x81" * (1 * MB) + b"\x01")
    algs = der(0x30, oid)
    msg = signed_data(algs=algs)
    # digestAlgorithms are not decoded; the signer's digest algorithm is
    si = der(0x30, der_int(1) + der(0x30, der(0x30, b"") + der_int(1)) + algs + RSA
             + der(0x04, b"x"))
    msg = signed_data(signers=si)
    spent = within_budget(lambda: parse_pkcs7(msg), len(msg))
    assert isinstance(spent.error, LimitExceededError) and spent.error.field == "oid"


@pytest.mark.parametrize("data, error", [
    (b"", TruncatedError), (b"\x30", TruncatedError), (b"\x30\x80\x00\x00", ParseError),
    (b"\x3f\x01\x00", ParseError), (b"\x30\x85\x01\x00\x00\x00\x00", LimitExceededError),
    (b"\x30\x03\x30\x02\x00", TruncatedError),
])
def test_check_bounds_refuses_what_parse_tlv_refuses(data: bytes, error: type) -> None:
    with pytest.raises(error):
        check_bounds(data)


def test_check_bounds_returns_the_end_of_the_first_element() -> None:
    assert check_bounds(der(0x30, der(0x02, b"\x01")) + b"trailing") == 5
    assert check_bounds(b"\x04\x00") == 2
    with pytest.raises(LimitExceededError):
        check_bounds(der(0x30, der(0x02, b"\x01") * 3), Limits(max_asn1_elements=3))
    check_bounds(der(0x30, der(0x02, b"\x01") * 3), Limits(max_asn1_elements=4))
    with pytest.raises(LimitExceededError):
        check_bounds(_deep(3), Limits(max_asn1_depth=2))
    check_bounds(_deep(3), Limits(max_asn1_depth=3))
