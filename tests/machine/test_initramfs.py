"""The signed-init problem: an initramfs (cpio) cannot carry security.ima, a tar can; an
embedded initramfs is covered by the kernel image's signature, an external one is not."""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.archive import ArchiveMember, write_cpio, write_tar
from imasim.errors import ParseError
from imasim.machine import Machine
from imasim.sig import build_pe, sign_pe, verify_authenticode
from imasim.sig.xattr import sign_xattr
from pki import pki

INIT = b"#!/bin/sh\nmount /dev/vda /root && exec switch_root /root /sbin/init\n"
APPRAISE_ALL = "appraise func=BPRM_CHECK appraise_type=imasig\n"


def _sig(content: bytes) -> bytes:
    leaf = pki()["leaf"]
    return sign_xattr(H.SHA256.hash(content), key=leaf.key, keyid=leaf.as_key().key_id_v2)


def _machine(cmdline: str = "ima_policy=tcb ima_appraise=enforce") -> Machine:
    m = Machine.create(cmdline=cmdline, builtin_keys=[pki()["root"].as_key()])
    m.boot()
    m.add_key(".ima", pki()["leaf"].as_key())
    return m


def test_initramfs_files_have_no_signature_so_strict_appraisal_denies_init() -> None:
    m = _machine()
    m.load_policy(APPRAISE_ALL)
    cpio = write_cpio([ArchiveMember("init", INIT, 0o100755,
                                     xattrs=(("security.ima", _sig(INIT)),))])
    assert m.unpack_initramfs(cpio) == ["/init"]
    assert m.files["/init"].xattrs == {}
    r = m.exec("/init")
    assert not r.allowed and r.reason == "IMA-signature-required"


def test_tar_carries_the_signature_onto_the_root_file_system() -> None:
    m = _machine()
    m.load_policy(APPRAISE_ALL)
    tar = write_tar([ArchiveMember("sbin", mode=0o40755),
                     ArchiveMember("sbin/init", INIT, 0o100755,
                                   xattrs=(("security.ima", _sig(INIT)),
                                           ("user.comment", b"not copied"))),
                     ArchiveMember("sbin/unsigned", b"x", 0o100755)])
    assert m.extract_tar(tar) == ["/sbin/init", "/sbin/unsigned"]
    assert set(m.files["/sbin/init"].xattrs) == {"security.ima"}
    assert m.exec("/sbin/init").allowed
    assert not m.exec("/sbin/unsigned").allowed


def test_appraise_tcb_does_not_appraise_rootfs_at_all() -> None:
    """The usual compromise: appraise_tcb skips tmpfs/ramfs, so anything in the
    initramfs runs unappraised (and unmeasured by tcb, which skips tmpfs too)."""
    m = _machine("ima_policy=tcb ima_policy=appraise_tcb ima_appraise=enforce")
    m.unpack_initramfs(write_cpio([ArchiveMember("init", b"evil init", 0o100755)]))
    r = m.exec("/init")
    assert r.allowed and not r.appraised and not r.measured


def test_embedded_initramfs_is_covered_by_the_kernel_signature() -> None:
    leaf = pki()["leaf"]
    cpio = write_cpio([ArchiveMember("init", INIT, 0o100755)])
    kernel = sign_pe(build_pe(b"bzImage payload" + cpio), key=leaf.key, certificate=leaf.cert)
    m = _machine()
    m.keyrings.secondary.add(leaf.as_key())
    assert verify_authenticode(kernel, keyrings=[m.keyrings.secondary])
    tampered = bytearray(kernel)
    at = kernel.index(b"exec switch_root")
    tampered[at:at + 4] = b"evil"
    with pytest.raises(Exception, match="digest"):
        verify_authenticode(bytes(tampered), keyrings=[m.keyrings.secondary])


def test_external_initramfs_needs_its_own_signature_for_kexec() -> None:
    m = _machine()
    m.load_policy("appraise func=KEXEC_INITRAMFS_CHECK appraise_type=imasig\n")
    cpio = write_cpio([ArchiveMember("init", INIT, 0o100755)])
    m.add_file("/boot/vmlinuz", build_pe(b"kernel"))
    m.add_file("/boot/initrd.img", cpio)
    r = m.kexec_load("/boot/vmlinuz", "/boot/initrd.img")
    assert not r.allowed and r.reason == "IMA-signature-required"
    m.add_file("/boot/initrd.signed", cpio, xattrs={"security.ima": _sig(cpio)})
    assert m.kexec_load("/boot/vmlinuz", "/boot/initrd.signed").allowed


def test_a_bad_archive_changes_nothing() -> None:
    m = _machine()
    before = dict(m.files)
    good = write_cpio([ArchiveMember("a", b"a"), ArchiveMember("b", b"b")])
    with pytest.raises(ParseError):
        m.unpack_initramfs(good[:-20])
    assert m.files == before
