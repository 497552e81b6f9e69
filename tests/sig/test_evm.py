"""EVM portable signatures: evm_calc_hash, evmctl sign/verify --portable both ways, and
evm-sig entries checked by attest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import Verdict, check_entry_signature
from imasim.errors import ParseError, SignatureInvalidError
from imasim.ima import MeasurementEntry
from imasim.ima.fields import DigestWithAlgo
from imasim.ima.templates import lookup_template
from imasim.keys import Keyring
from imasim.sig.evm import evm_digest, sign_evm, verify_evm
from imasim.sig.xattr import sign_xattr
from pki import pki
from tools import need

RSA = pki()["rsa_leaf"]


def _ring() -> Keyring:
    ring = Keyring(".evm")
    ring.add(RSA.as_key())
    return ring


def _ima(content: bytes) -> bytes:
    return sign_xattr(H.SHA256.hash(content), key=RSA.key, keyid=RSA.as_key().key_id_v2)


def test_sign_and_verify_bind_xattrs_and_metadata() -> None:
    x = {"security.ima": _ima(b"x"), "security.selinux": b"system_u:object_r:bin_t:s0\0"}
    evm = sign_evm(x, uid=0, gid=0, mode=0o100755, key=RSA.key, keyid=RSA.as_key().key_id_v2)
    assert verify_evm(evm, x, uid=0, gid=0, mode=0o100755, keyring=_ring())
    for change in ({"mode": 0o104755}, {"uid": 1000}, {"gid": 1}):
        args = {"uid": 0, "gid": 0, "mode": 0o100755, **change}
        with pytest.raises(SignatureInvalidError):
            verify_evm(evm, x, keyring=_ring(), **args)
    with pytest.raises(SignatureInvalidError):
        verify_evm(evm, {**x, "security.selinux": b"user_u:object_r:tmp_t:s0\0"}, uid=0,
                   gid=0, mode=0o100755, keyring=_ring())
    with pytest.raises(ParseError):
        verify_evm(bytes([2]) + bytes(20), x, uid=0, gid=0, mode=0, keyring=_ring())


def test_portable_ignores_inode_number_and_uuid_the_bound_kind_does_not() -> None:
    x = {"security.ima": b"\x04\x04" + bytes(32)}
    base = evm_digest(x, uid=0, gid=0, mode=0o100644)
    assert evm_digest(x, uid=0, gid=0, mode=0o100644, ino=7, fs_uuid=bytes(16)) == base
    assert evm_digest(x, uid=0, gid=0, mode=0o100644, portable=False, ino=7) != base


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.der"
    key.write_bytes(RSA.key_pem)
    cert.write_bytes(RSA.der)
    f = tmp_path / "prog"
    f.write_bytes(b"#!/bin/sh\necho evm\n")
    f.chmod(0o755)
    return key, cert, f


def _meta(f: Path) -> dict[str, int]:
    st = f.stat()
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode}


def _xattrs(f: Path) -> dict[str, bytes]:
    return {n: os.getxattr(f, n) for n in os.listxattr(f) if n != "security.evm"}


def _can_set_security_xattrs(f: Path) -> None:
    try:
        os.setxattr(f, "security.ima", b"\x04\x04" + bytes(32))
        os.removexattr(f, "security.ima")
    except OSError as exc:
        pytest.fail(f"root cannot set security.* xattrs here: {exc}")


@pytest.mark.interop
def test_evmctl_portable_signature_verifies_in_imasim(files: tuple[Path, Path, Path]) -> None:
    key, _cert, f = files
    _can_set_security_xattrs(f)
    subprocess.run([need("evmctl"), "sign", "--portable", "--imasig", "--key", str(key),
                    "-a", "sha256", str(f)], check=True, capture_output=True, timeout=60)
    evm = os.getxattr(f, "security.evm")
    assert evm[0] == 5
    verify_evm(evm, _xattrs(f), keyring=_ring(), **_meta(f))
    f.chmod(0o4755)
    with pytest.raises(SignatureInvalidError):
        verify_evm(evm, _xattrs(f), keyring=_ring(), **_meta(f))


@pytest.mark.interop
def test_imasim_portable_signature_verifies_with_evmctl(files: tuple[Path, Path, Path]) -> None:
    _key, cert, f = files
    _can_set_security_xattrs(f)
    os.setxattr(f, "security.ima", _ima(f.read_bytes()))
    evm = sign_evm(_xattrs(f), key=RSA.key, keyid=RSA.as_key().key_id_v2, **_meta(f))
    os.setxattr(f, "security.evm", evm)
    evmctl = need("evmctl")
    ok = subprocess.run([evmctl, "verify", "--portable", "--key", str(cert), str(f)],
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    f.chmod(0o700)
    bad = subprocess.run([evmctl, "verify", "--portable", "--key", str(cert), str(f)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0


def _evm_sig_entry(evmsig: bytes, xattrs: dict[str, bytes], mode: int) -> MeasurementEntry:
    desc = lookup_template("evm-sig")
    values = {"d-ng": DigestWithAlgo("sha256", H.SHA256.hash(b"prog")), "n-ng": "/usr/bin/prog",
              "evmsig": evmsig, "xattrnames": "|".join(xattrs),
              "xattrlengths": tuple(len(v) for v in xattrs.values()),
              "xattrvalues": b"".join(xattrs.values()), "iuid": 0, "igid": 0, "imode": mode}
    return MeasurementEntry.create(desc, {k: values.get(k) for k in desc.field_ids}, pcr=10)


def test_attest_checks_evm_sig_entries() -> None:
    x = {"security.ima": _ima(b"prog")}
    evm = sign_evm(x, uid=0, gid=0, mode=0o100755, key=RSA.key, keyid=RSA.as_key().key_id_v2)
    assert check_entry_signature(0, _evm_sig_entry(evm, x, 0o100755), _ring()) is None
    v = check_entry_signature(0, _evm_sig_entry(evm, x, 0o104755), _ring())
    assert v is not None and v.verdict is Verdict.BAD_SIGNATURE
    # the recorded security.ima signature must match the recorded file digest
    other = {"security.ima": _ima(b"other")}
    evm2 = sign_evm(other, uid=0, gid=0, mode=0o100755, key=RSA.key,
                    keyid=RSA.as_key().key_id_v2)
    v = check_entry_signature(0, _evm_sig_entry(evm2, other, 0o100755), _ring())
    assert v is not None and "security.ima" in v.detail
