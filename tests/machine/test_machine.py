"""The simulated kernel: tcb measurement, appraisal verdicts, modules, policy updates, kexec."""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import PolicyError
from imasim.ima.policy import MAY_READ, MAY_WRITE
from imasim.ima.replay import MatchStatus, check_boot_aggregate, match
from imasim.kconfig import PRESETS
from imasim.machine import TMPFS, Machine
from imasim.sig import sign_module
from imasim.sig.xattr import sign_xattr
from pki import pki

BANKS = (H.SHA1, H.SHA256, H.SHA384)


def machine(preset: str = "generic-6.1-ima-kexec", cmdline: str = "ima_policy=tcb",
            **kw: object) -> Machine:
    m = Machine.create(preset=preset, cmdline=cmdline, banks=BANKS,
                       builtin_keys=[pki()["root"].as_key()], **kw)  # type: ignore[arg-type]
    m.boot()
    return m


def replays(m: Machine) -> bool:
    return match(m.measurements, m.pcr_values()).status is MatchStatus.MATCH


def test_tcb_boot_measures_like_the_kernel() -> None:
    m = machine()
    m.add_file("/init", b"#!/bin/sh\n", fs=("ramfs", 0x858458F6))
    m.add_file("/bin/busybox", b"\x7fELF busybox")
    m.add_file("/etc/passwd", b"root:x:0:0\n", mode=0o100644)
    m.add_file("/tmp/scratch", b"x", fs=TMPFS)
    assert m.exec("/init")
    assert m.exec("/bin/busybox")
    m.exec("/bin/busybox")  # measured once
    m.read_file("/etc/passwd")  # FILE_CHECK mask=^MAY_READ uid=0
    m.read_file("/etc/passwd", uid=1000)  # euid/uid rules do not match, already measured
    m.read_file("/tmp/scratch")  # tmpfs: dont_measure
    names = [e.event_name for e in m.measurements]
    assert names == ["boot_aggregate", "/init", "/bin/busybox", "/etc/passwd"]
    first = m.measurements[1]
    assert first.template_name == "ima-ng"
    d = first.file_digest
    assert d is not None and d.algo == "sha256" and d.digest == H.SHA256.hash(b"#!/bin/sh\n")
    assert replays(m)
    assert check_boot_aggregate(m.measurements[0], m.pcr_values())


def test_changed_file_is_measured_again() -> None:
    m = machine()
    m.add_file("/bin/x", b"one")
    m.exec("/bin/x")
    m.write_file("/bin/x", b"two")
    m.exec("/bin/x")
    assert [e.event_name for e in m.measurements].count("/bin/x") == 2
    assert replays(m)


def test_violations_open_writers_and_tomtou() -> None:
    m = machine()
    m.add_file("/data", b"d", mode=0o100644)
    assert m.open("/data", MAY_WRITE)
    m.read_file("/data")  # read while open for write: open_writers
    m.close("/data", MAY_WRITE)
    assert [e.is_violation for e in m.measurements] == [False, True, False]
    assert m.violations == 1
    m.open("/data", MAY_READ)
    m.open("/data", MAY_WRITE)  # write while open for read (measured): ToMToU
    assert m.measurements[-1].is_violation
    assert replays(m)
    assert any(a.cause == "ToMToU" for a in m.audit)


def test_debian_6_1_padded_sha384_bank() -> None:
    m = machine(preset="debian12-6.1")
    m.add_file("/bin/sh", b"sh")
    m.exec("/bin/sh")
    result = match(m.measurements, m.pcr_values())
    assert result.status is MatchStatus.MATCH
    assert {b.bank for b in result.banks if b.padded} == {H.SHA384}


APPRAISE = "appraise func=BPRM_CHECK appraise_type=imasig\nmeasure func=BPRM_CHECK\n"


def signed_file(m: Machine, path: str, content: bytes, signer: str = "leaf") -> None:
    s = pki()[signer]
    value = sign_xattr(H.SHA256.hash(content), key=s.key, keyid=s.as_key().key_id_v2)
    m.add_file(path, content, xattrs={"security.ima": value})


