"""The unsigned-policy proposal (not mainline): the initramfs-then-lockdown flow, and what
an attacker who controls the initramfs, or can write to rootfs later, can do under it."""

from __future__ import annotations

import pytest

from imasim.archive import ArchiveMember, write_cpio
from imasim.ipe import IpeError
from imasim.machine import Machine

BOOT = """policy_name=boot policy_version=0.0.0
DEFAULT action=DENY
op=EXECUTE boot_verified=TRUE action=ALLOW
op=POLICY boot_verified=TRUE action=ALLOW
"""


def _lockdown(root: bytes, *, keep_policy_rule: bool = False) -> bytes:
    extra = "op=POLICY boot_verified=TRUE action=ALLOW\n" if keep_policy_rule else ""
    return (f"policy_name=lockdown policy_version=1.0.0\nDEFAULT action=DENY\n{extra}"
            f"op=EXECUTE dmverity_roothash=sha256:{root.hex()} action=ALLOW\n").encode()


def _boot(policy: bytes, *, proposal: bool = True) -> Machine:
    m = Machine.create(preset="debian12-6.12")
    m.enable_ipe(BOOT, unsigned_policy_by_rule=proposal)
    m.boot()
    root = m.mount_dm_verity({"/usr/sbin/init": b"systemd"}).root_hash
    m.unpack_initramfs(write_cpio([
        ArchiveMember("init", b"#!/bin/sh\n", 0o100755),
        ArchiveMember("etc/ipe/lockdown.pol", policy.replace(b"ROOT", root.hex().encode()))]))
    m.add_file("/var/tmp/dropper", b"dropper")
    return m


def test_initramfs_then_lockdown() -> None:
    probe = Machine.create().mount_dm_verity({"/usr/sbin/init": b"systemd"}).root_hash
    m = _boot(_lockdown(probe))
    assert m.exec("/init").allowed and not m.exec("/var/tmp/dropper").allowed
    m.ipe_load_policy_file("/etc/ipe/lockdown.pol", activate=True)
    assert m.ipe is not None and m.ipe.active == "lockdown"
    assert m.exec("/usr/sbin/init").allowed
    assert not m.exec("/var/tmp/dropper").allowed and not m.exec("/init").allowed


def test_mainline_refuses_the_unsigned_policy() -> None:
    probe = Machine.create().mount_dm_verity({"/usr/sbin/init": b"systemd"}).root_hash
    m = _boot(_lockdown(probe), proposal=False)
    with pytest.raises(IpeError) as e:
        m.ipe_load_policy_file("/etc/ipe/lockdown.pol")
    assert e.value.errno == 74  # -EBADMSG: not a PKCS#7 message
    assert m.ipe is not None and m.ipe.active == "boot"


def test_an_attacker_who_controls_the_initramfs_controls_the_policy() -> None:
    """The initramfs is not covered by the kernel's signature when it is external: whoever
    can replace it ships any policy, and the boot policy admits it."""
    m = _boot(b"policy_name=lockdown policy_version=1.0.0\nDEFAULT action=ALLOW\n")
    m.ipe_load_policy_file("/etc/ipe/lockdown.pol", activate=True)
    assert m.exec("/var/tmp/dropper").allowed


def test_rootfs_stays_boot_verified_so_a_policy_rule_left_in_place_is_a_back_door() -> None:
    """boot_verified is a property of the rootfs superblock, not of the files the
    initramfs brought: a file written to rootfs later (if switch_root did not empty it and
    the attacker can write there) is boot_verified too."""
    probe = Machine.create().mount_dm_verity({"/usr/sbin/init": b"systemd"}).root_hash
    m = _boot(_lockdown(probe, keep_policy_rule=True))
    m.ipe_load_policy_file("/etc/ipe/lockdown.pol", activate=True)
    rootfs = m.files["/init"].fs
    m.add_file("/evil.pol", b"policy_name=lockdown policy_version=2.0.0\nDEFAULT action=ALLOW\n",
               fs=rootfs)
    m.ipe_load_policy_file("/evil.pol", update="lockdown")
    assert m.exec("/var/tmp/dropper").allowed
    # without the op=POLICY rule in the lockdown policy, the same write gets nowhere
    m2 = _boot(_lockdown(probe))
    m2.ipe_load_policy_file("/etc/ipe/lockdown.pol", activate=True)
    m2.add_file("/evil.pol", b"policy_name=lockdown policy_version=2.0.0\nDEFAULT action=ALLOW\n",
                fs=m2.files["/init"].fs)
    with pytest.raises(IpeError):
        m2.ipe_load_policy_file("/evil.pol", update="lockdown")
    assert not m2.exec("/var/tmp/dropper").allowed
