"""IPE's hook on the classic kexec_load(2): ipe_kernel_load_data (security/ipe/hooks.c).

kexec_load_check (kernel/kexec.c, 6.12) calls security_kernel_load_data(LOADING_KEXEC_IMAGE)
before security_locked_down(LOCKDOWN_KEXEC); IPE is an ordered LSM and IMA runs last
(LSM_ORDER_LAST), so IPE decides first. ipe_build_eval_ctx(&ctx, NULL, IPE_OP_KEXEC_IMAGE,
IPE_HOOK_KERNEL_LOAD) has no file: ctx->initramfs is false, ipe_bdev and ino are NULL, so
(eval.c) boot_verified=TRUE, dmverity_roothash, fsverity_digest and the *_signature=TRUE
properties never match while boot_verified=FALSE, dmverity_signature=FALSE and
fsverity_signature=FALSE always do; then the op default, then the global default.
ipe_audit_match writes ``path=? dev=? ino=?`` for a context without a file.
"""

from __future__ import annotations

import pytest

from imasim.archive import ArchiveMember, write_cpio
from imasim.ipe.lsm import Providers
from imasim.kconfig import PRESETS
from imasim.machine import Machine
from imasim.scenario import parse_scenario, run_scenario

HEAD = "policy_name=kexec policy_version=0.0.1\nDEFAULT action=ALLOW\n"
INITRAMFS_ONLY = HEAD + ("DEFAULT op=KEXEC_IMAGE action=DENY\n"
                         "op=KEXEC_IMAGE boot_verified=TRUE action=ALLOW\n")
NOFILE = 'ipe_op=KEXEC_IMAGE ipe_hook=KERNEL_LOAD enforcing={e} pid=1 comm="kexec" ' \
         'path=? dev=? ino=? rule="{rule}"'


def _machine(policy: str | None, *, enforce: bool = True, cmdline: str = "ima_policy=tcb",
             secure_boot: bool = False, **changes: object) -> Machine:
    m = Machine.create(config=PRESETS["debian12-6.12"].with_(**changes), cmdline=cmdline,
                       secure_boot=secure_boot)
    m.enable_ipe(policy, enforce=enforce)
    m.boot()
    m.unpack_initramfs(write_cpio([ArchiveMember("boot/vmlinuz", b"next kernel", 0o100644)]))
    m.add_file("/var/tmp/vmlinuz", b"a kernel on the disk")
    return m


def _classic(m: Machine, kernel: str = "/boot/vmlinuz") -> tuple[bool, str]:
    r = m.kexec_load(kernel, syscall="kexec_load")
    return r.allowed, r.reason


def _records(m: Machine) -> list[str]:
    assert m.ipe is not None
    return [str(a) for a in m.ipe.audit if a.type == 1420]


def test_a_boot_verified_policy_refuses_the_classic_call_with_its_record() -> None:
    m = _machine(INITRAMFS_ONLY)
    assert m.kexec_load("/boot/vmlinuz").allowed  # kexec_file_load: the file is boot_verified
    before = m.snapshot()
    allowed, reason = _classic(m)
    assert not allowed and reason == "IPE: DEFAULT op=KEXEC_IMAGE action=DENY (EACCES)"
    assert m.snapshot() == before  # the image kexec_file_load put there stays
    assert _records(m)[-1] == "type=1420 " + NOFILE.format(
        e=1, rule="DEFAULT op=KEXEC_IMAGE action=DENY")


@pytest.mark.parametrize("prop, matches", [
    ("boot_verified=FALSE", True), ("dmverity_signature=FALSE", True),
    ("fsverity_signature=FALSE", True), ("boot_verified=TRUE", False),
    ("dmverity_signature=TRUE", False), ("fsverity_signature=TRUE", False),
    ("dmverity_roothash=sha256:" + "00" * 32, False),
    ("fsverity_digest=sha256:" + "00" * 32, False)])
def test_with_no_file_every_false_property_matches_and_nothing_else(prop: str,
                                                                    matches: bool) -> None:
    m = _machine(HEAD + f"op=KEXEC_IMAGE {prop} action=DENY\n")
    assert _classic(m)[0] is not matches
    if matches:
        assert _records(m)[-1].endswith(f'rule="op=KEXEC_IMAGE {prop} action=DENY"')
    else:
        assert _records(m) == []  # the global default ALLOW, no success_audit: no record