@pytest.mark.parametrize("mode", ["enforce", "log"])
def test_appraisal(mode: str) -> None:
    m = machine(cmdline=f"ima_appraise={mode}")
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy(APPRAISE)
    signed_file(m, "/bin/good", b"good")
    m.add_file("/bin/unsigned", b"unsigned")
    signed_file(m, "/bin/changed", b"before")
    m.write_file("/bin/changed", b"after")
    signed_file(m, "/bin/stranger", b"s", signer="stranger")
    assert m.exec("/bin/good").allowed
    enforce = mode == "enforce"
    assert m.exec("/bin/unsigned").allowed is not enforce
    assert m.exec("/bin/changed").allowed is not enforce
    assert m.exec("/bin/stranger").allowed is not enforce
    causes = [a.cause for a in m.audit if a.op == "appraise_data"]
    assert causes == ["IMA-signature-required", "invalid-signature", "invalid-signature"]
    # the .ima key entered the list as a KEY_CHECK ima-buf entry? (no KEY_CHECK rule: no)
    assert replays(m)


def test_image_hash_blacklist_only_covers_modsig_with_check_blacklist() -> None:
    """ima_check_blacklist (6.1): only appraise_flag=check_blacklist rules, and only the
    digest of an appended signature; a file signed in security.ima is not looked up."""
    m = machine()
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy(APPRAISE)
    signed_file(m, "/bin/bad", b"bad")
    m.keyrings.blacklist.add_binary_hash(H.SHA256.hash(b"bad"))
    assert m.exec("/bin/bad").allowed
    leaf = pki()["leaf"]
    m = machine()
    m.add_key(".ima", leaf.as_key())
    m.keyrings.blacklist.add_binary_hash(H.SHA256.hash(b"bad"))
    m.load_policy("appraise func=MODULE_CHECK appraise_type=imasig|modsig "
                  "appraise_flag=check_blacklist\n")
    m.add_file("/lib/modules/bad.ko", sign_module(b"bad", key=leaf.key,
                                                  certificate=leaf.cert))
    r = m.load_module("/lib/modules/bad.ko")
    assert not r.allowed and r.reason == "blacklisted-hash"


def test_ima_keyring_refuses_keys_not_signed_by_builtin() -> None:
    m = machine()
    from imasim.errors import KeyRejectedError

    with pytest.raises(KeyRejectedError):
        m.add_key(".ima", pki()["stranger"].as_key())
    assert any(not e.admitted for e in m.keyrings.log.events)


