"""IPE on the simulated machine: each property allows and denies, the admin guide's
example policies decide as documented, IPE runs before IMA, and the operations map to the
kernel's hooks."""

from __future__ import annotations

import pytest

from imasim.archive import ArchiveMember, write_cpio
from imasim.errors import ImasimError
from imasim.ima.policy import MAY_READ
from imasim.ipe import Op, fsverity_digest, sign_fsverity
from imasim.machine import Machine
from imasim.sig.pkcs7 import sign_pkcs7
from pki import pki

from .test_policy import DOC_EXAMPLES


def _machine(boot_policy: str | None, cmdline: str = "ima_policy=tcb") -> Machine:
    m = Machine.create(cmdline=cmdline, builtin_keys=[pki()["root"].as_key()])
    m.enable_ipe(boot_policy)
    m.boot()
    m.keyrings.secondary.add(pki()["leaf"].as_key())
    return m


def _roothash_sig(m: Machine, root: bytes, who: str = "leaf") -> bytes:
    s = pki()[who]
    return sign_pkcs7(root.hex().encode(), key=s.key, certificate=s.cert)


def _world(m: Machine) -> None:
    """An initramfs /init, an unsigned and a signed dm-verity volume, a plain disk file,
    fs-verity files with and without a signature."""
    m.unpack_initramfs(write_cpio([ArchiveMember("init", b"#!/bin/sh\n", 0o100755)]))
    m.mount_dm_verity({"/usr/bin/plain-dmv": b"unsigned volume"})
    probe = Machine.create()  # the root hash of the signed volume, to sign it
    root = probe.mount_dm_verity({"/opt/app/bin": b"signed volume"})
    m.mount_dm_verity({"/opt/app/bin": b"signed volume"},
                      signature=_roothash_sig(m, root.root_hash))
    m.add_file("/home/user/a.out", b"downloaded")
    m.add_file("/usr/lib/fsv-signed", b"fs-verity signed")
    m.add_file("/usr/lib/fsv-plain", b"fs-verity, no signature")
    leaf = pki()["leaf"]
    m.fsverity_keyring.add(leaf.as_key())
    m.enable_fsverity("/usr/lib/fsv-signed",
                      sign_fsverity(b"fs-verity signed", key=leaf.key, certificate=leaf.cert))
    m.enable_fsverity("/usr/lib/fsv-plain")


FILES = ("/init", "/usr/bin/plain-dmv", "/opt/app/bin", "/home/user/a.out",
         "/usr/lib/fsv-signed", "/usr/lib/fsv-plain")


def _allowed(policy: str) -> set[str]:
    m = _machine(policy)
    _world(m)
    return {p for p in FILES if m.exec(p).allowed}


def test_doc_examples_decide_as_documented() -> None:
    m = Machine.create()
    dmv = m.mount_dm_verity({"/usr/bin/plain-dmv": b"unsigned volume"}).root_hash
    fsv = fsverity_digest(b"fs-verity, no signature")[1]
    assert _allowed(DOC_EXAMPLES["Allow_All"]) == set(FILES)
    assert _allowed(DOC_EXAMPLES["Allow_Initramfs"]) == {"/init"}
    assert _allowed(DOC_EXAMPLES["Allow_Signed_DMV_And_Initramfs"]) == {"/init", "/opt/app/bin"}
    # the revocation rule comes first: a signed volume with a revoked root hash is denied
    probe = Machine.create()
    signed_root = probe.mount_dm_verity({"/opt/app/bin": b"signed volume"}).root_hash.hex()
    deny = DOC_EXAMPLES["Deny_DMV_By_Roothash"].replace(
        "cd2c5bae7c6c579edaae4353049d58eb5f2e8be0244bf05345bc8e5ed257baff", signed_root)
    assert _allowed(deny) == {"/init"}
    assert _allowed(DOC_EXAMPLES["Allow_DMV_By_Roothash"]) == set()  # 28 bytes never match
    allow_dmv = DOC_EXAMPLES["Allow_DMV_By_Roothash"].replace(
        "401fcec5944823ae12f62726e8184407a5fa9599783f030dec146938", dmv.hex())
    assert _allowed(allow_dmv) == {"/usr/bin/plain-dmv"}
    assert _allowed(DOC_EXAMPLES["Allow_Signed_And_Validated_FSVerity"]) == \
        {"/usr/lib/fsv-signed"}
    by_digest = DOC_EXAMPLES["ALLOW_FSV_By_Digest"].replace(
        "fd88f2b8824e197f850bf4c5109bea5cf0ee38104f710843bb72da796ba5af9e", fsv.hex())
    assert _allowed(by_digest) == {"/usr/lib/fsv-plain"}


