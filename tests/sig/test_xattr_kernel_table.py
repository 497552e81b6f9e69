"""security.ima type/version confusion: for every type byte and every version byte, imasim
gives the verdict of the kernel's xattr_verify (security/integrity/ima/ima_appraise.c,
6.1 and 6.12 alike) and integrity_digsig_verify (security/integrity/digsig.c), and of
``evmctl ima_verify`` wherever evmctl 1.4 judges the same bytes.

The kernel, restated case by case from its source (independently of the table in
imasim.sig.xattr):

* type 1 (IMA_XATTR_DIGEST), 4 (IMA_XATTR_DIGEST_NG): digests, never signatures;
* type 3 (EVM_IMA_XATTR_DIGSIG): version >= 3 "invalid-signature-version" (FAIL);
  version 2 asymmetric_verify over the file digest; version 1 digsig_verify (a "user"
  key); version 0 -EOPNOTSUPP (UNKNOWN);
* type 6 (IMA_VERITY_DIGSIG): version 3 asymmetric_verify over H(ima_file_id), any other
  version "invalid-signature-version";
* any other type (0, 2 EVM_XATTR_HMAC, 5 EVM_XATTR_PORTABLE_DIGSIG, 7-255):
  "unknown-ima-data" (UNKNOWN).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ImasimError
from imasim.keys import Keyring
from imasim.sig.xattr import (
    XattrKind,
    XattrOutcome,
    XattrRejectedError,
    kernel_xattr_outcome,
    sign_xattr,
    verify_xattr,
)
from pki import pki
from tools import need

CONTENT = b"#!/bin/sh\necho appraised\n"
DIGEST = H.SHA256.hash(CONTENT)


def kernel_cause(t: int, v: int) -> str:
    """What appraisal of a well-formed value with these two bytes ends in, when its
    signature was made the way its (type, version) asks (the kernel's switch)."""
    if t in (1, 4):
        return "digest"
    if t == 3:
        return ("invalid-signature-version" if v >= 3 else "pass" if v == 2
                else "invalid-signature" if v == 1 else "unknown")
    if t == 6:
        return "pass" if v == 3 else "invalid-signature-version"
    return "unknown-ima-data"


@pytest.fixture(scope="module")
def signed() -> tuple[Keyring, bytes, bytes]:
    s = pki()["leaf"]
    key = s.as_key()
    ring = Keyring(".ima")
    ring.add(key)
    v2 = sign_xattr(DIGEST, key=s.key, keyid=key.key_id_v2)
    v3 = sign_xattr(DIGEST, key=s.key, keyid=key.key_id_v2, version=3)
    assert v2[:2] == b"\x03\x02" and v3[:2] == b"\x06\x03"
    return ring, v2, v3


def imasim_cause(value: bytes, ring: Keyring) -> str:
    try:
        verify_xattr(value, DIGEST, keyring=ring)
    except XattrRejectedError as exc:
        return exc.outcome.value
    except ImasimError as exc:
        if value[0] in (1, 4):
            return "digest"
        return "invalid-signature" if value[0] == 3 and value[1] == 1 else type(exc).__name__
    return "pass"


def test_every_type_and_version_byte(signed: tuple[Keyring, bytes, bytes]) -> None:
    ring, v2, v3 = signed
    for t in range(256):
        for v in range(256):
            # the body a kernel taking (t, v) as a signature would verify: v3's for type 6
            body = v3 if t == 6 else v2
            got = imasim_cause(bytes([t, v]) + body[2:], ring)
            assert got == kernel_cause(t, v), (t, v, got)
            # and the other body never passes: no type/version confusion between v2 and v3
            other = v2 if t == 6 else v3
            assert imasim_cause(bytes([t, v]) + other[2:], ring) != "pass", (t, v)
            assert kernel_xattr_outcome(t, v).passes_if_verified is (
                kernel_cause(t, v) in ("pass", "digest")), (t, v)


@pytest.mark.parametrize("forged", [(5, 2), (6, 2), (3, 3), (2, 2), (3, 0), (3, 4)])
def test_issue_17_confusions_are_refused(signed: tuple[Keyring, bytes, bytes],
                                         forged: tuple[int, int]) -> None:
    ring, v2, v3 = signed
    for body in (v2, v3):
        with pytest.raises(ImasimError):
            verify_xattr(bytes(forged) + body[2:], DIGEST, keyring=ring)


def test_simulated_kernel_audits_the_kernel_cause(signed: tuple[Keyring, bytes, bytes]) -> None:
    """The simulated kernel's appraisal ends in xattr_verify's cause."""
    from imasim.machine import Machine

    _, v2, v3 = signed
    m = Machine.create(cmdline="ima_policy=tcb ima_appraise=enforce",
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy("appraise func=BPRM_CHECK\n")
    for t in range(256):
        for v in (0, 1, 2, 3, 4, 255):
            body = v3 if t == 6 else v2
            path = f"/usr/bin/x{t}-{v}"
            m.add_file(path, CONTENT, mode=0o100755,
                       xattrs={"security.ima": bytes([t, v]) + body[2:]})
            r = m.exec(path)
            want = kernel_cause(t, v)
            if want == "pass":
                assert r.allowed, (t, v, r)
            elif want == "digest":  # a signature's bytes taken as a digest: no match
                assert not r.allowed, (t, v, r)
            else:
                assert not r.allowed and r.reason == want, (t, v, r)


@pytest.mark.interop
def test_evmctl_judges_the_same_bytes(signed: tuple[Keyring, bytes, bytes],
                                      tmp_path: Path) -> None:
    """evmctl 1.4 ima_verify takes type 3 only (versions 1 and 2; no sigv3). Over type 3
    with every version, and every type with version 2, its verdict is imasim's (type 6,
    sigv3, is outside what evmctl 1.4 judges: it refuses every type-6 value)."""
    evmctl = need("evmctl")
    ring, v2, _ = signed
    (tmp_path / "cert.der").write_bytes(pki()["leaf"].der)
    f = tmp_path / "file"
    f.write_bytes(CONTENT)
    combos = [(3, v) for v in range(256) if v != 1] + [(t, 2) for t in range(256) if t != 6]
    for t, v in combos:
        value = bytes([t, v]) + v2[2:]
        (tmp_path / "file.sig").write_bytes(value)
        proc = subprocess.run([evmctl, "ima_verify", "--key", str(tmp_path / "cert.der"),
                               "--sigfile", str(f)], capture_output=True, timeout=60)
        ours = imasim_cause(value, ring) == "pass"
        assert (proc.returncode == 0) is ours, (t, v, proc.stderr)
    assert XattrKind.VERITY_DIGSIG == 6 and XattrOutcome.SIGNATURE_V3.passes_if_verified


def test_digest_forms_as_the_kernel_compares_them() -> None:
    """xattr_verify's digest comparison with ima_get_hash_algo's choice of hash, through
    the simulated kernel (ima_hash=sha256, the default)."""
    from imasim.machine import Machine
    from imasim.sig.xattr import kernel_digest_matches

    md5, sha1, sha256 = (a.hash(CONTENT) for a in (H.MD5, H.SHA1, H.SHA256))
    cases = {
        bytes([4, 4]) + sha256: True,
        bytes([4, 4]) + sha256 + b"trailing": True,         # longer than the digest
        bytes([4, 200]) + sha256: True,                     # algo >= HASH_ALGO__LAST: ima_hash
        bytes([4, 2]) + sha1: True,
        bytes([4, 2]) + sha1[:-1]: False,                   # shorter than the digest
        bytes([4, 4]) + sha1: False,
        bytes([1]) + sha1: True,                            # 21 bytes: SHA-1
        bytes([1]) + md5 + bytes(4): True,                  # 21 bytes, zero tail: MD5
        bytes([1]) + md5: True,                             # 17 bytes: MD5
        bytes([1]) + sha256: True,                          # any other length: ima_hash
        bytes([1]) + sha256 + b"x": True,
        bytes([1]) + sha1 + b"x": False,
        bytes([4]): False,
        bytes([1]): False,
    }
    m = Machine.create(cmdline="ima_policy=tcb ima_appraise=enforce",
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    m.load_policy("appraise func=BPRM_CHECK\n")
    for i, (value, ok) in enumerate(cases.items()):
        assert kernel_digest_matches(value, CONTENT) is ok, value.hex()
        m.add_file(f"/usr/bin/d{i}", CONTENT, mode=0o100755, xattrs={"security.ima": value})
        r = m.exec(f"/usr/bin/d{i}")
        assert r.allowed is ok and (ok or r.reason == "invalid-hash"), (value.hex(), r)


def test_sha3_before_and_after_6_7() -> None:
    """HASH_ALGO__LAST was 20 before sha3 joined enum hash_algo (6.7): asymmetric_verify
    refuses a sha3 header with -ENOPKG on 6.1, verifies it on 6.12."""
    from imasim.errors import UnsupportedAlgorithmError

    s = pki()["leaf"]
    key = s.as_key()
    ring = Keyring(".ima")
    ring.add(key)
    d = H.SHA3_256.hash(CONTENT)
    value = sign_xattr(d, key=s.key, keyid=key.key_id_v2, hash_alg=H.SHA3_256)
    assert value[2] == 20
    assert verify_xattr(value, d, keyring=ring, kernel_version=(6, 12)) == key
    with pytest.raises(UnsupportedAlgorithmError):
        verify_xattr(value, d, keyring=ring, kernel_version=(6, 1))
