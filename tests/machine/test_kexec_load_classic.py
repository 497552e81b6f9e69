"""The classic kexec_load(2) beside kexec_file_load(2).

kexec_load_check (kernel/kexec.c) asks the LSMs first: IMA's ima_load_data
(LOADING_KEXEC_IMAGE) refuses with EACCES when the kernel has KEXEC_SIG and booted with
secure boot, or when appraisal is enforced and the policy appraises KEXEC_KERNEL_CHECK;
then lockdown (LOCKDOWN_KEXEC) refuses with EPERM. Otherwise the segments load with
nothing measured, appraised or verified, and without the IMA buffer that only
kexec_file_load adds (ima_add_kexec_buffer): the next kernel starts a new list.
"""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import UsageError
from imasim.kconfig import PRESETS
from imasim.machine import Machine
from imasim.state import KexecCopy

BANKS = (H.SHA1, H.SHA256)


def _machine(preset: str = "generic-6.1-ima-kexec", *, secure_boot: bool = False,
             cmdline: str = "ima_policy=tcb", **changes: object) -> Machine:
    m = Machine.create(config=PRESETS[preset].with_(**changes), cmdline=cmdline, banks=BANKS,
                       secure_boot=secure_boot)
    m.boot()
    m.add_file("/boot/vmlinuz", b"an unsigned kernel")
    m.add_file("/boot/initrd", b"an initramfs")
    m.add_file("/usr/bin/tool", b"tool")
    m.exec("/usr/bin/tool")
    return m


def _refused(m: Machine, errno: str, why: str) -> None:
    before = m.snapshot()
    r = m.kexec_load("/boot/vmlinuz", "/boot/initrd", "ima_policy=tcb", syscall="kexec_load")
    assert not r.allowed and r.reason.endswith(f"({errno})") and why in r.reason
    assert m.snapshot() == before


def test_lockdown_refuses_with_eperm() -> None:
    _refused(_machine(lockdown="integrity"), "EPERM", "kexec of unsigned images")
    _refused(_machine(lockdown="confidentiality"), "EPERM", "Lockdown")


def test_secure_boot_with_kexec_sig_refuses_with_eacces_before_lockdown() -> None:
    # IMA (security_kernel_load_data) runs before security_locked_down: EACCES wins
    m = _machine("debian12-6.1", secure_boot=True)
    assert m.lockdown == "integrity"
    _refused(m, "EACCES", "without a file descriptor")
    _refused(_machine(secure_boot=True), "EACCES", "kexec_file_load syscall")
    # secure boot without KEXEC_SIG: IMA does not object (no appraise rule), lockdown off
    m = _machine(secure_boot=True, kexec_sig=False)
    assert m.kexec_load("/boot/vmlinuz", syscall="kexec_load").allowed


def test_enforced_kexec_appraisal_refuses_with_eacces() -> None:
    m = _machine(cmdline="ima_policy=tcb ima_appraise=enforce")
    m.load_policy("measure func=KEXEC_KERNEL_CHECK\nappraise func=KEXEC_KERNEL_CHECK\n")
    _refused(m, "EACCES", "without a file descriptor")
    # appraisal not enforced (log), or no appraise rule for the hook: it loads
    m = _machine(cmdline="ima_policy=tcb ima_appraise=log")
    m.load_policy("appraise func=KEXEC_KERNEL_CHECK\n")
    assert m.kexec_load("/boot/vmlinuz", syscall="kexec_load").allowed
    m = _machine(cmdline="ima_policy=tcb ima_appraise=enforce")
    m.load_policy("appraise func=BPRM_CHECK\nmeasure func=KEXEC_KERNEL_CHECK\n")
    assert m.kexec_load("/boot/vmlinuz", syscall="kexec_load").allowed
    # without CONFIG_IMA_APPRAISE ima_appraise has no ENFORCE bit
    m = _machine(cmdline="ima_policy=tcb", ima_appraise=False)
    m.load_policy("appraise func=KEXEC_KERNEL_CHECK\n")
    assert m.kexec_load("/boot/vmlinuz", syscall="kexec_load").allowed


def test_loads_unmeasured_and_the_next_kernel_starts_a_new_list() -> None:
    m = _machine()
    m.load_policy("measure func=KEXEC_KERNEL_CHECK\nmeasure func=KEXEC_INITRAMFS_CHECK\n"
                  "measure func=KEXEC_CMDLINE\nmeasure func=BPRM_CHECK\n")
    old = list(m.measurements)
    r = m.kexec_load("/boot/vmlinuz", "/boot/initrd", "ima_policy=tcb", syscall="kexec_load")
    assert r.allowed and not r.measured and not r.appraised
    assert list(m.measurements) == old  # not the image, initrd nor command line
    m.kexec_execute()
    (rec,) = m.kexec_log
    assert rec.copied_at == KexecCopy.NOT_CARRIED and rec.carried == 0
    assert list(rec.lost) == old
    new = list(m.measurements)
    assert [e.event_name for e in new] == ["boot_aggregate"]  # /usr/bin/tool is gone
    assert m.lost_measurements == tuple(old)


def test_kexec_file_load_on_the_same_machine_carries_the_list() -> None:
    m = _machine()
    old = list(m.measurements)
    assert m.kexec_load("/boot/vmlinuz", cmdline="ima_policy=tcb").allowed
    m.kexec_execute()
    (rec,) = m.kexec_log
    assert rec.copied_at == KexecCopy.LOAD and rec.lost == ()
    assert list(m.measurements)[:len(old)] == old
    # the next kexec, by kexec_load, drops everything the two kernels measured
    carried = list(m.measurements)
    assert m.kexec_load("/boot/vmlinuz", syscall="kexec_load").allowed
    m.kexec_execute()
    assert m.kexec_log[1].carried == 0 and list(m.kexec_log[1].lost) == carried


def test_unknown_syscall_and_missing_file_are_errors() -> None:
    m = _machine()
    before = m.snapshot()
    with pytest.raises(UsageError, match="unknown kexec syscall"):
        m.kexec_load("/boot/vmlinuz", syscall="kexec")
    with pytest.raises(UsageError, match="no such file"):
        m.kexec_load("/boot/missing", syscall="kexec_load")
    assert m.snapshot() == before


def test_the_classic_unload_meets_the_same_checks() -> None:
    """kexec -c -u (kexec_load with no segments) passes kexec_load_check like a load:
    lockdown refuses it (EPERM), IMA under secure boot with KEXEC_SIG (EACCES); kexec -s -u
    (KEXEC_FILE_UNLOAD) is never refused."""
    for m, errno in ((_machine(lockdown="integrity"), "EPERM"),
                     (_machine("debian12-6.1", secure_boot=True), "EACCES")):
        before = m.snapshot()
        r = m.kexec_load(None, syscall="kexec_load")
        assert not r.allowed and r.reason.endswith(f"({errno})")
        assert m.snapshot() == before
        assert m.kexec_load(None).allowed
    m = _machine()
    assert m.kexec_load("/boot/vmlinuz", syscall="kexec_load").allowed
    assert m.kexec_load(None, syscall="kexec_load").allowed and m.state.boot.kexec is None