def test_a_missing_property_provider_matches_neither_form() -> None:
    m = _machine(HEAD + "op=KEXEC_IMAGE dmverity_signature=FALSE action=DENY\n")
    assert m.ipe is not None
    m.ipe.providers = Providers(dm_verity_signature=False)  # no IPE_PROP_DM_VERITY_SIGNATURE
    assert _classic(m)[0]


def test_the_global_default_decides_without_an_op_default() -> None:
    m = _machine("policy_name=p policy_version=0.0.1\nDEFAULT action=DENY\n"
                 "op=EXECUTE action=ALLOW\n")
    assert _classic(m) == (False, "IPE: DEFAULT action=DENY (EACCES)")
    assert _records(m)[-1].endswith('rule="DEFAULT action=DENY"')


def test_permissive_mode_records_and_lets_ima_and_lockdown_decide() -> None:
    m = _machine(INITRAMFS_ONLY, enforce=False)
    assert _classic(m) == (True, "")
    assert _records(m)[-1] == "type=1420 " + NOFILE.format(
        e=0, rule="DEFAULT op=KEXEC_IMAGE action=DENY")
    m = _machine(INITRAMFS_ONLY, enforce=False, lockdown="integrity")
    allowed, reason = _classic(m)
    assert not allowed and reason.endswith("(EPERM)") and "Lockdown" in reason


def test_ipe_decides_before_ima() -> None:
    # secure boot with KEXEC_SIG: IMA's ima_load_data would refuse (EACCES) - after IPE
    m = _machine(INITRAMFS_ONLY, secure_boot=True, lock_down_in_efi_secure_boot=False)
    assert _classic(m)[1].startswith("IPE: ")
    m = _machine(HEAD, secure_boot=True, lock_down_in_efi_secure_boot=False)
    allowed, reason = _classic(m)
    assert not allowed and "kexec_file_load syscall" in reason and _records(m) == []


def test_success_audit_records_the_allowed_call() -> None:
    m = _machine(HEAD, cmdline="ima_policy=tcb ipe.success_audit=1")
    assert _classic(m) == (True, "")
    assert _records(m)[-1] == "type=1420 " + NOFILE.format(e=1, rule="DEFAULT action=ALLOW")


def test_no_active_policy_allows_without_a_record() -> None:
    m = _machine(None)
    assert _classic(m) == (True, "") and _records(m) == []


def test_the_scenario_pair_writes_the_record() -> None:
    from pathlib import Path

    docs = Path(__file__).parent.parent.parent / "docs" / "scenarios"
    deny = run_scenario(parse_scenario(
        (docs / "ipe-kexec-load-boot-verified.toml").read_text()))
    allow = run_scenario(parse_scenario(
        (docs / "ipe-kexec-load-op-default-allow.toml").read_text()))
    assert deny.ok and allow.ok
    log = deny.artifacts["ipe-audit.log"].decode()
    assert "type=1420 " + NOFILE.format(e=1, rule="DEFAULT op=KEXEC_IMAGE action=DENY") in log
    assert 'ipe_hook=KERNEL_READ enforcing=1 pid=1 comm="kexec" path="/var/tmp/vmlinuz"' in log
    assert allow.artifacts["ipe-audit.log"] == b""


def test_the_classic_unload_is_judged_as_a_load() -> None:
    """kexec -c -u is kexec_load(2) with no segments: kexec_load_check runs before
    do_kexec_load uninstalls the image, so IPE refuses it with the same record; kexec -s -u
    (KEXEC_FILE_UNLOAD) asks no LSM."""
    m = _machine(INITRAMFS_ONLY)
    assert m.kexec_load("/boot/vmlinuz").allowed
    before = m.snapshot()
    r = m.kexec_load(None, syscall="kexec_load")
    assert not r.allowed and r.reason == "IPE: DEFAULT op=KEXEC_IMAGE action=DENY (EACCES)"
    assert m.snapshot() == before and m.state.boot.kexec is not None
    assert _records(m)[-1] == "type=1420 " + NOFILE.format(
        e=1, rule="DEFAULT op=KEXEC_IMAGE action=DENY")
    n = len(_records(m))
    assert m.kexec_load(None).allowed and m.state.boot.kexec is None
    assert len(_records(m)) == n
    assert m.kexec_load(None).allowed  # nothing loaded: still fine
