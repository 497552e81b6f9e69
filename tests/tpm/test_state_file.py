"""The documented TPM state file round-trips, and a bad one is a ParseError (never a
KeyError/IndexError later, when the TPM resumes from it)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ParseError, UnsupportedAlgorithmError
from imasim.tpm import SoftTpm
from imasim.tpm.verify import load_ak_public

BANKS = [H.SHA1, H.SHA256, H.SHA384, H.SHA512]


@settings(max_examples=25, deadline=None)
@given(banks=st.lists(st.sampled_from(BANKS), min_size=1, max_size=4, unique=True),
       ops=st.lists(st.tuples(st.sampled_from(["extend", "reset", "resume", "restart",
                                               "cycle", "shutdown"]),
                              st.sampled_from([0, 7, 10, 16, 23])), max_size=12),
       locality=st.sampled_from([0, 3]))
def test_state_file_roundtrip(banks: list[H], ops: list[tuple[str, int]], locality: int) -> None:
    tpm = SoftTpm(banks, startup_locality=locality)
    for op, pcr in ops:
        if op == "extend":
            tpm.extend(pcr, {a: a.hash(bytes([pcr])) for a in banks})
        elif op == "reset" and pcr in (16, 23):
            tpm.reset(pcr)
        elif op == "resume":
            tpm.shutdown(state=True)
            tpm.startup(state=True)
        elif op == "restart":
            tpm.shutdown(state=True)
            tpm.startup()
        elif op == "cycle":
            tpm.power_cycle()
        elif op == "shutdown":
            tpm.shutdown(state=True)
    text = tpm.to_json()
    back = SoftTpm.from_json(text)
    assert back.to_json() == text
    assert (back.reset_count, back.restart_count) == (tpm.reset_count, tpm.restart_count)
    for a in banks:
        assert back.pcr_values(a) == tpm.pcr_values(a)


def _state() -> dict[str, object]:
    tpm = SoftTpm((H.SHA1, H.SHA256))
    tpm.shutdown(state=True)
    return dict(json.loads(tpm.to_json()))


@pytest.mark.parametrize(("key", "value", "field"), [
    ("saved_state", {"sha1": ["00"]}, "saved_state"),            # a bank missing, short PCRs
    ("saved_state", {"sha1": ["00" * 20] * 24, "sha256": ["00"] * 24}, "saved_state"),
    ("startup_locality", 9, "state"),
    ("startup_locality", 2, "state"),             # TPM2_Startup only from locality 0 or 3
    ("reset_count", -1, "reset_count"),
    ("clock_ms", -5, "clock_ms"),
    ("banks", ["sha1", "sha1"], "state"),
    ("keys", {"a": {"kind": "ecc", "scheme": "ECDSA", "private_key_pkcs8": "AAAA"}}, "state"),
])
def test_bad_state_file_is_a_parse_error(key: str, value: object, field: str) -> None:
    good = _state()
    SoftTpm.from_json(json.dumps(good)).startup(state=True)   # the unmodified file resumes
    bad = dict(good, **{key: value})
    with pytest.raises(ParseError) as exc:
        SoftTpm.from_json(json.dumps(bad))
    assert exc.value.field == field


def test_ak_public_with_an_unknown_algorithm_is_an_imasim_error() -> None:
    ak = SoftTpm().create_ak("ecc", seed=b"x")
    der = base64.b64decode(b"".join(ak.public_pem.splitlines()[1:-1]))
    assert serialization.load_der_public_key(der)
    oid_ec = bytes.fromhex("2a8648ce3d0201")      # id-ecPublicKey
    assert oid_ec in der
    weird = der.replace(oid_ec, bytes.fromhex("2a8648ce3a0201"))   # 1.2.840.10042.2.1
    pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(weird)
           + b"-----END PUBLIC KEY-----\n")
    for data in (weird, pem):
        with pytest.raises((UnsupportedAlgorithmError, ParseError)):
            load_ak_public(data)
