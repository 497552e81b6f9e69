"""`imasim modsig` and `imasim imasig`: exit codes and agreement with sign-file/evmctl output."""

from __future__ import annotations

from pathlib import Path

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