def test_modules_with_appended_signatures() -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(module_sig_force=True)
    m = Machine.create(config=cfg, cmdline="ima_policy=tcb", banks=BANKS,
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy("measure func=MODULE_CHECK template=ima-modsig\n"
                  "appraise func=MODULE_CHECK appraise_type=imasig|modsig\n")
    s = pki()["leaf"]
    m.keyrings.secondary.add(s.as_key())
    m.add_file("/lib/modules/good.ko", sign_module(b"\x7fELF good", key=s.key,
                                                   certificate=s.cert))
    m.add_file("/lib/modules/bad.ko", b"\x7fELF unsigned")
    assert m.load_module("/lib/modules/good.ko").allowed
    assert not m.load_module("/lib/modules/bad.ko").allowed
    entry = next(e for e in m.measurements if e.event_name == "/lib/modules/good.ko")
    assert entry.template_name == "ima-modsig" and entry.fields["modsig"]
    assert replays(m)


def test_bad_policy_keeps_the_old_one() -> None:
    m = machine()
    before = m.policy
    with pytest.raises(PolicyError) as exc:
        m.load_policy("measure func=BPRM_CHECK\nmeasure func=BOGUS\n")
    assert exc.value.line == 2
    assert m.policy == before
    m.load_policy("measure func=BPRM_CHECK\n")
    with pytest.raises(PolicyError):  # no CONFIG_IMA_WRITE_POLICY: only one custom policy
        m.load_policy("measure func=MMAP_CHECK\n")


def test_key_check_and_kexec_cmdline_are_ima_buf() -> None:
    m = machine()
    m.load_policy("measure func=KEY_CHECK keyrings=.ima\nmeasure func=KEXEC_CMDLINE\n"
                  "measure func=KEXEC_KERNEL_CHECK\n")
    key = pki()["leaf"].as_key()
    m.add_key(".ima", key)
    e = m.measurements[-1]
    assert (e.template_name, e.event_name, e.fields["buf"]) == ("ima-buf", ".ima", key.der)
    m.add_file("/boot/vmlinuz", b"kernel")
    assert m.kexec_load("/boot/vmlinuz", cmdline="root=/dev/ram0 rk.stage=2")
    cmd = m.measurements[-1]
    assert cmd.event_name == "kexec-cmdline" and cmd.fields["buf"] == b"root=/dev/ram0 rk.stage=2"


def _kexec_n(m: Machine, n: int) -> None:
    m.add_file("/boot/vmlinuz", b"kernel image")
    for i in range(n):
        m.add_file(f"/usr/bin/tool{i}", f"tool {i}".encode())
        m.exec(f"/usr/bin/tool{i}")
        assert m.kexec_load("/boot/vmlinuz", cmdline="ima_policy=tcb")
        m.kexec_execute()


@pytest.mark.parametrize("n", [1, 2, 10])
def test_chained_kexecs_replay(n: int) -> None:
    m = machine()
    _kexec_n(m, n)
    names = [e.event_name for e in m.measurements]
    assert names.count("boot_aggregate") == n + 1
    assert replays(m)


def test_copy_at_load_loses_measurements_and_copy_at_execute_does_not() -> None:
    for preset, expect in (("generic-6.1-ima-kexec", False), ("mainline-6.16-ima-kexec", True)):
        m = machine(preset=preset)
        m.add_file("/boot/vmlinuz", b"kernel")
        m.add_file("/usr/bin/late", b"late")
        m.kexec_load("/boot/vmlinuz", cmdline="ima_policy=tcb")
        m.exec("/usr/bin/late")  # between load and execute
        m.kexec_execute()
        assert replays(m) is expect
        assert ("/usr/bin/late" in [e.event_name for e in m.measurements]) is expect


def test_without_ima_kexec_the_list_starts_over() -> None:
    m = machine(preset="debian12-6.1")
    m.add_file("/bin/a", b"a")
    m.exec("/bin/a")
    m.add_file("/boot/vmlinuz", b"kernel")
    m.kexec_load("/boot/vmlinuz", cmdline="ima_policy=tcb")
    old = list(m.measurements)
    m.kexec_execute()
    new = list(m.measurements)
    assert [e.event_name for e in new] == ["boot_aggregate"]
    assert not replays(m)  # the TPM still holds the old kernel's measurements
    assert match(old + new, m.pcr_values()).status is MatchStatus.MATCH


def test_hard_reboot_resets() -> None:
    m = machine()
    _kexec_n(m, 1)
    m.power_cycle()
    m.boot()
    assert len(m.measurements) == 1 and replays(m)


def test_ima_appraisal_path_for_kexec_images() -> None:
    m = machine()
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy("appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig\n")
    good, stranger = pki()["leaf"], pki()["stranger"]
    m.add_file("/boot/good", sign_module(b"MZ k", key=good.key, certificate=good.cert))
    m.add_file("/boot/bad", sign_module(b"MZ k", key=stranger.key, certificate=stranger.cert))
    assert m.kexec_load("/boot/good").allowed
    r = m.kexec_load("/boot/bad")
    assert not r.allowed and r.reason == "invalid-signature"


def test_ima_keyring_admits_secondary_signed_keys_only_when_configured() -> None:
    """CONFIG_IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY: a key vouched for by a
    key in .secondary_trusted_keys may enter .ima; by default only builtin keys vouch."""
    from imasim.errors import KeyRejectedError

    chained = pki()["chained"]  # issued by the intermediate CA, itself issued by root
    for permit in (False, True):
        cfg = PRESETS["generic-6.1-ima-kexec"].with_(
            ima_keyrings_permit_signed_by_builtin_or_secondary=permit)
        m = Machine.create(config=cfg, builtin_keys=[pki()["root"].as_key()])
        m.boot()
        m.keyrings.secondary.add(pki()["inter"].as_key())
        if permit:
            m.add_key(".ima", chained.as_key())
        else:
            with pytest.raises(KeyRejectedError):
                m.add_key(".ima", chained.as_key())


def test_lsm_labels_select_rules() -> None:
    """obj_* rules match the file's security.selinux context, subj_* rules the calling
    process's context (ima_match_rules with security_filter_rule_match)."""
    m = machine()
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy("measure func=BPRM_CHECK obj_type=bin_t\n"
                  "appraise func=BPRM_CHECK subj_type=user_t appraise_type=imasig\n")
    m.add_file("/usr/bin/ls", b"ls", xattrs={"security.selinux": b"system_u:object_r:bin_t:s0\0"})
    m.add_file("/tmp/x", b"x", xattrs={"security.selinux": b"user_u:object_r:user_tmp_t:s0\0"})
    r = m.exec("/usr/bin/ls", context="system_u:system_r:init_t:s0")
    assert r.allowed and r.measured and not r.appraised
    assert not m.exec("/tmp/x", context="system_u:system_r:init_t:s0").measured
    m.set_context("user_u:user_r:user_t:s0")
    r = m.exec("/tmp/x")
    assert not r.allowed and r.reason == "IMA-signature-required"
