"""`imasim modsig` and `imasim imasig`: exit codes and agreement with sign-file/evmctl output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.sig import sign_module
from imasim.sig.xattr import sign_xattr
from pki import pki

DEBIAN = Path(__file__).parent.parent / "vectors" / "debian"


def test_modsig_cli(tmp_path: Path) -> None:
    s = pki()["rsa_leaf"]
    (tmp_path / "key.pem").write_bytes(s.key_pem)
    (tmp_path / "cert.der").write_bytes(s.der)
    mod = tmp_path / "m.ko"
    mod.write_bytes(b"\x7fELF payload" * 100)
    assert main(["modsig", "sign", "--key", str(tmp_path / "key.pem"), "--cert",
                 str(tmp_path / "cert.der"), str(mod), "-o", str(tmp_path / "s.ko")]) == 0
    signed = (tmp_path / "s.ko").read_bytes()
    assert signed == sign_module(mod.read_bytes(), key=s.key, certificate=s.cert)
    trust = ["--trust", str(tmp_path / "cert.der")]
    assert main(["modsig", "verify", str(tmp_path / "s.ko"), *trust]) == 0
    assert main(["modsig", "verify", str(mod), *trust]) == 1  # unsigned
    assert main(["modsig", "verify", str(tmp_path / "s.ko"), "--trust",
                 str(DEBIAN / "debian-secure-boot-ca.pem")]) == 1  # untrusted
    assert main(["modsig", "verify", str(tmp_path / "s.ko")]) == 2  # no --trust
    assert main(["modsig", "show", str(tmp_path / "s.ko")]) == 0
    assert main(["modsig", "strip", str(tmp_path / "s.ko"), "-o", str(tmp_path / "u")]) == 0
    assert (tmp_path / "u").read_bytes() == mod.read_bytes()
    debian = sorted((DEBIAN / "modules").glob("*.ko"))[0]
    assert main(["modsig", "verify", str(debian), "--trust",
                 str(DEBIAN / "debian-6.1.0-56-build-key.der")]) == 0


def test_imasig_cli(tmp_path: Path) -> None:
    s = pki()["leaf"]
    (tmp_path / "key.pem").write_bytes(s.key_pem)
    (tmp_path / "cert.der").write_bytes(s.der)
    f = tmp_path / "file"
    f.write_bytes(b"content")
    assert main(["imasig", "sign", "--key", str(tmp_path / "key.pem"), "--cert",
                 str(tmp_path / "cert.der"), str(f), "--sig", str(tmp_path / "f.sig")]) == 0
    value = (tmp_path / "f.sig").read_bytes()
    assert value == sign_xattr(H.SHA256.hash(b"content"), key=s.key,
                               keyid=s.as_key().key_id_v2)
    args = ["imasig", "verify", str(f), "--sig", str(tmp_path / "f.sig"), "--trust",
            str(tmp_path / "cert.der")]
    assert main(args) == 0
    f.write_bytes(b"changed")
    assert main(args) == 1
    (tmp_path / "bad.sig").write_bytes(b"\x03\x02")
    assert main(["imasig", "show", str(tmp_path / "bad.sig")]) == 2
    assert main(["imasig", "show", str(tmp_path / "f.sig")]) == 0


def test_verify_reasons_on_stderr_and_repeatable_trust(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--trust takes PEM and DER, several times; a failure says why on stderr."""
    s, other = pki()["leaf"], pki()["rsa_leaf"]
    (tmp_path / "key.pem").write_bytes(s.key_pem)
    (tmp_path / "cert.pem").write_bytes(s.pem)
    (tmp_path / "other.der").write_bytes(other.der)
    mod = tmp_path / "m.ko"
    mod.write_bytes(sign_module(b"payload" * 50, key=s.key, certificate=s.cert))
    capsys.readouterr()
    both = ["--trust", str(tmp_path / "other.der"), "--trust", str(tmp_path / "cert.pem")]
    assert main(["modsig", "verify", str(mod), *both]) == 0
    assert "imasim leaf signer" in capsys.readouterr().out
    assert main(["modsig", "verify", str(mod), "--trust", str(tmp_path / "other.der")]) == 1
    assert "no key" in capsys.readouterr().err.lower()
    unsigned = tmp_path / "u.ko"
    unsigned.write_bytes(b"payload" * 50)
    assert main(["modsig", "verify", str(unsigned), *both]) == 1
    assert "no appended signature" in capsys.readouterr().err
    broken = bytearray(mod.read_bytes())
    broken[-28 - 4:-28] = (len(broken)).to_bytes(4, "big")
    (tmp_path / "b.ko").write_bytes(bytes(broken))
    assert main(["modsig", "verify", str(tmp_path / "b.ko"), *both]) == 2
    assert "sig_len" in capsys.readouterr().err
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    assert main(["modsig", "verify", str(mod), "--trust", str(tmp_path / "junk.pem")]) == 2
    assert capsys.readouterr().err.strip()


def test_imasig_uses_the_security_ima_xattr(tmp_path: Path) -> None:
    """Without --sig, sign writes and verify reads the file's security.ima (as root on a
    file system with xattrs, as `evmctl ima_sign` does)."""
    s = pki()["rsa_leaf"]
    (tmp_path / "key.pem").write_bytes(s.key_pem)
    (tmp_path / "cert.der").write_bytes(s.der)
    f = tmp_path / "file"
    f.write_bytes(b"content")
    try:
        os.setxattr(f, "security.ima", b"\x04\x04" + bytes(32))
    except OSError as exc:  # not root, or no xattrs here: nothing to test
        pytest.skip(f"security.* xattrs unavailable: {exc.strerror}")
    os.removexattr(f, "security.ima")
    trust = ["--trust", str(tmp_path / "cert.der")]
    assert main(["imasig", "verify", str(f), *trust]) == 2  # no xattr: bad input
    assert main(["imasig", "sign", "--key", str(tmp_path / "key.pem"), "--cert",
                 str(tmp_path / "cert.der"), str(f)]) == 0
    assert os.getxattr(f, "security.ima") == sign_xattr(
        H.SHA256.hash(b"content"), key=s.key, keyid=s.as_key().key_id_v2)
    assert main(["imasig", "verify", str(f), *trust]) == 0
    f.write_bytes(b"changed")  # the xattr stays, the content no longer matches
    assert main(["imasig", "verify", str(f), *trust]) == 1
