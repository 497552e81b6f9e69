"""kexec_file_load's image verification on the Machine (kimage_validate_signature).

x86_64 checks a PE/COFF Authenticode signature against .secondary_trusted_keys, then
.platform on -ENOKEY; s390x checks an appended module-style signature the same way. A
failure refuses the load when signatures are enforced (CONFIG_KEXEC_SIG_FORCE, or secure
boot with CONFIG_IMA_ARCH_POLICY), else only under lockdown, unless the IMA policy
guarantees a signature appraisal of the image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from imasim.algorithms import HashAlgorithm as H
from imasim.ima.policy import Hook
from imasim.kconfig import PRESETS, KernelConfig
from imasim.keys import Key
from imasim.machine import Machine
from imasim.sig import build_pe, sign_module, sign_pe
from imasim.sig.authenticode import authenticode_digest
from pe.pe_support import debian_image
from pki import Signer, pki

BANKS = (H.SHA1, H.SHA256)
VECTORS = Path(__file__).parent.parent / "vectors"


def _machine(config: KernelConfig | None = None, *, secure_boot: bool = False,
             cmdline: str = "ima_policy=tcb", **changes: object) -> Machine:
    cfg = (config or PRESETS["generic-6.1-ima-kexec"]).with_(**changes)
    m = Machine.create(config=cfg, cmdline=cmdline, banks=BANKS, secure_boot=secure_boot,
                       builtin_keys=[pki()["root"].as_key()])
    m.boot()
    m.keyrings.secondary.add(pki()["leaf"].as_key())
    return m


def _pe(signer: Signer | None, payload: bytes = b"vmlinuz 6.1") -> bytes:
    image = build_pe(payload)
    return image if signer is None else sign_pe(image, key=signer.key,
                                                certificate=signer.cert)


def _load(m: Machine, image: bytes, path: str = "/boot/vmlinuz") -> tuple[bool, str]:
    m.add_file(path, image)
    r = m.kexec_load(path)
    return r.allowed, r.reason


def test_enforced_pe_signature_trusted_untrusted_unsigned() -> None:
    m = _machine(kexec_sig_force=True)
    assert _load(m, _pe(pki()["leaf"]))[0]
    ok, why = _load(m, _pe(pki()["stranger"]), "/boot/stranger")
    assert not ok and why.startswith("KEXEC_SIG")
    ok, why = _load(m, _pe(None), "/boot/unsigned")
    assert not ok and "unsigned" in why.lower()


def test_an_appended_signature_is_not_a_pe_signature_on_x86() -> None:
    m = _machine(kexec_sig_force=True)
    leaf = pki()["leaf"]
    ok, why = _load(m, sign_module(b"MZ kernel", key=leaf.key, certificate=leaf.cert))
    assert not ok and "KEXEC_SIG" in why


def test_platform_keyring_is_tried_on_enokey_only_when_configured() -> None:
    stranger = pki()["stranger"]
    m = _machine(kexec_sig_force=True)
    m.keyrings.platform.add(stranger.as_key())  # a UEFI db certificate
    assert _load(m, _pe(stranger))[0]
    m = _machine(kexec_sig_force=True, integrity_platform_keyring=False)
    m.keyrings.platform.add(stranger.as_key())
    assert not _load(m, _pe(stranger))[0]


def test_blacklisted_signer_is_refused() -> None:
    m = _machine(kexec_sig_force=True)
    tbs = pki()["leaf"].as_key().tbs_hash()
    assert tbs is not None
    m.keyrings.blacklist.add_tbs_hash(tbs)
    ok, why = _load(m, _pe(pki()["leaf"]))
    assert not ok and "blacklist" in why.lower()


def test_image_hash_blacklist_is_not_a_kexec_sig_check() -> None:
    """verify_pefile_signature never calls is_binary_blacklisted: a bin: entry (e.g. from
    dbx) does not stop KEXEC_SIG. IMA appraisal with appraise_flag=check_blacklist does
    stop an image whose modsig digest is blacklisted, and measures the hash."""
    image = _pe(pki()["leaf"])
    m = _machine(kexec_sig_force=True)
    m.keyrings.blacklist.add_binary_hash(authenticode_digest(image))
    m.keyrings.blacklist.add_binary_hash(H.SHA256.hash(image))
    assert _load(m, image)[0]

    leaf = pki()["leaf"]
    payload = b"MZ kernel for s390-style modsig"
    m = _machine(cmdline="ima_policy=tcb ima_appraise=enforce")
    m.add_key(".ima", leaf.as_key())
    m.load_policy("measure func=KEXEC_KERNEL_CHECK\n"
                  "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig "
                  "appraise_flag=check_blacklist\n")
    m.keyrings.blacklist.add_binary_hash(H.SHA256.hash(payload))
    before = len(m.measurements)
    ok, why = _load(m, sign_module(payload, key=leaf.key, certificate=leaf.cert))
    assert not ok and why == "blacklisted-hash"
    names = [e.event_name for e in list(m.measurements)[before:]]
    assert names == ["/boot/vmlinuz", "blacklisted-hash"]
    assert list(m.measurements)[-1].fields["buf"] == H.SHA256.hash(payload)


def test_unenforced_failure_is_accepted_unless_locked_down() -> None:
    assert _load(_machine(), _pe(None))[0]
    assert _load(_machine(), _pe(pki()["stranger"]))[0]
    ok, why = _load(_machine(lockdown="integrity"), _pe(None))
    assert not ok and "lockdown" in why


def test_lockdown_admits_what_ima_guarantees_to_appraise() -> None:
    """ima_appraise_signature(READING_KEXEC_IMAGE): under lockdown an image without a
    valid PE signature loads when the first appraise rule for the hook requires a
    signature and appraisal is enforced; IMA then appraised its appended signature."""
    leaf = pki()["leaf"]
    image = sign_module(b"MZ kernel", key=leaf.key, certificate=leaf.cert)
    policy = "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig|modsig\n"
    m = _machine(lockdown="integrity", cmdline="ima_policy=tcb ima_appraise=enforce")
    m.add_key(".ima", leaf.as_key())
    m.load_policy(policy)
    assert m.policy.appraise_signature(Hook.KEXEC_KERNEL_CHECK)
    assert _load(m, image)[0]
    m = _machine(lockdown="integrity", cmdline="ima_policy=tcb ima_appraise=log")
    m.add_key(".ima", leaf.as_key())
    m.load_policy(policy)
    ok, why = _load(m, image)
    assert not ok and "lockdown" in why
    m = _machine(lockdown="integrity", cmdline="ima_policy=tcb ima_appraise=enforce")
    m.load_policy("appraise func=KEXEC_KERNEL_CHECK\n")  # a hash is not a signature
    assert not _load(m, _pe(None))[0]


def test_secure_boot_on_debian_enforces_and_locks_down() -> None:
    m = _machine(PRESETS["debian12-6.1"], secure_boot=True)
    assert m.lockdown == "integrity" and m.kexec_sig_enforced and m.module_sig_enforced
    rules = m.policy.render()
    assert "measure func=KEXEC_KERNEL_CHECK\n" in rules and "appraise" not in rules
    before = len(m.measurements)
    ok, why = _load(m, _pe(pki()["stranger"]))
    assert not ok and "KEXEC_SIG" in why
    # the arch rule measured the image even though tcb has no kexec rule
    assert list(m.measurements)[before].event_name == "/boot/vmlinuz"
    assert _load(m, _pe(pki()["leaf"]), "/boot/good")[0]
    # a custom policy keeps the arch rules at its head
    m.load_policy("measure func=BPRM_CHECK\n")
    assert m.policy.rules[0].text == "measure func=KEXEC_KERNEL_CHECK"
    off = _machine(PRESETS["debian12-6.1"], secure_boot=False)
    assert off.lockdown == "none" and not off.kexec_sig_enforced
    assert _load(off, _pe(pki()["stranger"]))[0]


def test_s390_checks_an_appended_signature() -> None:
    m = _machine(kexec_sig_force=True, arch="s390x")
    leaf = pki()["leaf"]
    assert _load(m, sign_module(b"s390 kernel", key=leaf.key, certificate=leaf.cert))[0]
    ok, why = _load(m, b"s390 kernel", "/boot/unsigned")
    assert not ok and "no appended signature" in why
    assert not _load(m, _pe(leaf), "/boot/pe")[0]


def test_debian_vmlinuz_kexecs_when_the_debian_ca_is_in_the_platform_keyring() -> None:
    """Debian's signed kernel under secure boot: the CA from UEFI db (shim's vendor cert
    in practice) is in .platform, nothing of Debian's in .secondary_trusted_keys."""
    image = debian_image("vmlinuz")
    ca = x509.load_pem_x509_certificate((VECTORS / "debian" / "debian-secure-boot-ca.pem")
                                        .read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding
    m = _machine(PRESETS["debian12-6.1"], secure_boot=True)
    assert not _load(m, image)[0]
    m.keyrings.platform.add(Key.from_certificate(ca.public_bytes(Encoding.DER)))
    ok, why = _load(m, image, "/boot/vmlinuz-debian")
    assert ok, why


def test_failed_load_leaves_no_kexec_image_loaded() -> None:
    m = _machine(kexec_sig_force=True)
    assert not _load(m, _pe(None))[0]
    with pytest.raises(Exception, match="no kexec image"):
        m.kexec_execute()


@pytest.mark.interop
def test_build_pe_images_are_accepted_by_the_real_tools(tmp_path: Path) -> None:
    """A simulated kernel image made by build_pe and signed by sign_pe is a PE file the
    Authenticode tools accept: sbverify verifies it, pesign computes the same digest."""
    import subprocess

    from cryptography.hazmat.primitives.serialization import Encoding

    from tools import need
    leaf = pki()["leaf"]
    image = _pe(leaf, b"\x31\xc0\xc3" + bytes(5000))
    (tmp_path / "vmlinuz.efi").write_bytes(image)
    (tmp_path / "leaf.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
    r = subprocess.run([need("sbverify"), "--cert", str(tmp_path / "leaf.pem"),
                        str(tmp_path / "vmlinuz.efi")], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([need("pesign"), "-h", "-i", str(tmp_path / "vmlinuz.efi")],
                       capture_output=True, text=True, check=False)
    assert authenticode_digest(image).hex() in r.stdout, r.stdout + r.stderr


# "ima: force signature verification when CONFIG_KEXEC_SIG is configured" (af16df54b89d):
# mainline 5.19; stable 5.10.132, 5.15.56, 5.18.13 (the 2022-07-19 review series); 5.4.y
# never took it, and 5.11-5.14, 5.16, 5.17 had ended. (version, sublevel, forced)
FORCE_ERAS = [
    ((5, 4), 302, False), ((5, 10), 131, False), ((5, 10), 132, True),
    ((5, 14), 21, False), ((5, 15), None, False), ((5, 15), 55, False),
    ((5, 15), 56, True), ((5, 15), 190, True), ((5, 17), 15, False),
    ((5, 18), 12, False), ((5, 18), 13, True), ((5, 19), None, True),
    ((6, 1), None, True),
]


@pytest.mark.parametrize("version, sublevel, forced", FORCE_ERAS)
def test_secure_boot_forces_kexec_sig_from_the_release_with_the_2022_change(
        version: tuple[int, int], sublevel: int | None, forced: bool) -> None:
    """Before the change, an x86_64 kernel with KEXEC_SIG booted with secure boot loads an
    unsigned kernel (its arch policy does not appraise kexec images when KEXEC_SIG is
    built); from it, KEXEC_SIG refuses it. A PE-signed kernel loads in every era."""
    m = _machine(version=version, sublevel=sublevel, secure_boot=True, ima_arch_policy=True,
                 kexec_sig=True, kexec_sig_force=False, lockdown="none")
    assert m.kexec_sig_enforced is forced and m.module_sig_enforced
    assert "appraise func=KEXEC_KERNEL_CHECK" not in m.policy.render()
    ok, why = _load(m, _pe(None), "/boot/unsigned")
    assert ok is not forced, why
    assert forced is ("KEXEC_SIG" in why)
    assert _load(m, _pe(pki()["leaf"]), "/boot/signed")[0]


def test_the_force_is_a_patch_level_property_read_from_the_kconfig() -> None:
    """The same .config of 5.15 read at two patch levels: the sublevel decides."""
    text = "CONFIG_X86_64=y\nCONFIG_EFI=y\nCONFIG_KEXEC_SIG=y\nCONFIG_IMA_ARCH_POLICY=y\n"
    old = KernelConfig.from_kconfig(text, version=(5, 15), sublevel=55)
    new = KernelConfig.from_kconfig(text, version=(5, 15), sublevel=56)
    assert (old.sublevel, new.sublevel) == (55, 56)
    assert not old.arch_policy_forces_kexec_sig and new.arch_policy_forces_kexec_sig
    # without a sublevel the series is taken at its first release
    assert not KernelConfig.from_kconfig(text, version=(5, 15)).arch_policy_forces_kexec_sig
    # the presets carry the real builds' patch levels
    assert PRESETS["debian12-6.1"].sublevel == 192 and PRESETS["debian12-6.12"].sublevel == 117


def test_arm64_has_no_arch_policy_before_5_11() -> None:
    """'arm64/ima: add ima_arch support' (92a39be3b05a) came with 5.11: a 5.10 arm64 kernel
    with secure boot gets no arch rules and forces nothing, even at 5.10.132 (whose
    backport touched arch/x86/kernel/ima_arch.c only); 5.11+ arm64 has x86's rules."""
    from imasim.ima.archpolicy import arch_rules

    cfg = PRESETS["generic-6.1-ima-kexec"].with_(arch="arm64", ima_arch_policy=True)
    old = arch_rules(cfg.with_(version=(5, 10), sublevel=132), secure_boot=True)
    assert old.rules == "" and not old.kexec_sig_enforced and not old.module_sig_enforced
    x86 = arch_rules(cfg.with_(arch="x86_64", version=(5, 10), sublevel=132),
                     secure_boot=True)
    assert x86.kexec_sig_enforced and "measure func=KEXEC_KERNEL_CHECK" in x86.rules
    new = arch_rules(cfg.with_(version=(5, 15), sublevel=56), secure_boot=True)
    assert new == arch_rules(cfg.with_(arch="x86_64", version=(5, 15), sublevel=56),
                             secure_boot=True)
