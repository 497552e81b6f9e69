"""The kernel image and what is compiled into it: built-in keys change the kernel.

The certificates of ``.builtin_trusted_keys`` are not configuration read at boot: they are
bytes inside the kernel image (certs/system_certificates.S: ``system_certificate_list``,
the build-time module signing key first). So a kernel built with another key, or a
re-keyed PKI, is another image, with another digest: the boot loader's measurement of it
(PCR 4, EV_EFI_BOOT_SERVICES_APPLICATION: the PE image's Authenticode hash in each bank)
changes, and with it IMA's boot_aggregate. That is the IPE thread's point that "having a
proper PKI would induce unreproducible kernels".

:func:`kernel_image` builds a stand-in PE kernel image around a certificate list;
:func:`firmware_booting` is a :class:`~imasim.kernel.Firmware` that measures PCRs 0-7 as
imasim's default firmware does, but PCR 4 with the kernel image it boots.

>>> from imasim.tpm.soft_tpm import SoftTpm
>>> a, b = SoftTpm(), SoftTpm()
>>> firmware_booting(kernel_image([b"key A"]))(a)
>>> firmware_booting(kernel_image([b"key B"]))(b)
>>> from imasim.algorithms import HashAlgorithm as H
>>> a.read(H.SHA256, 4) != b.read(H.SHA256, 4), a.read(H.SHA256, 0) == b.read(H.SHA256, 0)
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

from .kernel import Firmware
from .sig.authenticode import authenticode_digest
from .sig.pefile import build_pe
from .tpm.soft_tpm import SoftTpm

__all__ = ["firmware_booting", "kernel_image"]


def kernel_image(builtin_certificates: Sequence[bytes], *, code: bytes = b"imasim kernel"
                 ) -> bytes:
    """A PE kernel image whose section holds ``code`` and then the built-in certificate
    list (the DER certificates back to back, as system_certificate_list is)."""
    return build_pe(code + b"".join(builtin_certificates))


def firmware_booting(image: bytes) -> Firmware:
    """A firmware that measures PCRs 0-3 and 5-7 as imasim's default one does and extends
    PCR 4 with ``image``'s Authenticode digest in each bank (what UEFI's LoadImage
    measures for the boot loader's kernel)."""
    def measure(tpm: SoftTpm) -> None:
        for pcr in range(8):
            if pcr == 4:
                tpm.extend(4, {alg: authenticode_digest(image, alg) for alg in tpm.banks})
            else:
                tpm.event(pcr, f"imasim firmware measurement {pcr}".encode())
    return measure
