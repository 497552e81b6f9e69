"""Appraisal without a machine: imasim.ima.appraise.appraise decides as the simulated
kernel does, so a verifier can ask whether a file would have passed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.ima.appraise import (
    AUDIT_INTEGRITY_DATA,
    AppraisalKeyrings,
    AppraiseMode,
    Cause,
    appraise,
)
from imasim.ima.policy import parse_ima_policy
from imasim.keys.keyring import Blacklist, Keyring
from imasim.machine import Machine
from imasim.sig import sign_module
from imasim.sig.xattr import sign_xattr
from pki import pki

RULES = {
    "hash": "appraise func=BPRM_CHECK\n",
    "imasig": "appraise func=BPRM_CHECK appraise_type=imasig\n",
    "modsig": "appraise func=MODULE_CHECK appraise_type=imasig|modsig\n",
}


def _rings() -> AppraisalKeyrings:
    ima = Keyring(".ima")
    ima.add(pki()["leaf"].as_key())
    return AppraisalKeyrings(ima, Keyring(".evm"), Blacklist())


def _sig(content: bytes, signer: str = "leaf") -> bytes:
    s = pki()[signer]
    return sign_xattr(H.SHA256.hash(content), key=s.key, keyid=s.as_key().key_id_v2)


def _digest(content: bytes) -> bytes:
    return bytes([4, H.SHA256.hash_algo]) + H.SHA256.hash(content)


def test_causes_are_enums_and_fix_mode_writes_a_hash() -> None:
    rule = parse_ima_policy(RULES["hash"]).rules[0]
    r = appraise(content=b"x", xattrs={}, rule=rule, mode=AppraiseMode.FIX,
                 keyrings=_rings())
    assert (r.allowed, r.cause, r.audit) == (True, Cause.MISSING_HASH, True)
    assert r.fix_xattr == _digest(b"x")
    ok = appraise(content=b"x", xattrs={"security.ima": r.fix_xattr}, rule=rule,
                  mode=AppraiseMode.ENFORCE, keyrings=_rings())
    assert ok.allowed and ok.cause is None
    sig_rule = parse_ima_policy(RULES["imasig"]).rules[0]
    r = appraise(content=b"x", xattrs={}, rule=sig_rule, mode=AppraiseMode.FIX,
                 keyrings=_rings())
    assert r.cause is Cause.SIGNATURE_REQUIRED and r.fix_xattr is None  # never a signature
    assert AUDIT_INTEGRITY_DATA == 1800


XATTRS = st.sampled_from(["none", "digest", "wrong digest", "signed", "stranger", "junk"])


def _xattr(kind: str, content: bytes) -> dict[str, bytes]:
    return {"none": {}, "digest": {"security.ima": _digest(content)},
            "wrong digest": {"security.ima": _digest(content + b"!")},
            "signed": {"security.ima": _sig(content)},
            "stranger": {"security.ima": _sig(content, "stranger")},
            "junk": {"security.ima": b"\x09junk"}}[kind]


@settings(max_examples=40, deadline=None)
@given(rule=st.sampled_from(sorted(RULES)), xattr=XATTRS, modsig=st.booleans(),
       mode=st.sampled_from([AppraiseMode.ENFORCE, AppraiseMode.LOG]),
       content=st.binary(min_size=1, max_size=32))
def test_the_machine_decides_what_appraise_decides(rule: str, xattr: str, modsig: bool,
                                                   mode: AppraiseMode, content: bytes) -> None:
    leaf = pki()["leaf"]
    if modsig:
        content = sign_module(content, key=leaf.key, certificate=leaf.cert)
    xattrs = _xattr(xattr, content)
    m = Machine.create(cmdline=f"ima_policy=tcb ima_appraise={mode.value}",
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    m.add_key(".ima", leaf.as_key())
    m.load_policy(RULES[rule])
    m.add_file("/f", content, xattrs=xattrs)
    module = rule == "modsig"
    got = m.load_module("/f") if module else m.exec("/f")
    want = appraise(content=content, xattrs=xattrs, rule=parse_ima_policy(RULES[rule]).rules[0],
                    mode=mode, keyrings=_rings(), modsig=module)
    if module and got.reason.startswith(("module signature", "tainted")):
        # module_sig_check's verdict after IMA allowed the read: not appraisal's
        assert want.allowed
        return
    assert (got.allowed, got.reason, got.cause) == (want.allowed, want.reason, want.cause)
