"""The running kernel's .blacklist and blacklist key type, against imasim's rules.

The host's .blacklist is real: its permissions tell whether the kernel was built with
CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE (KEY_USR_WRITE). Without it (Debian's kernels, and
the 6.18 these tests were written on) every add_key(2) into it is EACCES, a description
of 4096 bytes is EINVAL before that, and keyctl clear is EACCES; imasim must answer the
same for a machine configured like the host. blacklist_vet_description is compared on a
keyring of the test's own session: only descriptions the kernel refuses there are sent
(a valid one would reach blacklist_key_instantiate, which without the option warns
(WARN_ON_ONCE) and returns EPERM: the test never does that to the host). The PKCS#7 side
uses the kernel's own recipe (tools/certs/print-cert-tbs-hash.sh, then openssl smime
-sign -noattr -binary -outform DER), whose signature imasim's simulated kernel accepts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from imasim.errors import ImasimError, RevokedError
from imasim.kconfig import PRESETS
from imasim.keys.keyring import BlacklistKey, KeyPerm, vet_blacklist_description
from imasim.keys.layout import boot_keyrings
from imasim.machine import Machine
from imasim.sig.pkcs7 import sign_pkcs7
from pki import pki
from tools import need

from .test_blacklist_update import errno_of
from .test_kernel_keyctl import _join_new_session, keyctl, newring

pytestmark = pytest.mark.interop
_ERRNO = {"Permission denied": "EACCES", "Invalid argument": "EINVAL",
          "Package not installed": "ENOPKG", "Operation not supported": "EOPNOTSUPP",
          "Operation not permitted": "EPERM", "Key has been rejected": "EKEYREJECTED",
          "Bad message": "EBADMSG", "Required key not available": "ENOKEY"}
#: descriptions blacklist_vet_description refuses (checked against the kernel below)
INVALID = ["bin:AB", "bin:abc", "bin:", "tbs", "xyz:ab", "bins:ab", ":ab", "tin:ab",
           "tbs:0G", "bin:" + "g" * 200, "bin:" + "a" * 130, "bin:" + "a" * 127 + "G",
           "bin:" + "a" * 128 + "G", "TBS:00", "bin:" + "0" * 129]


def _errno(r: subprocess.CompletedProcess[bytes]) -> str:
    if r.returncode == 0:
        return "ok"
    msg = r.stderr.decode(errors="replace").strip().rsplit(": ", 1)[-1]
    return _ERRNO.get(msg, msg)


def _host_blacklist_perm() -> int:
    for line in Path("/proc/keys").read_text().splitlines():
        if re.search(r" keyring\s+\.blacklist: ", line):
            return int(line.split()[4], 16)
    pytest.skip("the running kernel has no .blacklist (CONFIG_SYSTEM_BLACKLIST_KEYRING)")


def _imasim(auth_update: bool) -> Machine:
    cfg = PRESETS["debian12-6.12"].with_(system_blacklist_auth_update=auth_update)
    m = Machine.create(config=cfg, builtin_keys=[pki()["root"].as_key()])
    m.boot()
    return m


def _simulated(m: Machine, key: object) -> str:
    try:
        m.add_key(".blacklist", key)  # type: ignore[arg-type]
    except ImasimError as exc:
        return errno_of(exc)
    return "ok"


def test_the_host_keyring_permissions_are_the_layouts() -> None:
    need("keyctl")
    perm = _host_blacklist_perm()
    auth = bool(perm & KeyPerm.USR_WRITE)
    cfg = PRESETS["debian12-6.12"].with_(system_blacklist_auth_update=auth)
    assert [s.perm for s in boot_keyrings(cfg) if s.name == ".blacklist"] == [perm]


def test_user_space_adds_to_the_host_blacklist_as_imasim_says() -> None:
    need("keyctl")
    if _host_blacklist_perm() & KeyPerm.USR_WRITE:
        pytest.skip("the running kernel has CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE: only its "
                    "builtin keys could sign an addition, which this test does not have")
    m = _imasim(False)
    root = pki()["root"]
    desc = "bin:" + "ab" * 32
    sig = sign_pkcs7(desc.encode(), key=root.key, certificate=root.cert)
    cases = [("blacklist", desc, sig), ("blacklist", desc, b""), ("blacklist", "bin:XY", b""),
             ("blacklist", "bin:" + "a" * 4091, b""), ("blacklist", "bin:" + "a" * 4092, b""),
             ("asymmetric", "", pki()["leaf"].der)]
    for type_, d, payload in cases:
        host = _errno(keyctl("padd", type_, d, "%:.blacklist", data=payload))
        key = pki()["leaf"].as_key() if type_ == "asymmetric" else BlacklistKey(d, payload)
        assert (d[:12], host) == (d[:12], _simulated(m, key))
    assert _errno(keyctl("clear", "%:.blacklist")) == "EACCES"
    with pytest.raises(ImasimError) as info:
        m.clear_keyring(".blacklist")
    assert errno_of(info.value) == "EACCES"


@pytest.mark.parametrize("desc", INVALID, ids=[d[:12] + f"[{len(d)}]" for d in INVALID])
def test_blacklist_vet_description_against_the_kernel(desc: str) -> None:
    need("keyctl")
    _host_blacklist_perm()  # the blacklist key type exists with the keyring
    _join_new_session()
    with pytest.raises(ImasimError) as info:
        vet_blacklist_description(desc)
    ours = errno_of(info.value)
    ring = newring("vet")
    try:
        host = _errno(keyctl("padd", "blacklist", desc, ring, data=b""))
    finally:
        keyctl("unlink", ring, "@s")
    assert host == ours


def test_the_kernels_recipe_for_a_signed_hash(tmp_path: Path) -> None:
    """print-cert-tbs-hash.sh's way (openssl asn1parse for the TBSCertificate's range,
    openssl dgst with the certificate's signature hash) names the certificate as imasim
    does; ``openssl smime -sign -noattr -binary -outform DER`` over that description is a
    payload the simulated kernel (AUTH_UPDATE) takes, after which the certificate is
    refused as a new key."""
    openssl = need("openssl")
    leaf, root = pki()["leaf"], pki()["root"]
    (tmp_path / "leaf.der").write_bytes(leaf.der)
    lines = subprocess.run([openssl, "asn1parse", "-inform", "DER", "-in", "leaf.der"],
                           cwd=tmp_path, capture_output=True, check=True, text=True
                           ).stdout.splitlines()
    m = re.match(r"\s*(\d+):d=1\s+hl=\s*(\d+)\s+l=\s*(\d+)\s+cons: SEQUENCE", lines[1])
    assert m is not None, lines[1]
    start, hl, length = (int(g) for g in m.groups())
    (tmp_path / "tbs.der").write_bytes(leaf.der[start:start + hl + length])
    dgst = subprocess.run([openssl, "dgst", "-sha256", "-r", "tbs.der"], cwd=tmp_path,
                          capture_output=True, check=True, text=True).stdout.split()[0]
    desc = "tbs:" + dgst
    tbs = leaf.as_key().tbs_hash()
    assert tbs is not None and desc == "tbs:" + tbs.hex()
    (tmp_path / "hash0.txt").write_text(desc)  # "without newline"
    (tmp_path / "root.pem").write_bytes(root.cert.public_bytes(Encoding.PEM))
    (tmp_path / "root.key").write_bytes(root.key_pem)
    subprocess.run([openssl, "smime", "-sign", "-in", "hash0.txt", "-inkey", "root.key",
                    "-signer", "root.pem", "-noattr", "-binary", "-outform", "DER",
                    "-out", "hash0.p7s"], cwd=tmp_path, capture_output=True, check=True)
    sim = _imasim(True)
    sim.add_key(".blacklist", BlacklistKey(desc, (tmp_path / "hash0.p7s").read_bytes()))
    with pytest.raises(RevokedError):  # x509_key_preparse: EKEYREJECTED
        sim.add_key("_ima", leaf.as_key())
