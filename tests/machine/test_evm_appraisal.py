"""EVM in appraisal: once initialised, security.evm must vouch for security.ima and the
inode's metadata (evm_verifyxattr as ima_appraise_measurement maps its status)."""

from __future__ import annotations

import hmac
import uuid

from imasim.algorithms import HashAlgorithm as H
from imasim.machine import Machine
from imasim.sig import sign_module
from imasim.sig.evm import evm_data, sign_evm
from imasim.sig.xattr import sign_xattr
from pki import pki

POLICY = ("appraise func=BPRM_CHECK appraise_type=imasig\n"
          "appraise func=MODULE_CHECK appraise_type=imasig|modsig\n")


def _machine() -> Machine:
    m = Machine.create(cmdline="ima_policy=tcb ima_appraise=enforce",
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    leaf = pki()["leaf"].as_key()
    m.add_key(".ima", leaf)
    m.add_key(".evm", leaf)
    m.load_policy(POLICY)
    return m


def _xattrs(content: bytes, *, mode: int = 0o100755, who: str = "leaf") -> dict[str, bytes]:
    s = pki()[who]
    kid = s.as_key().key_id_v2
    ima = {"security.ima": sign_xattr(H.SHA256.hash(content), key=s.key, keyid=kid)}
    return {**ima, "security.evm": sign_evm(ima, uid=0, gid=0, mode=mode, key=s.key,
                                            keyid=kid)}


def test_without_evm_only_security_ima_counts() -> None:
    m = _machine()
    x = _xattrs(b"app")
    del x["security.evm"]
    m.add_file("/usr/bin/app", b"app", xattrs=x)
    assert m.exec("/usr/bin/app").allowed


def test_portable_signature_vouches_for_xattrs_and_mode() -> None:
    m = _machine()
    m.evm_init()
    m.add_file("/usr/bin/app", b"app", xattrs=_xattrs(b"app"))
    assert m.exec("/usr/bin/app").allowed
    no_evm = _xattrs(b"x")
    del no_evm["security.evm"]
    m.add_file("/usr/bin/x", b"x", xattrs=no_evm)
    r = m.exec("/usr/bin/x")
    assert not r.allowed and r.reason == "missing-HMAC"
    m.add_file("/usr/bin/suid", b"s", mode=0o104755, xattrs=_xattrs(b"s"))  # mode changed
    r = m.exec("/usr/bin/suid")
    assert not r.allowed and r.reason == "invalid-fail-immutable"
    m.add_file("/usr/bin/other", b"o", xattrs=_xattrs(b"o", who="stranger"))
    r = m.exec("/usr/bin/other")
    assert not r.allowed and r.reason == "invalid-fail-immutable"
    assert any("invalid-fail-immutable" in str(a) for a in m.audit)


def test_hmac_is_bound_to_the_inode() -> None:
    m = _machine()
    key = b"evm-key-payload-32-bytes-long!!!"
    m.evm_init(x509=False, hmac_key=key)
    x = _xattrs(b"app")
    del x["security.evm"]
    m.add_file("/usr/bin/app", b"app", xattrs=x)
    f = m.files["/usr/bin/app"]
    data = evm_data(x, uid=0, gid=0, mode=0o100755, portable=False, ino=f.ino,
                    fs_uuid=uuid.UUID(f.fs.uuid).bytes)
    m.set_xattr("/usr/bin/app", "security.evm", b"\x02" + hmac.new(key, data, "sha1").digest())
    assert m.exec("/usr/bin/app").allowed
    m.add_file("/usr/bin/copy", b"app", xattrs=m.files["/usr/bin/app"].xattrs)  # another inode
    r = m.exec("/usr/bin/copy")
    assert not r.allowed and r.reason == "invalid-HMAC"


def test_a_modsig_needs_no_evm_xattr() -> None:
    m = _machine()
    m.evm_init()
    leaf = pki()["leaf"]
    m.add_file("/lib/modules/m.ko", sign_module(b"mod", key=leaf.key, certificate=leaf.cert))
    assert m.load_module("/lib/modules/m.ko").allowed