@pytest.mark.parametrize("prop, allows, denies", [
    ("boot_verified=TRUE", "/init", "/home/user/a.out"),
    ("boot_verified=FALSE", "/home/user/a.out", "/init"),
    ("dmverity_signature=TRUE", "/opt/app/bin", "/usr/bin/plain-dmv"),
    ("dmverity_signature=FALSE", "/usr/bin/plain-dmv", "/opt/app/bin"),
    ("fsverity_signature=TRUE", "/usr/lib/fsv-signed", "/usr/lib/fsv-plain"),
    ("fsverity_signature=FALSE", "/usr/lib/fsv-plain", "/usr/lib/fsv-signed"),
    ("dmverity_roothash=DMV", "/usr/bin/plain-dmv", "/opt/app/bin"),
    ("fsverity_digest=FSV", "/usr/lib/fsv-plain", "/usr/lib/fsv-signed"),
])
def test_each_property_allows_and_denies(prop: str, allows: str, denies: str) -> None:
    probe = Machine.create()
    dmv = probe.mount_dm_verity({"/usr/bin/plain-dmv": b"unsigned volume"}).root_hash
    prop = prop.replace("DMV", "sha256:" + dmv.hex()).replace(
        "FSV", "sha256:" + fsverity_digest(b"fs-verity, no signature")[1].hex())
    allowed = _allowed(f"policy_name=p policy_version=0.0.0\nDEFAULT action=DENY\n"
                       f"op=EXECUTE {prop} action=ALLOW\n")
    assert allows in allowed and denies not in allowed


def test_ipe_runs_before_ima_and_audits() -> None:
    m = _machine(DOC_EXAMPLES["Allow_Initramfs"])
    _world(m)
    before = len(m.measurements)
    r = m.exec("/home/user/a.out")
    assert not r.allowed and r.reason == "IPE: DEFAULT action=DENY"
    assert len(m.measurements) == before  # IMA never saw it
    assert m.ipe is not None
    assert str(m.ipe.audit[-1]) == (
        'type=1420 ipe_op=EXECUTE ipe_hook=BPRM_CHECK enforcing=1 pid=1 comm="imasim" '
        f'path="/home/user/a.out" dev="vda" ino={m.files["/home/user/a.out"].ino} '
        'rule="DEFAULT action=DENY"')
    assert m.exec("/init").measured is False  # tcb does not measure tmpfs


@pytest.mark.parametrize("op, call", [
    (Op.KMODULE, lambda m: m.load_module("/x")),
    (Op.FIRMWARE, lambda m: m.load_firmware("/x")),
    (Op.KEXEC_IMAGE, lambda m: m.kexec_load("/x")),
    (Op.EXECUTE, lambda m: m.mmap("/x")),
])
def test_operations_reach_their_op(op: Op, call: object) -> None:
    policy = f"policy_name=p policy_version=0.0.0\nDEFAULT action=ALLOW\n" \
             f"DEFAULT op={op.value} action=DENY\n"
    m = _machine(policy)
    m.add_file("/x", b"x")
    r = call(m)  # type: ignore[operator]
    assert not r.allowed and r.reason == f"IPE: DEFAULT op={op.value} action=DENY"
    assert m.read_file("/x").allowed  # plain reads are not IPE's business


def test_permissive_mode_allows_but_audits() -> None:
    m = _machine(DOC_EXAMPLES["Allow_Initramfs"])
    assert m.ipe is not None
    m.ipe.set_enforce(False)
    m.add_file("/tmp/x", b"x")
    assert m.exec("/tmp/x").allowed
    assert "enforcing=0" in str(m.ipe.audit[-1])


def test_without_a_policy_everything_is_allowed() -> None:
    m = _machine(None)
    m.add_file("/tmp/x", b"x")
    assert m.exec("/tmp/x").allowed and m.ipe is not None and m.ipe.audit == []


def test_bad_verity_signatures_are_refused_and_change_nothing() -> None:
    m = _machine(None)
    with pytest.raises(ImasimError):
        m.mount_dm_verity({"/opt/evil": b"e"}, signature=_roothash_sig(m, bytes(32)))
    assert "/opt/evil" not in m.files
    m.add_file("/f", b"f")
    stranger = pki()["stranger"]
    with pytest.raises(ImasimError):
        m.enable_fsverity("/f", sign_fsverity(b"f", key=stranger.key,
                                              certificate=stranger.cert))
    assert m.files["/f"].fsverity is None
    assert m.open("/f", MAY_READ).allowed


def test_x509_cert_op_guards_certificate_files() -> None:
    policy = ("policy_name=p policy_version=0.0.0\nDEFAULT action=ALLOW\n"
              "op=X509_CERT boot_verified=TRUE action=ALLOW\nDEFAULT op=X509_CERT action=DENY\n")
    m = _machine(policy)
    leaf = pki()["leaf"].der
    m.add_file("/etc/keys/x509_ima.der", leaf)
    r = m.load_x509_file("/etc/keys/x509_ima.der")
    assert not r.allowed and r.reason == "IPE: DEFAULT op=X509_CERT action=DENY"
    m.unpack_initramfs(write_cpio([ArchiveMember("etc/keys/x509_ima.der", leaf)]))
    assert m.load_x509_file("/etc/keys/x509_ima.der").allowed
    assert pki()["leaf"].as_key() in m.keyrings.ima.keys


def test_command_line_switches() -> None:
    m = Machine.create(cmdline="ima_policy=tcb ipe.enforce=0 ipe.success_audit=1")
    ipe = m.enable_ipe(DOC_EXAMPLES["Allow_Initramfs"])
    m.boot()
    m.add_file("/x", b"x")
    assert not ipe.enforce and ipe.success_audit
    assert m.exec("/x").allowed and "enforcing=0" in str(ipe.audit[-1])
