"""security.ima: codecs, signatures, and interop with evmctl."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ImasimError, KeyNotFoundError, ParseError, SignatureInvalidError
from imasim.keys import Keyring
from imasim.sig.xattr import XattrKind, XattrValue, parse_xattr, sign_xattr, verify_xattr
from pki import pki
from tools import need


def ima_ring(*names: str) -> Keyring:
    ring = Keyring(".ima")
    for n in names:
        ring.add(pki()[n].as_key())
    return ring


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("name", ["leaf", "rsa_leaf"])
def test_sign_verify(version: int, name: str) -> None:
    s = pki()[name]
    d = H.SHA256.hash(b"file")
    key = s.as_key()
    value = sign_xattr(d, key=s.key, keyid=key.key_id_v2, version=version)
    assert verify_xattr(value, d, keyring=ima_ring(name)) == key
    with pytest.raises(SignatureInvalidError):
        verify_xattr(value, H.SHA256.hash(b"other"), keyring=ima_ring(name))
    with pytest.raises(KeyNotFoundError):
        verify_xattr(value, d, keyring=ima_ring("stranger"))
    assert value[:2] == (b"\x03\x02" if version == 2 else b"\x06\x03")


@given(st.sampled_from([H.SHA1, H.SHA256, H.SHA512]), st.binary(min_size=4, max_size=4),
       st.binary(min_size=1, max_size=300), st.sampled_from([2, 3]))
def test_roundtrips(alg: H, keyid: bytes, sig: bytes, version: int) -> None:
    for v in (XattrValue(XattrKind.DIGEST_NG, alg, alg.hash(sig)),
              XattrValue(XattrKind.DIGSIG, alg, version=version, keyid=keyid, signature=sig)):
        data = v.to_bytes()
        again = parse_xattr(data)
        assert again.to_bytes() == data and again.kind == v.kind


@given(st.binary(max_size=80))
def test_garbage(data: bytes) -> None:
    try:
        parse_xattr(data)
    except ImasimError:
        pass


def test_sig_size_mismatch_offset() -> None:
    with pytest.raises(ParseError) as exc:
        parse_xattr(bytes([3, 2, 4, 1, 2, 3, 4, 0, 9]) + b"x" * 3)
    assert exc.value.offset == 7


@pytest.mark.interop
@pytest.mark.parametrize("name", ["rsa_leaf", "leaf"])
def test_evmctl_interop(name: str, tmp_path: Path) -> None:
    evmctl = need("evmctl")
    s = pki()[name]
    (tmp_path / "key.pem").write_bytes(s.key_pem)
    (tmp_path / "cert.der").write_bytes(s.der)
    f = tmp_path / "file"
    f.write_bytes(b"contents\n")
    subprocess.run([evmctl, "ima_sign", "--key", str(tmp_path / "key.pem"), "-a", "sha256",
                    "--sigfile", str(f)], check=True, capture_output=True, timeout=60)
    real = (tmp_path / "file.sig").read_bytes()
    d = hashlib.sha256(f.read_bytes()).digest()
    key = s.as_key()
    verify_xattr(real, d, keyring=ima_ring(name))
    ours = sign_xattr(d, key=s.key, keyid=key.key_id_v2)
    if name == "rsa_leaf":  # PKCS#1 v1.5 is deterministic; evmctl's ECDSA is not
        assert ours == real
    else:
        assert ours[:9 - 2] == real[:9 - 2]  # same type, version, algorithm, key id
    g = tmp_path / "g"
    g.write_bytes(f.read_bytes())
    (tmp_path / "g.sig").write_bytes(ours)
    ok = subprocess.run([evmctl, "ima_verify", "--key", str(tmp_path / "cert.der"), "--sigfile",
                         str(g)], capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    g.write_bytes(b"changed\n")
    bad = subprocess.run([evmctl, "ima_verify", "--key", str(tmp_path / "cert.der"),
                          "--sigfile", str(g)], capture_output=True, timeout=60)
    assert bad.returncode != 0
