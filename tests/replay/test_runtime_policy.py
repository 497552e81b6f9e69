"""Keylime runtime policies: every malformed field is a ParseError, nothing else escapes."""

from __future__ import annotations

import json

import pytest

from imasim.errors import ParseError
from imasim.keys.key import Key
from imasim.runtime_policy import RuntimePolicy
from pki import ec_key, make_cert  # type: ignore[import-not-found]

GOOD = {"meta": {"version": 1, "generator": 3}, "release": 0,
        "digests": {"/bin/a": ["ab" * 32]}, "excludes": ["/tmp/.*"], "keyrings": {},
        "ima": {"ignored_keyrings": ["*"], "log_hash_alg": "sha256", "dm_policy": None},
        "ima-buf": {"kexec-cmdline": ["cd" * 32]}, "verification-keys": ""}


def test_good_policy_round_trips() -> None:
    p = RuntimePolicy.from_keylime_json(json.dumps(GOOD))
    assert p.is_ignored_keyring(".ima") and p.is_excluded("/tmp/x")
    assert p.log_hash_alg.kernel_name == "sha256"
    assert RuntimePolicy.from_keylime_json(p.to_keylime_json()) == p


@pytest.mark.parametrize("change", [
    {"digests": {"/bin/a": ["zz" * 32]}},
    {"digests": {"/bin/a": ["ab" * 10]}},
    {"digests": {"/bin/a": []}},
    {"digests": {"/bin/a": "ab" * 32}},
    {"digests": ["ab" * 32]},
    {"excludes": ["(unclosed"]},
    {"excludes": "x"},
    {"ima": {"log_hash_alg": "md5"}},
    {"ima": {"dm_policy": {"x": 1}}},
    {"ima": {"ignored_keyrings": [1]}},
    {"ima": []},
    {"meta": {"version": 2}},
    {"release": -1},
    {"release": True},
    {"verification-keys": "not json"},
    {"verification-keys": json.dumps({"keyids": [1], "pubkeys": ["!!"]})},
    {"verification-keys": json.dumps({"pubkeys": []})},
    {"verification-keys": 5},
])
def test_bad_fields_are_parse_errors(change: dict[str, object]) -> None:
    doc = {**GOOD, **change}
    with pytest.raises(ParseError):
        RuntimePolicy.from_keylime_json(json.dumps(doc))


@pytest.mark.parametrize("text", [b"", b"[", b"[1]", b"\xff\xfe", b"[" * 200_000,
                                  b'{"payload": "x"}'])
def test_not_a_policy(text: bytes) -> None:
    with pytest.raises(ParseError):
        RuntimePolicy.from_keylime_json(text)


def test_verification_keys_round_trip() -> None:
    key = Key.from_certificate(make_cert("policy signer", ec_key("policy")).der)
    p = RuntimePolicy({}, verification_keys=(key,))
    back = RuntimePolicy.from_keylime_json(p.to_keylime_json())
    assert [k.key_id_v2 for k in back.verification_keys] == [key.key_id_v2]
    doc = json.loads(p.to_keylime_json())
    assert json.loads(doc["verification-keys"])["keyids"] == [
        int.from_bytes(key.key_id_v2, "big")]
