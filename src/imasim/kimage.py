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

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from .errors import ParseError
from .sig.authenticode import authenticode_digest
from .sig.pefile import build_pe, parse_pe
from .tpm.soft_tpm import SoftTpm

if TYPE_CHECKING:
    from .kernel import Firmware

__all__ = ["INITRAMFS_TRAILER", "embedded_initramfs", "firmware_booting", "kernel_image"]

#: the end of a stand-in kernel image's section that has a built-in initramfs: the
#: cpio's size (u32, little endian) and this magic. It stands for the linker symbols
#: __initramfs_start/__initramfs_size (usr/initramfs_data.S) of a real vmlinux.
INITRAMFS_TRAILER: Final = b"IMASIMRD"
_SIZE = struct.Struct("<I")


def kernel_image(builtin_certificates: Sequence[bytes], *, code: bytes = b"imasim kernel",
                 initramfs: bytes = b"") -> bytes:
    """A PE kernel image whose section holds ``code``, then the built-in certificate
    list (the DER certificates back to back, as system_certificate_list is), then, with
    ``initramfs`` (CONFIG_INITRAMFS_SOURCE: a cpio built into the image), that archive
    and the :data:`INITRAMFS_TRAILER`. Everything in it is under the image's signature
    and digest: one byte of the built-in initramfs changes both.

    >>> from imasim.archive import ArchiveMember, write_cpio
    >>> cpio = write_cpio([ArchiveMember("init", b"#!/bin/sh", 0o100755)])
    >>> embedded_initramfs(kernel_image([], initramfs=cpio)) == cpio
    True
    >>> embedded_initramfs(kernel_image([]))
    b''
    """
    tail = initramfs + _SIZE.pack(len(initramfs)) + INITRAMFS_TRAILER if initramfs else b""
    return build_pe(code + b"".join(builtin_certificates) + tail)


def embedded_initramfs(image: bytes) -> bytes:
    """The initramfs built into a :func:`kernel_image` (b"" when it has none, or when
    ``image`` is not a PE image at all); a trailer whose size points outside the
    section is a :class:`~imasim.errors.ParseError`."""
    if image[:2] != b"MZ":
        return b""
    pe = parse_pe(image)
    if not pe.sections:
        return b""
    sec = pe.sections[0]
    size = min(sec.virtual_size, sec.size_of_raw_data)
    data = bytes(pe.raw[sec.pointer_to_raw_data:sec.pointer_to_raw_data + size])
    end = len(data) - len(INITRAMFS_TRAILER)
    if end < 4 or data[end:] != INITRAMFS_TRAILER:
        return b""
    (n,) = _SIZE.unpack_from(data, end - 4)
    if n > end - 4:
        raise ParseError("built-in initramfs larger than the image section",
                         offset=sec.pointer_to_raw_data + end - 4, field="initramfs_size",
                         expected=f"<= {end - 4}", actual=n)
    return data[end - 4 - n:end - 4]


def firmware_booting(image: bytes, *, initrd: bytes | None = None) -> Firmware:
    """A firmware that measures PCRs 0-3 and 5-7 as imasim's default one does and extends
    PCR 4 with ``image``'s Authenticode digest in each bank (what UEFI's LoadImage
    measures for the boot loader's kernel), and PCR 9 with ``initrd``'s digest when the
    boot loader passes one (the Linux EFI stub's "Linux initrd" event, GRUB's PCR 9). An
    initramfs built into ``image`` is in PCR 4; an external one only in PCR 9."""
    def measure(tpm: SoftTpm) -> None:
        for pcr in range(8):
            if pcr == 4:
                tpm.extend(4, {alg: authenticode_digest(image, alg) for alg in tpm.banks})
            else:
                tpm.event(pcr, f"imasim firmware measurement {pcr}".encode())
        if initrd is not None:
            tpm.extend(9, {alg: alg.hash(initrd) for alg in tpm.banks})
    return measure
