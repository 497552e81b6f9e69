"""A simulated Linux machine: the integrity decisions a running kernel makes.

:class:`Machine` is imasim's one stateful object, a thin shell over one immutable
:class:`~imasim.state.MachineState`: each method is a transition of :mod:`imasim.kernel`
that computes the next state and swaps it in only when nothing failed; the decisions are
pure functions (:func:`imasim.ima.appraise.appraise`, :mod:`imasim.kexec`).

>>> m = Machine.create(cmdline="ima_policy=tcb")
>>> m.boot()
>>> m.add_file("/usr/bin/true", b"\\x7fELF true")
>>> m.exec("/usr/bin/true").allowed
True
>>> [e.event_name for e in m.measurements]
['boot_aggregate', '/usr/bin/true']
>>> from imasim.ima.replay import match
>>> match(m.measurements, m.pcr_values()).matched
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from html import escape
from typing import TypeVar

from . import kernel as k
from ._view import View
from .algorithms import HashAlgorithm
from .archive import parse_cpio, parse_tar
from .env import Clock, Entropy, FixedClock, SeededEntropy
from .ima.codec import MeasurementList
from .ima.entry import MeasurementEntry
from .ima.policy import MAY_EXEC, MAY_READ, Hook
from .ipe.lsm import FileProperties, Ipe
from .kconfig import PRESETS, BootOptions, KernelConfig
from .keys.key import Key
from .keys.keyring import BlacklistKey, Keyring
from .keys.layout import ProcKey
from .keys.system import SystemKeyrings
from .state import AccessResult, AuditRecord, BootState, KexecRecord, MachineSnapshot, MachineState
from .tpm.soft_tpm import SoftTpm
from .vfs import EXT4, PROC, RAMFS, TMPFS, DmVerity, Filesystem, FsVerity, SimFile

__all__ = ["EXT4", "PROC", "RAMFS", "TMPFS", "AccessResult", "AuditRecord", "DmVerity",
           "Filesystem", "FsVerity", "KexecRecord", "Machine", "MachineSnapshot", "SimFile",
           "SystemKeyrings"]

_T = TypeVar("_T")


class _V(View["Machine", _T]):
    """A read-only view of the machine."""


class Machine:
    """A simulated machine; create one with :meth:`create`. Each method that changes it
    is a transition of :mod:`imasim.kernel`, run through :meth:`_run`."""

    def __init__(self, *, kernel: k.Kernel, state: MachineState, entropy: Entropy,
                 builtin_keys: tuple[Key, ...], firmware: k.Firmware | None) -> None:
        self._k, self._state, self._entropy = kernel, state, entropy
        self._builtin_keys, self._firmware = builtin_keys, firmware
        self._cmdline = state.boot.boot_options.cmdline
        self._ipe_args: tuple[str | None, bool, bool] | None = None
        self._audit: tuple[AuditRecord, ...] = ()

    @classmethod
    def create(cls, *, preset: str = "generic-6.1-ima-kexec", config: KernelConfig | None = None,
               cmdline: str = "ima_policy=tcb", banks: Sequence[HashAlgorithm] = (
                   HashAlgorithm.SHA1, HashAlgorithm.SHA256),
               builtin_keys: Iterable[Key] = (), clock: Clock | None = None,
               entropy: Entropy | None = None, tpm: SoftTpm | None = None,
               firmware_pcrs: bool = True, secure_boot: bool = False,
               firmware: k.Firmware = k.measure_firmware, context: str | None = None) -> Machine:
        """A powered-on machine whose ``firmware`` measured the TPM; ``secure_boot`` is what
        arch_ima_get_secureboot reads, ``context`` the processes' LSM context (``subj_*``)."""
        cfg = config if config is not None else PRESETS[preset]
        clock = clock if clock is not None else FixedClock()
        entropy = entropy if entropy is not None else SeededEntropy(b"imasim-machine")
        tpm = tpm if tpm is not None else SoftTpm(banks, clock=clock, entropy=entropy)
        if (fw := firmware if firmware_pcrs else None) is not None:
            fw(tpm)
        keys = tuple(builtin_keys)
        state = MachineState(boot=BootState(boot_options=BootOptions.from_cmdline(cmdline)),
                             context=context)
        m = cls(kernel=k.build_kernel(cfg, tpm, keys, clock, secure_boot, cmdline, None),
                state=state, entropy=entropy, builtin_keys=keys, firmware=fw)
        if cfg.security_ipe:
            m.enable_ipe(cfg.ipe_boot_policy)
        return m

    def _run(self, fn: Callable[[k.Txn], _T], kernel: k.Kernel | None = None) -> _T:
        """Run a transition: commit its state, PCR extends and audit, or (when it raises)
        only the audit records the kernel writes about the refusal."""
        t = k.Txn(self._state, kernel or self._k)
        try:
            out = fn(t)
        except BaseException:
            self._audit += t.kept_audit()
            raise
        self._state, audit = t.commit()
        self._audit += audit
        self._k = kernel or self._k
        return out

    def _new_kernel(self) -> k.Kernel:
        return k.build_kernel(self.config, self.tpm, self._builtin_keys, self.clock,
                              self.secure_boot, self._cmdline, self._ipe_args)

    state = _V(lambda m: m._state, "The current MachineState.")
    config = _V(lambda m: m._k.config, "The kernel's KernelConfig.")
    tpm = _V(lambda m: m._k.tpm, "The machine's SoftTpm.")
    keyrings = _V(lambda m: m._k.keyrings, "The running kernel's keyrings.")
    ipe = _V(lambda m: m._k.ipe, "The IPE LSM, or None when it is not enabled.")
    fsverity_keyring = _V(lambda m: m._k.fsverity_keyring, "The .fs-verity keyring.")
    clock = _V(lambda m: m._k.clock, "The machine's clock.")
    entropy = _V(lambda m: m._entropy, "The machine's entropy source.")
    secure_boot = _V(lambda m: m._k.secure_boot, "The firmware's secure-boot state.")
    firmware_log = _V(lambda m: k.firmware_log(m._firmware, m.tpm.banks), "TCG event log, if any.")
    lockdown = _V(lambda m: m._k.lockdown, "The lockdown level (none/integrity/...).")
    module_sig_enforced = _V(lambda m: m._k.module_sig_enforced, "is_module_sig_enforced()")
    kexec_sig_enforced = _V(lambda m: m._k.kexec_sig_enforced, "kexec's sig_enforce.")
    audit = _V(lambda m: m._audit, "The integrity audit records so far.")
    files = _V(lambda m: m._state.files, "Path -> SimFile, read-only.")
    context = _V(lambda m: m._state.context, "The simulated processes' LSM context.")
    boot_options = _V(lambda m: m._state.boot.boot_options, "The kernel's IMA options.")
    booted = _V(lambda m: m._state.boot.booted, "Has IMA initialised?")
    policy = _V(lambda m: m._state.boot.policy, "The IMA policy in force.")
    violations = _V(lambda m: m._state.boot.violations, "ToMToU/open_writers so far.")
    loaded_modules = _V(lambda m: m._state.boot.loaded_modules, "Modules of this boot.")
    tainted = _V(lambda m: m._state.boot.tainted, "Tainted by an unsigned module?")
    kernel_generation = _V(lambda m: m._state.boot.generation, "Kexecs since power-on.")
    kexec_log = _V(lambda m: m._state.kexec_log, "What each kexec since power-on did.")
    evm_x509 = _V(lambda m: m._state.boot.evm_x509, "EVM_INIT_X509 done?")
    evm_hmac_key = _V(lambda m: m._state.boot.evm_hmac_key, "The EVM HMAC key.")
    ima_hash = _V(lambda m: m._k.ima_hash(m.boot_options), "IMA's hash algorithm.")
    template = _V(lambda m: m._k.template(m.boot_options), "IMA's template.")
    measurements = _V(lambda m: MeasurementList(m._state.boot.entries), "The IMA list.")
    lost_measurements: _V[tuple[MeasurementEntry, ...]] = _V(
        lambda m: tuple(e for r in m._state.kexec_log for e in r.lost),
        "Entries extended into the TPM that the list no longer holds (kexec windows, "
        "lists not carried), since the last power cycle.")

    def pcr_values(self, pcrs: Iterable[int] = range(24)) -> dict[HashAlgorithm, dict[int, bytes]]:
        """The TPM's PCRs ``pcrs`` in every bank."""
        wanted = list(pcrs)
        return {a: {i: self.tpm.read(a, i) for i in wanted} for a in self.tpm.banks}

    def proc_keys(self) -> tuple[ProcKey, ...]:
        """``/proc/keys`` of this kernel (imasim.keys.layout.proc_keys)."""
        return k.proc_keys(self._k)

    def ipe_properties(self, path: str) -> FileProperties:
        """What IPE's property providers see for a file."""
        return k.ipe_properties(k.Txn(self._state, self._k).file(path))

    def snapshot(self) -> MachineSnapshot:
        """The machine's state as one comparable value (see :class:`MachineSnapshot`)."""
        return k.snapshot(self._k, self._state)

    def boot(self, initramfs: bytes = b"", initrd: bytes | None = None) -> None:
        """kernel_init_freeable's steps (imasim.kinit): rootfs gets both cpio archives."""
        self._run(lambda t: k.boot(t, initramfs, initrd))

    def kexec_execute(self, *, cmdline: str | None = None) -> None:
        """kexec -e: a new kernel on the same TPM restores the carried list and boots."""
        self._run(lambda t: k.kexec_execute(t, cmdline), kernel=self._new_kernel())

    def power_cycle(self) -> None:
        """A cold reboot: TPM Reset, firmware, a fresh kernel; files on disk stay."""
        self._k.tpm.power_cycle()
        if self._firmware is not None:
            self._firmware(self._k.tpm)
        self._k, self._state = self._new_kernel(), k.powered_on(self._state, self._cmdline)

    def enable_ipe(self, boot_policy: str | None = None, *, enforce: bool = True,
                   unsigned_policy_by_rule: bool = False) -> Ipe:
        """IPE in the LSM list with CONFIG_IPE_BOOT_POLICY's text (None: allow all), for
        every boot; ``unsigned_policy_by_rule`` is a proposal that is NOT in mainline."""
        self._ipe_args = (boot_policy, enforce, unsigned_policy_by_rule)
        ipe = k.make_ipe(self._k, self._cmdline, *self._ipe_args)
        self._k = replace(self._k, ipe=ipe)
        return ipe

    def evm_init(self, *, x509: bool = True, hmac_key: bytes | None = None) -> None:
        """Write to <securityfs>/evm (EVM_INIT_X509, EVM_INIT_HMAC with ``hmac_key``)."""
        self._run(lambda t: k.evm_init(t, x509, hmac_key))

    def set_context(self, context: str | None) -> None:
        """The LSM context (``user:role:type:level``) of the simulated processes."""
        self._state = replace(self._state, context=context)

    def add_file(self, path: str, content: bytes, *, uid: int = 0, gid: int = 0,
                 mode: int = 0o100755, xattrs: Mapping[str, bytes] | None = None,
                 fs: Filesystem | tuple[str, int] = EXT4) -> None:
        """Create or replace a file (a replaced file keeps its inode, i_version + 1)."""
        self._run(lambda t: k.add_file(t, path, content, uid=uid, gid=gid, mode=mode,
                                       xattrs=xattrs, fs=fs))

    def write_file(self, path: str, content: bytes) -> None:
        """Replace a file's content (i_version + 1: it is measured again)."""
        self._run(lambda t: t.put_file(t.file(path).with_content(content)))

    def set_xattr(self, path: str, name: str, value: bytes | None) -> None:
        """setxattr (``value``) or removexattr (None) of a file's extended attribute."""
        self._run(lambda t: t.put_file(t.file(path).with_xattr(name, value)))

    def unpack_initramfs(self, archive: bytes, *, fs: Filesystem | tuple[str, int] = TMPFS
                         ) -> list[str]:
        """unpack_to_rootfs of a cpio newc archive (no xattrs; IPE's boot_verified)."""
        fsys = replace(fs if isinstance(fs, Filesystem) else Filesystem(*fs), initramfs=True)
        return self._run(lambda t: k.add_members(t, parse_cpio(archive), fsys))

    def extract_tar(self, archive: bytes, *, fs: Filesystem | tuple[str, int] = EXT4) -> list[str]:
        """Unpack a tar archive as ``tar --xattrs`` does (security.* xattrs kept)."""
        return self._run(lambda t: k.add_members(t, parse_tar(archive), fs))

    def mount_dm_verity(self, files: dict[str, bytes], *, salt: bytes = bytes(32),
                        signature: bytes | None = None, name: str = "ext4") -> DmVerity:
        """A dm-verity file system holding ``files`` (:func:`imasim.kernel.mount_dm_verity`)."""
        return self._run(lambda t: k.mount_dm_verity(t, files, salt, signature, name))

    def enable_fsverity(self, path: str, signature: bytes | None = None) -> FsVerity:
        """FS_IOC_ENABLE_VERITY: a built-in signature must verify against .fs-verity."""
        return self._run(lambda t: k.enable_fsverity(t, path, signature))

    def exec(self, path: str, *, uid: int = 0, context: str | None = None) -> AccessResult:
        """execve: BPRM_CHECK with MAY_EXEC; ``context`` is the caller's LSM context."""
        return self._run(lambda t: k.process(t, path, Hook.BPRM_CHECK, MAY_EXEC, uid=uid,
                                             context=context))

    def mmap(self, path: str, *, uid: int = 0, context: str | None = None) -> AccessResult:
        """mmap with PROT_EXEC: MMAP_CHECK."""
        return self._run(lambda t: k.process(t, path, Hook.MMAP_CHECK, MAY_EXEC, uid=uid,
                                             context=context))

    def open(self, path: str, mask: int = MAY_READ, *, uid: int = 0,
             context: str | None = None) -> AccessResult:
        """open(): FILE_CHECK with the access mask; keeps the file open (see close)."""
        return self._run(lambda t: k.open_file(t, path, mask, uid=uid, context=context))

    def close(self, path: str, mask: int = MAY_READ) -> None:
        """close() of a file opened with ``mask``."""
        self._run(lambda t: k.close_file(t, path, mask))

    def read_file(self, path: str, *, uid: int = 0) -> AccessResult:
        """open for read and close again."""
        return self._run(lambda t: k.read_file(t, path, uid))

    def load_firmware(self, path: str) -> AccessResult:
        """request_firmware: FIRMWARE_CHECK."""
        return self._run(lambda t: k.process(t, path, Hook.FIRMWARE_CHECK, MAY_READ))

    def load_module(self, path: str) -> AccessResult:
        """finit_module: MODULE_CHECK (IMA), then the module signature (module_sig_check)."""
        return self._run(lambda t: k.load_module(t, path))

    def measure_critical_data(self, label: str, event_name: str, data: bytes) -> bool:
        """ima_measure_critical_data."""
        return self._run(lambda t: k.measure_critical_data(t, label, event_name, data))

    def load_policy(self, text: str) -> None:
        """Write to securityfs's policy file: rules, or a path read under POLICY_CHECK."""
        self._run(lambda t: k.write_policy(t, text))

    def ipe_load_policy_file(self, path: str, *, update: str | None = None,
                             activate: bool = False) -> None:
        """``cat FILE > /sys/kernel/security/ipe/new_policy`` (or policies/<update>/update)."""
        self._run(lambda t: k.ipe_load_policy_file(t, path, update, activate))

    def add_key(self, keyring: str | Keyring, key: Key | BlacklistKey) -> None:
        """add_key(2) from user space: WRITE permission (EACCES for .builtin_trusted_keys,
        .platform, .machine, .blacklist), the restriction; KEY_CHECK measures."""
        self._run(lambda t: k.add_key(t, keyring, key))

    def load_x509_file(self, path: str, keyring: str = ".ima") -> AccessResult:
        """integrity_load_x509: read a certificate (IPE X509_CERT, FILE_CHECK), add it."""
        return self._run(lambda t: k.load_x509_file(t, path, self.keyrings.resolve(keyring)))

    def link_keyring(self, dest: str | Keyring, item: str | Keyring) -> None:
        """``keyctl link``: WRITE on ``dest``, LINK on ``item``, then the restriction."""
        k.keyctl_link(self.keyrings.resolve(dest), self.keyrings.resolve(item))

    def clear_keyring(self, ring: str | Keyring) -> None:
        """``keyctl clear``: WRITE on the keyring (the kernel's own refuse: EACCES)."""
        k.keyctl_clear(self.keyrings, ring)

    def kexec_load(self, kernel: str | None, initrd: str | None = None, cmdline: str = "", *,
                   syscall: str = "kexec_file_load") -> AccessResult:
        """kexec_file_load or ``syscall="kexec_load"``; None unloads (kernel.kexec_load)."""
        return self._run(lambda t: k.kexec_load(t, kernel, initrd, cmdline, syscall))

    def __repr__(self) -> str:
        return (f"<Machine kernel {'.'.join(map(str, self.config.version))} "
                f"{len(self.measurements)} measurements, policy {self.policy.name}>")

    def _repr_html_(self) -> str:
        return f"<p>{escape(repr(self))}</p>" + self.measurements._repr_html_()
