"""security/integrity/iint.c integrity_load_keys: the keys the kernel reads from the root
file system itself, before it runs init.

With CONFIG_IMA_LOAD_X509 the kernel loads the certificate at CONFIG_IMA_X509_PATH into
the IMA keyring, and (ima_load_x509 -> evm_load_x509) the one at CONFIG_EVM_X509_PATH
into the EVM keyring; with only CONFIG_EVM_LOAD_X509, just the EVM one. This runs in
kernel_init_freeable once the root file system is ready (the initramfs unpacked, or the
real root mounted by prepare_namespace) and before init, and in the 2014 thread's kernels
right before load_default_modules(): so the key that appraises init, and modprobe, comes
from the same disk, vouched for by the built-in keys (the IMA keyring's restriction).

ima_load_x509 switches IMA appraisal off while it reads the file (the certificate is
what would verify it) but keeps measuring (the read is a FILE_CHECK:
READING_X509_CERTIFICATE has no hook of its own). A missing file or a refused
certificate is logged and boot goes on; EVM is initialised (EVM_INIT_X509) only when its
certificate loaded. Without CONFIG_INTEGRITY_TRUSTED_KEYRING the kernel has no IMA or EVM
keyring to load into (integrity_add_key: -EINVAL).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import ImasimError
from .ima.policy import MAY_READ, Hook
from .keys.key import Key

if TYPE_CHECKING:
    from .kernel import Txn

__all__ = ["integrity_load_keys"]


def integrity_load_keys(t: Txn, *, initramfs_root: bool = False) -> tuple[str, ...]:
    """Load the configured certificates; the kernel's log lines, in order. With
    ``initramfs_root`` (rootfs holds the rdinit program, so prepare_namespace did not
    mount the disk) only files unpacked from the initramfs are there to read."""
    cfg = t.kernel.config
    log: list[str] = []
    if cfg.ima_x509_path:  # None or "": CONFIG_IMA_LOAD_X509 unset
        log += _load(t, cfg.ima_x509_path, ".ima", initramfs_root)
        if cfg.evm_x509_path:
            log += _load(t, cfg.evm_x509_path, ".evm", initramfs_root)
    elif cfg.evm_x509_path:
        log += _load(t, cfg.evm_x509_path, ".evm", initramfs_root)
    return tuple(log)


def _load(t: Txn, path: str, ring_name: str, initramfs_root: bool) -> list[str]:
    from . import kernel

    rings = t.kernel.keyrings
    ring = rings.ima if ring_name == ".ima" else rings.evm
    if ring.name not in {s.name for s in rings.layout}:
        return [f"integrity: Problem loading X.509 certificate -22 ({ring_name} missing)"]
    f = t.files.get(path)
    if f is None or (initramfs_root and not f.fs.initramfs):
        return [f"integrity: Unable to open file: {path} (-2)"]
    opts = t.boot.boot_options
    t.boot = replace(t.boot, boot_options=replace(opts, ima_appraise="off"))
    try:
        kernel.process(t, path, Hook.FILE_CHECK, MAY_READ)
    finally:
        t.boot = replace(t.boot, boot_options=opts)
    try:
        key = ring.add(Key.from_certificate(t.file(path).content))
        kernel.key_check(t, ring.name, key)
    except ImasimError as exc:
        return [f"integrity: Loading X.509 certificate: {path}",
                f"integrity: Problem loading X.509 certificate: {exc}"]
    if ring_name == ".evm":
        t.boot = replace(t.boot, evm_x509=True)
    return [f"integrity: Loading X.509 certificate: {path}",
            f"integrity: Loaded X.509 cert '{key.description}'"]
