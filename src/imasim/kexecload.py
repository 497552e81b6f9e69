"""The classic kexec_load(2): a kernel image handed over as memory segments.

Beside kexec_file_load(2), which gives the kernel a file descriptor (so IMA can measure
and appraise the image, KEXEC_SIG can verify its signature, the command line is measured
and the measurement list is copied into an IMA buffer for the next kernel), the older
kexec_load(2) passes segments user space already read. The kernel can check none of it:

* under lockdown it is refused outright (LOCKDOWN_KEXEC: -EPERM);
* IMA refuses it (ima_load_data(LOADING_KEXEC_IMAGE): -EACCES, "impossible to appraise a
  kernel image without a file descriptor; try using kexec_file_load syscall") when the
  kernel has KEXEC_SIG and booted with secure boot, or when IMA appraisal is enforced and
  the policy appraises KEXEC_KERNEL_CHECK (IMA_APPRAISE_KEXEC);
* otherwise the image loads unchecked, unmeasured, and with no IMA buffer: even with
  CONFIG_IMA_KEXEC the next kernel starts a new list.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .ima.policy import Action, Hook

from .state import AccessResult, KexecImage

if TYPE_CHECKING:
    from .kernel import Txn

__all__ = ["kexec_load_classic"]


def kexec_load_classic(t: Txn, kernel: str, initrd: str | None, cmdline: str
                       ) -> AccessResult:
    """kexec_load(2) of ``kernel`` (and ``initrd``), read by user space."""
    k = t.kernel
    for path in (kernel, initrd):
        if path is not None:
            t.file(path)  # kexec-tools reads them; a missing file is its error
    if k.lockdown != "none":
        return AccessResult(False, reason=f"kexec_load: lockdown ({k.lockdown}) (EPERM)")
    appraise_kexec = any(r.action is Action.APPRAISE and r.func is Hook.KEXEC_KERNEL_CHECK
                         for r in t.boot.policy.rules)
    enforce = t.boot.boot_options.ima_appraise == "enforce" and k.config.ima_appraise
    if (k.config.kexec_sig and k.secure_boot) or (enforce and appraise_kexec):
        return AccessResult(False, reason="impossible to appraise a kernel image without a "
                                          "file descriptor; try using kexec_file_load "
                                          "(EACCES)")
    t.boot = replace(t.boot, kexec=KexecImage(kernel, initrd, cmdline, None, ima_buffer=False))
    return AccessResult(True)
