"""Appended module signatures: imasim against sign-file and openssl cms, with kernel verdicts."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    RevokedError,
    UnsupportedAlgorithmError,
)
from imasim.keys import Blacklist, Keyring
from imasim.sig import parse_modsig, parse_pkcs7, sign_module, split_modsig, verify_modsig
from pki import Signer, pki
from tools import need

PAYLOAD = hashlib.sha512(b"module").digest() * 300


def trusted(*signers: Signer) -> Keyring:
    ring = Keyring(".secondary_trusted_keys")
    for s in signers:
        ring.add(s.as_key())
    return ring


@pytest.mark.parametrize("name", ["leaf", "rsa_leaf"])
@pytest.mark.parametrize("alg", [H.SHA256, H.SHA384, H.SHA512])
def test_sign_and_verify(name: str, alg: H) -> None:
    s = pki()[name]
    signed = sign_module(PAYLOAD, key=s.key, certificate=s.cert, hash_alg=alg)
    v = verify_modsig(signed, keyring=trusted(s))
    assert v.trusted_key.description == s.as_key().description
    payload, sig = parse_modsig(signed)
    assert payload == PAYLOAD and sig.payload_len == len(PAYLOAD)


def test_key_id_form_and_tampering() -> None:
    s = pki()["leaf"]
    signed = sign_module(PAYLOAD, key=s.key, certificate=s.cert, use_key_id=True)
    assert parse_pkcs7(parse_modsig(signed)[1].pkcs7).signer_infos[0].by_skid
    verify_modsig(signed, keyring=trusted(s))
    tampered = bytearray(signed)
    tampered[100] ^= 1
    with pytest.raises(KeyRejectedError):
        verify_modsig(bytes(tampered), keyring=trusted(s))
    with pytest.raises(KeyNotFoundError):
        verify_modsig(signed, keyring=trusted(pki()["stranger"]))
    bl = Blacklist()
    tbs = s.as_key().tbs_hash()
    assert tbs is not None
    bl.add_tbs_hash(tbs)  # checked when a certificate is parsed: the trusted key is not
    verify_modsig(signed, keyring=trusted(s), blacklist=bl)
    bl.add_revocation_certificate(s.as_key())  # is_key_on_revocation_list: every time
    with pytest.raises(RevokedError):
        verify_modsig(signed, keyring=trusted(s), blacklist=bl)


def test_unsigned_and_malformed_trailers() -> None:
    assert split_modsig(PAYLOAD) is None
    s = pki()["leaf"]
    signed = bytearray(sign_module(PAYLOAD, key=s.key, certificate=s.cert))
    bad = bytearray(signed)
    bad[-28 - 12 + 2] = 1  # id_type = X509
    with pytest.raises(UnsupportedAlgorithmError):
        split_modsig(bytes(bad))
    bad = bytearray(signed)
    bad[-28 - 4:-28] = (len(signed)).to_bytes(4, "big")  # sig_len larger than the file
    with pytest.raises(ParseError) as exc:
        split_modsig(bytes(bad))
    assert exc.value.field == "sig_len"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_signatures_raise_only_imasim_errors(data: st.DataObject) -> None:
    s = pki()["leaf"]
    signed = bytearray(sign_module(b"x" * 64, key=s.key, certificate=s.cert))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(signed) - 1))
        signed[i] = data.draw(st.integers(0, 255))
    try:
        verify_modsig(bytes(signed), keyring=trusted(s))
    except ImasimError:
        pass


# -- interop ----------------------------------------------------------------------------
@pytest.mark.interop
@pytest.mark.parametrize("name", ["rsa_leaf", "leaf"])
@pytest.mark.parametrize("flags", [[], ["-k"]])
@pytest.mark.parametrize("alg", [H.SHA256, H.SHA384, H.SHA512])
def test_sign_file_signatures_verify_and_match(name: str, flags: list[str], alg: H,
                                               tmp_path: Path) -> None:
    sign_file = need("sign-file")
    s = pki()[name]
    (tmp_path / "key.pem").write_bytes(s.key_pem)
    (tmp_path / "cert.der").write_bytes(s.der)
    mod = tmp_path / "m.ko"
    mod.write_bytes(PAYLOAD)
    subprocess.run([sign_file, *flags, alg.kernel_name, str(tmp_path / "key.pem"),
                    str(tmp_path / "cert.der"), str(mod)], check=True, timeout=60)
    real = mod.read_bytes()
    verify_modsig(real, keyring=trusted(s))
    assert parse_pkcs7(parse_modsig(real)[1].pkcs7).signer_infos[0].digest_alg is alg
    ours = sign_module(PAYLOAD, key=s.key, certificate=s.cert, use_key_id=bool(flags),
                       hash_alg=alg)
    if name == "rsa_leaf":  # PKCS#1 v1.5 is deterministic: byte-identical output
        assert ours == real


@pytest.mark.interop
@pytest.mark.parametrize("name", ["rsa_leaf", "leaf"])
def test_openssl_cms_verifies_imasim_signatures(name: str, tmp_path: Path) -> None:
    openssl = need("openssl")
    s = pki()[name]
    signed = sign_module(PAYLOAD, key=s.key, certificate=s.cert)
    payload, sig = parse_modsig(signed)
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.p7").write_bytes(sig.pkcs7)
    (tmp_path / "cert.pem").write_bytes(s.pem)

    def cms(content: Path) -> int:
        return subprocess.run(
            [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in",
             str(tmp_path / "sig.p7"), "-content", str(content), "-certfile",
             str(tmp_path / "cert.pem"), "-noverify", "-out", "/dev/null"],
            capture_output=True, timeout=60).returncode

    assert cms(tmp_path / "payload") == 0
    (tmp_path / "other").write_bytes(payload[:-1] + b"?")
    assert cms(tmp_path / "other") != 0


@pytest.mark.interop
def test_kernel_and_openssl_disagree_on_signed_attributes(tmp_path: Path) -> None:
    """openssl accepts a module signature with signed attributes; the kernel's
    VERIFYING_MODULE_SIGNATURE refuses it ("Invalid module sig (has authattrs)")."""
    from imasim.sig import sign_pkcs7
    from imasim.sig.modsig import append_signature

    openssl = need("openssl")
    s = pki()["rsa_leaf"]
    blob = sign_pkcs7(PAYLOAD, key=s.key, certificate=s.cert, signed_attributes=True)
    with pytest.raises(KeyRejectedError):
        verify_modsig(append_signature(PAYLOAD, blob), keyring=trusted(s))
    (tmp_path / "payload").write_bytes(PAYLOAD)
    (tmp_path / "sig.p7").write_bytes(blob)
    (tmp_path / "cert.pem").write_bytes(s.pem)
    ok = subprocess.run([openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in",
                         str(tmp_path / "sig.p7"), "-content", str(tmp_path / "payload"),
                         "-certfile", str(tmp_path / "cert.pem"), "-noverify", "-out",
                         "/dev/null"], capture_output=True, timeout=60)
    assert ok.returncode == 0


@pytest.mark.interop
def test_kernel_trusts_a_direct_key_where_openssl_wants_a_chain(tmp_path: Path) -> None:
    """The kernel trusts a module whose signer key is in the keyring, whatever issued it;
    openssl cms without -noverify wants a chain to a trusted CA."""
    openssl = need("openssl")
    s = pki()["rsa_leaf"]
    signed = sign_module(PAYLOAD, key=s.key, certificate=s.cert)
    verify_modsig(signed, keyring=trusted(s))
    payload, sig = parse_modsig(signed)
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.p7").write_bytes(sig.pkcs7)
    (tmp_path / "cert.pem").write_bytes(s.pem)
    res = subprocess.run([openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in",
                          str(tmp_path / "sig.p7"), "-content", str(tmp_path / "payload"),
                          "-certfile", str(tmp_path / "cert.pem"), "-CAfile",
                          str(tmp_path / "cert.pem"), "-purpose", "any", "-out", "/dev/null"],
                         capture_output=True, timeout=60)
    assert res.returncode != 0  # the leaf is no CA and its issuer is not given
