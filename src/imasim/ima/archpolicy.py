"""The IMA architecture policy (CONFIG_IMA_ARCH_POLICY), per architecture and era.

When the firmware booted with secure boot on, ``arch_get_ima_policy`` returns rules that
IMA adds to its boot policy, and may also force module and kexec signatures. What it
does depends on the architecture and the kernel:

* x86_64 and arm64 (security/integrity/ima/ima_efi.c, only with CONFIG_EFI; before 5.11
  it was arch/x86/kernel/ima_arch.c and arm64 had no arch policy: "arm64/ima: add
  ima_arch support", 92a39be3b05a, came with 5.11): ``sb_arch_rules`` measure kexec
  images and modules, and appraise them (imasig) only when KEXEC_SIG / MODULE_SIG are
  not built; with MODULE_SIG it calls set_module_sig_enforced(), and with KEXEC_SIG
  set_kexec_sig_enforced() too since "ima: force signature verification when
  CONFIG_KEXEC_SIG is configured" (af16df54b89d, 2022: mainline 5.19, stable 5.10.132,
  5.15.56 and 5.18.13; :func:`imasim.kconfig.forces_kexec_sig`). Before that change a
  kernel with KEXEC_SIG and secure boot loads an unsigned image unless something else
  (lockdown) refuses it.
* ppc64le (arch/powerpc/kernel/ima_arch.c): secure boot appraises kexec images, and
  modules when MODULE_SIG is not built, with ``appraise_type=imasig|modsig
  appraise_flag=check_blacklist``: POWER verifies kernel images with IMA (appended
  signatures), mainline POWER has no KEXEC_SIG. With MODULE_SIG it forces module
  signatures.
* s390x (arch/s390/kernel/ima_arch.c): no EFI; the IPL secure flag is the secure-boot
  state but the arch policy is empty and forces nothing.

>>> from imasim.kconfig import KernelConfig
>>> on = KernelConfig(ima_arch_policy=True)
>>> arch_rules(on.with_(arch="s390x"), secure_boot=True)
ArchPolicy(rules='', module_sig_enforced=False, kexec_sig_enforced=False)
>>> arch_rules(on.with_(version=(5, 15), sublevel=55), secure_boot=True).kexec_sig_enforced
False
>>> arch_rules(on.with_(version=(5, 15), sublevel=56), secure_boot=True).kexec_sig_enforced
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import UsageError
from ..kconfig import KernelConfig

__all__ = ["ArchPolicy", "arch_rules"]

#: "arm64/ima: add ima_arch support" (92a39be3b05a): arm64's arch policy since 5.11
_ARM64_SINCE: Final = (5, 11)

_POWER_APPRAISE: Final = "appraise_flag=check_blacklist appraise_type=imasig|modsig"


@dataclass(frozen=True, slots=True)
class ArchPolicy:
    """What arch_get_ima_policy gave: the rules (policy text) and what it forced."""

    rules: str = ""
    module_sig_enforced: bool = False
    kexec_sig_enforced: bool = False


def arch_rules(config: KernelConfig, *, secure_boot: bool) -> ArchPolicy:
    """The architecture policy of ``config``'s kernel booted with ``secure_boot``."""
    if not (config.ima_arch_policy and secure_boot):
        return ArchPolicy()
    if config.arch == "s390x":
        return ArchPolicy()
    if config.arch == "ppc64le":
        rules = f"appraise func=KEXEC_KERNEL_CHECK {_POWER_APPRAISE}\n"
        if not config.module_sig:
            rules += f"appraise func=MODULE_CHECK {_POWER_APPRAISE}\n"
        return ArchPolicy(rules, module_sig_enforced=config.module_sig)
    if config.arch not in ("x86_64", "arm64"):
        raise UsageError(f"no IMA arch policy modelled for {config.arch!r}")
    if not config.efi or (config.arch == "arm64" and config.version < _ARM64_SINCE):
        return ArchPolicy()  # ima_efi.c is not built, or arm64 has none yet
    rules = "" if config.kexec_sig else "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig\n"
    rules += "measure func=KEXEC_KERNEL_CHECK\n"
    if not config.module_sig:
        rules += "appraise func=MODULE_CHECK appraise_type=imasig\n"
    # absent from 6.1.192's ima_efi.c, present in 6.12.118's
    if config.integrity_machine_keyring and config.version > (6, 1) and \
            config.ima_keyrings_permit_signed_by_builtin_or_secondary:
        rules += "appraise func=POLICY_CHECK appraise_type=imasig\n"
    rules += "measure func=MODULE_CHECK\n"
    return ArchPolicy(rules, module_sig_enforced=config.module_sig,
                      kexec_sig_enforced=config.kexec_sig and
                      config.arch_policy_forces_kexec_sig)
