"""A simulated Linux machine: the integrity decisions a running kernel makes.

:class:`Machine` is imasim's one stateful object, a thin shell: its state is one
immutable :class:`~imasim.state.MachineState` (the current boot's
:class:`~imasim.state.BootState`: list, htable, violations, modules, taint, kexec image,
policy; and the files), and each method is a transition of :mod:`imasim.kernel` that
computes the next state and swaps it in only when nothing failed. The decisions are pure
functions (:func:`imasim.ima.appraise.appraise`, :func:`imasim.kexec.verify_kexec_image`).

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
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from . import kernel as k
from . import vfs
from .algorithms import HashAlgorithm
from .archive import parse_cpio, parse_tar
from .env import Clock, Entropy, FixedClock, SeededEntropy
from .eventlog.codec import EventLog as FirmwareEventLog
from .ima.codec import MeasurementList
from .ima.entry import MeasurementEntry
from .ima.policy import MAY_EXEC, MAY_READ, Hook
from .ipe.lsm import FileProperties, Ipe
from .kconfig import PRESETS, BootOptions, KernelConfig
from .keys.key import Key
from .keys.keyring import Keyring
from .keys.layout import ProcKey, proc_keys
from .keys.system import SystemKeyrings
from .state import AccessResult, AuditRecord, BootState, KexecRecord, MachineState
from .tpm.soft_tpm import SoftTpm
from .vfs import EXT4, PROC, RAMFS, TMPFS, DmVerity, Filesystem, FsVerity, SimFile

__all__ = [
    "EXT4",
    "PROC",
    "RAMFS",
    "TMPFS",
    "AccessResult",
    "AuditRecord",
    "DmVerity",
    "Filesystem",
    "FsVerity",
    "KexecRecord",
    "Machine",
    "MachineSnapshot",
    "SimFile",
    "SystemKeyrings",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """Everything that decides what the machine does next, as values: the state, the
    TPM's PCRs and counters, each keyring's restriction, keys and links, IPE's policies.
    Logs (audit, keyring and IPE decisions) are records of the past and not part of it."""

    state: MachineState
    pcrs: tuple[tuple[HashAlgorithm, tuple[bytes, ...]], ...]
    tpm_counters: tuple[int, int]
    keyrings: tuple[tuple[str, str | None, tuple[bytes, ...], tuple[str, ...]], ...]
    blacklist: tuple[str, ...]
    ipe: tuple[object, ...] | None


class Machine:
    """A simulated machine; create one with :meth:`create`."""

    def __init__(self, *, kernel: k.Kernel, state: MachineState, entropy: Entropy,
                 builtin_keys: tuple[Key, ...], firmware: k.Firmware | None,
                 ipe_args: tuple[str | None, bool, bool] | None) -> None:
        self._k, self._state, self._entropy = kernel, state, entropy
        self._builtin_keys, self._firmware, self._ipe_args = builtin_keys, firmware, ipe_args
        self._cmdline = state.boot.boot_options.cmdline
        self._audit: tuple[AuditRecord, ...] = ()

    @classmethod
    def create(cls, *, preset: str = "generic-6.1-ima-kexec", config: KernelConfig | None = None,
               cmdline: str = "ima_policy=tcb", banks: Sequence[HashAlgorithm] = (
                   HashAlgorithm.SHA1, HashAlgorithm.SHA256),
               builtin_keys: Iterable[Key] = (), clock: Clock | None = None,
               entropy: Entropy | None = None, tpm: SoftTpm | None = None,
               firmware_pcrs: bool = True, secure_boot: bool = False,
               firmware: k.Firmware = k.measure_firmware, context: str | None = None) -> Machine:
        """A powered-on machine whose firmware measured PCRs 0-7 (``firmware``, unless
        ``firmware_pcrs`` is False). ``secure_boot`` is the firmware's state as the kernel
        reads it (arch_ima_get_secureboot): with CONFIG_IMA_ARCH_POLICY it enforces module
        and kexec signatures and adds the architecture rules; with
        CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT it locks the kernel down (integrity).
        ``context`` is the LSM context of the simulated processes (``subj_*`` rules)."""
        cfg = config if config is not None else PRESETS[preset]
        clock = clock if clock is not None else FixedClock()
        entropy = entropy if entropy is not None else SeededEntropy(b"imasim-machine")
        tpm = tpm if tpm is not None else SoftTpm(banks, clock=clock, entropy=entropy)
        fw = firmware if firmware_pcrs else None
        if fw is not None:
            fw(tpm)
        keys = tuple(builtin_keys)
        kern = k.Kernel(cfg, tpm, SystemKeyrings.build(cfg, keys), Keyring(".fs-verity"),
                        None, clock, secure_boot)
        state = MachineState(boot=BootState(boot_options=BootOptions.from_cmdline(cmdline)),
                             context=context)
        m = cls(kernel=kern, state=state, entropy=entropy, builtin_keys=keys, firmware=fw,
                ipe_args=None)
        if cfg.security_ipe:
            m.enable_ipe(cfg.ipe_boot_policy)
        return m

    def _run(self, fn: Callable[[k.Txn], _T], kernel: k.Kernel | None = None) -> _T:
        """Run a transition: commit its state, PCR extends and audit, or (when it raises)
        only the audit records the kernel writes about the refusal."""
        t = k.Txn(self._state, kernel if kernel is not None else self._k)
        done = False
        try:
            out = fn(t)
            done = True
        finally:
            if not done:
                self._audit += t.kept_audit()
        self._state, audit = t.commit()
        self._audit += audit
        if kernel is not None:
            self._k = kernel
        return out

    def _fresh_kernel(self) -> k.Kernel:
        """The kernel objects a new boot builds: keyrings from the builtin keys, IPE."""
        cfg, old = self._k.config, self._k
        kern = k.Kernel(cfg, old.tpm, SystemKeyrings.build(cfg, self._builtin_keys),
                        Keyring(".fs-verity"), None, old.clock, old.secure_boot)
        return replace(kern, ipe=self._make_ipe(kern, *self._ipe_args)) \
            if self._ipe_args is not None else kern

    # -- read-only views ---------------------------------------------------------------
    state = property(lambda self: self._state, doc="The current MachineState.")
    config = property(lambda self: self._k.config, doc="The kernel's KernelConfig.")
    tpm = property(lambda self: self._k.tpm, doc="The machine's SoftTpm.")
    keyrings = property(lambda self: self._k.keyrings, doc="The running kernel's keyrings.")
    ipe = property(lambda self: self._k.ipe, doc="The IPE LSM, or None when not enabled.")
    fsverity_keyring = property(lambda self: self._k.fsverity_keyring,
                                doc="The .fs-verity keyring.")
    clock = property(lambda self: self._k.clock, doc="The machine's clock.")
    entropy = property(lambda self: self._entropy, doc="The machine's entropy source.")
    secure_boot = property(lambda self: self._k.secure_boot, doc="The firmware's state.")

    @property
    def firmware_log(self) -> FirmwareEventLog | None:
        """The firmware's TCG event log (``binary_bios_measurements``) when the firmware
        writes one (:class:`imasim.eventlog.simulate.SimulatedFirmware`); kexec keeps it."""
        log = getattr(self._firmware, "log", None)
        return log(self._k.tpm.banks) if callable(log) else None
    lockdown = property(lambda self: self._k.lockdown, doc="The kernel's lockdown level.")
    module_sig_enforced = property(lambda self: self._k.module_sig_enforced,
                                   doc="is_module_sig_enforced().")
    kexec_sig_enforced = property(lambda self: self._k.kexec_sig_enforced,
                                  doc="kexec's sig_enforce.")
    audit = property(lambda self: self._audit, doc="The integrity audit records so far.")
    files = property(lambda self: self._state.files, doc="Path -> SimFile (read-only).")
    context = property(lambda self: self._state.context, doc="The processes' LSM context.")
    boot_options = property(lambda self: self._state.boot.boot_options,
                            doc="The running kernel's command-line options.")
    booted = property(lambda self: self._state.boot.booted, doc="Has IMA initialised?")
    policy = property(lambda self: self._state.boot.policy, doc="The IMA policy in force.")
    violations = property(lambda self: self._state.boot.violations, doc="ToMToU/open_writers.")
    loaded_modules = property(lambda self: self._state.boot.loaded_modules,
                              doc="The modules loaded in this boot.")
    tainted = property(lambda self: self._state.boot.tainted, doc="Tainted by a module.")
    kernel_generation = property(lambda self: self._state.boot.generation,
                                 doc="Kexecs since the power-on (0: first kernel).")
    kexec_log = property(lambda self: self._state.kexec_log, doc="The kexecs since power-on.")
    evm_x509 = property(lambda self: self._state.boot.evm_x509, doc="EVM_INIT_X509 done.")
    evm_hmac_key = property(lambda self: self._state.boot.evm_hmac_key, doc="The EVM HMAC key.")
    ima_hash = property(lambda self: self._k.ima_hash(self.boot_options), doc="IMA's hash.")
    template = property(lambda self: self._k.template(self.boot_options), doc="IMA template.")

    @property
    def measurements(self) -> MeasurementList:
        """The list as binary_runtime_measurements holds it (SHA-1 template digests)."""
        return MeasurementList(self._state.boot.entries)

    @property
    def lost_measurements(self) -> tuple[MeasurementEntry, ...]:
        """Every entry extended into the TPM that the current list no longer holds (the
        kexec window of kernels that copy at load, or whole lists without
        CONFIG_IMA_KEXEC), since the last power cycle."""
        return tuple(e for r in self._state.kexec_log for e in r.lost)

    def pcr_values(self, pcrs: Iterable[int] = range(24)) -> dict[HashAlgorithm, dict[int, bytes]]:
        wanted = list(pcrs)
        return {a: {i: self.tpm.read(a, i) for i in wanted} for a in self.tpm.banks}

    def proc_keys(self) -> tuple[ProcKey, ...]:
        """``/proc/keys`` of this kernel (imasim.keys.layout.proc_keys)."""
        rings = {**self.keyrings.named(), ".fs-verity": self.fsverity_keyring}
        return proc_keys(self.config, rings, blacklist=self.keyrings.blacklist.entries())

    def ipe_properties(self, path: str) -> FileProperties:
        """What IPE's property providers see for a file."""
        return k.ipe_properties(k.Txn(self._state, self._k).file(path))

    def snapshot(self) -> MachineSnapshot:
        """The machine's state as one comparable value (see :class:`MachineSnapshot`)."""
        rings = self.keyrings
        ipe = self.ipe
        return MachineSnapshot(
            self._state, tuple((a, self.tpm.pcr_values(a)) for a in self.tpm.banks),
            (self.tpm.reset_count, self.tpm.restart_count),
            tuple((r.name, r.restriction_name, tuple(key.ids[0] or b"" for key in r.keys),
                   tuple(x.name for x in r.links))
                  for r in (rings.builtin, rings.secondary, rings.platform, rings.machine,
                            rings.ima, rings.evm, self.fsverity_keyring)),
            tuple(rings.blacklist.entries()),
            None if ipe is None else (tuple(sorted(ipe.policies)), ipe.active, ipe.enforce))

    # -- lifecycle ---------------------------------------------------------------------
    def boot(self) -> None:
        """IMA init: (restore a kexec buffer,) boot_aggregate, then the boot policy."""
        self._run(k.boot)

    def kexec_execute(self, *, cmdline: str | None = None) -> None:
        """kexec -e: the TPM keeps its PCRs; a new kernel (new keyrings, a new boot state)
        restores the carried list (CONFIG_IMA_KEXEC) and boots; all or nothing."""
        self._run(lambda t: k.kexec_execute(t, cmdline), kernel=self._fresh_kernel())

    def power_cycle(self) -> None:
        """A cold reboot: TPM Reset, the firmware's measurements, a new kernel with an
        empty list; files on tmpfs/ramfs are gone, files on disk stay."""
        tpm = self._k.tpm
        tpm.power_cycle()
        if self._firmware is not None:
            self._firmware(tpm)
        self._k = self._fresh_kernel()
        files = {p: f for p, f in self._state.files.items()
                 if f.fs.magic not in vfs.VOLATILE_MAGICS}
        self._state = MachineState(
            boot=BootState(boot_options=BootOptions.from_cmdline(self._cmdline)),
            files=MappingProxyType(files), next_ino=self._state.next_ino,
            context=self._state.context)

    # -- IPE, EVM, context ---------------------------------------------------------------
    def enable_ipe(self, boot_policy: str | None = None, *, enforce: bool = True,
                   unsigned_policy_by_rule: bool = False) -> Ipe:
        """IPE in the LSM list, with CONFIG_IPE_BOOT_POLICY's text (None: allow all until
        a policy is deployed and activated); kept across reboots of this kernel.
        ``unsigned_policy_by_rule`` turns on the proposal that is NOT in mainline."""
        self._ipe_args = (boot_policy, enforce, unsigned_policy_by_rule)
        ipe = self._make_ipe(self._k, *self._ipe_args)
        self._k = replace(self._k, ipe=ipe)
        return ipe

    def _make_ipe(self, kern: k.Kernel, boot_policy: str | None, enforce: bool,
                  unsigned: bool) -> Ipe:
        cfg, rings = kern.config, kern.keyrings
        args = dict(t.split("=", 1) for t in self._cmdline.split() if "=" in t)
        return Ipe(
            keyring=rings.secondary if cfg.ipe_policy_sig_secondary_keyring else rings.builtin,
            platform_keyring=rings.platform if cfg.ipe_policy_sig_platform_keyring else None,
            boot_policy=boot_policy, kernel_version=cfg.version,
            # ipe.enforce= and ipe.success_audit= on the command line
            enforce=enforce and args.get("ipe.enforce", "1") not in ("0", "n", "N"),
            success_audit=args.get("ipe.success_audit", "0") in ("1", "y", "Y"),
            unsigned_policy_by_rule=unsigned)

    def evm_init(self, *, x509: bool = True, hmac_key: bytes | None = None) -> None:
        """Initialise EVM as writing to <securityfs>/evm does (EVM_INIT_X509 with keys in
        the EVM keyring, EVM_INIT_HMAC with ``hmac_key``): from now on appraisal first
        checks that security.evm vouches for the file's xattrs."""
        b = self._state.boot
        key = bytes(hmac_key) if hmac_key is not None else b.evm_hmac_key
        self._state = replace(self._state, boot=replace(b, evm_x509=b.evm_x509 or x509,
                                                        evm_hmac_key=key))

    def set_context(self, context: str | None) -> None:
        """The LSM context (``user:role:type:level``) of the simulated processes."""
        self._state = replace(self._state, context=context)

    # -- files, policy, hooks, keys, kexec (each a transition of imasim.kernel) --------
    def add_file(self, path: str, content: bytes, *, uid: int = 0, gid: int = 0,
                 mode: int = 0o100755, xattrs: Mapping[str, bytes] | None = None,
                 fs: Filesystem | tuple[str, int] = EXT4) -> None:
        """Create or replace a file (a replaced file keeps its inode, i_version + 1)."""
        self._run(lambda t: k.add_file(t, path, content, uid=uid, gid=gid, mode=mode,
                                       xattrs=xattrs, fs=fs))

    def write_file(self, path: str, content: bytes) -> None:
        """Replace a file's content (its i_version changes, so it is measured again)."""
        self._run(lambda t: t.put_file(t.file(path).with_content(content)))

    def set_xattr(self, path: str, name: str, value: bytes | None) -> None:
        """setxattr (``value``) or removexattr (None) of a file's extended attribute."""
        self._run(lambda t: t.put_file(t.file(path).with_xattr(name, value)))

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
        def read(t: k.Txn) -> AccessResult:
            r = k.open_file(t, path, MAY_READ, uid=uid)
            if r.allowed:
                k.close_file(t, path, MAY_READ)
            return r
        return self._run(read)

    def load_firmware(self, path: str) -> AccessResult:
        """request_firmware: FIRMWARE_CHECK."""
        return self._run(lambda t: k.process(t, path, Hook.FIRMWARE_CHECK, MAY_READ))

    def load_module(self, path: str) -> AccessResult:
        """finit_module: MODULE_CHECK (IMA), then the module signature (module_sig_check)."""
        return self._run(lambda t: k.load_module(t, path))

    def measure_critical_data(self, label: str, event_name: str, data: bytes) -> bool:
        """ima_measure_critical_data."""
        return self._run(lambda t: k.measure_critical_data(t, label, event_name, data))

    def load_x509_file(self, path: str, keyring: str = ".ima") -> AccessResult:
        """integrity_load_x509: read a certificate file (IPE X509_CERT, FILE_CHECK) and
        add it to the keyring, whose restriction decides."""
        return self._run(lambda t: k.load_x509_file(t, path, self.keyrings.by_name(keyring)))

    def ipe_load_policy_file(self, path: str, *, update: str | None = None,
                             activate: bool = False) -> None:
        """``cat FILE > /sys/kernel/security/ipe/new_policy`` (or policies/<update>/update)."""
        self._run(lambda t: k.ipe_load_policy_file(t, path, update, activate))

    def unpack_initramfs(self, archive: bytes, *, fs: Filesystem | tuple[str, int] = TMPFS
                         ) -> list[str]:
        """Populate rootfs from a cpio newc initramfs (unpack_to_rootfs): regular files,
        never xattrs; the superblock is marked boot_verified for IPE. The paths added."""
        fsys = replace(fs if isinstance(fs, Filesystem) else Filesystem(*fs), initramfs=True)
        return self._run(lambda t: k.add_members(t, parse_cpio(archive), fsys))

    def extract_tar(self, archive: bytes, *, fs: Filesystem | tuple[str, int] = EXT4
                    ) -> list[str]:
        """Unpack a tar archive as ``tar --xattrs`` does (security.* xattrs kept)."""
        return self._run(lambda t: k.add_members(t, parse_tar(archive), fs))

    def mount_dm_verity(self, files: dict[str, bytes], *, salt: bytes = bytes(32),
                        signature: bytes | None = None, name: str = "ext4") -> DmVerity:
        """A read-only file system on dm-verity holding ``files``. The simulated device is
        the files' contents in order, each padded to 4096 bytes; its root hash is what
        veritysetup computes for those bytes. A root-hash signature (PKCS#7 over the hex
        string, as dm-verity checks it) must verify against the secondary keyring, else
        the table load fails and nothing is mounted."""
        return self._run(lambda t: k.mount_dm_verity(t, files, salt, signature, name))

    def enable_fsverity(self, path: str, signature: bytes | None = None) -> FsVerity:
        """FS_IOC_ENABLE_VERITY: a built-in signature must verify against .fs-verity."""
        return self._run(lambda t: k.enable_fsverity(t, path, signature))

    def load_policy(self, text: str) -> None:
        """Write a custom policy to securityfs: all rules or none."""
        self._run(lambda t: k.load_policy(t, text))

    def add_key(self, keyring: str, key: Key) -> None:
        """add_key(2) into a system keyring: its restriction decides; KEY_CHECK measures."""
        self._run(lambda t: k.add_key(t, self.keyrings.by_name(keyring), key))

    def kexec_load(self, kernel: str, initrd: str | None = None, cmdline: str = "") -> AccessResult:
        """kexec_file_load: measure, appraise and verify the image; copy the list (or not)."""
        return self._run(lambda t: k.kexec_load(t, kernel, initrd, cmdline))

    def __repr__(self) -> str:
        return (f"<Machine kernel {self.config.version[0]}.{self.config.version[1]} "
                f"{len(self._state.boot.entries)} measurements, policy {self.policy.name}>")

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(repr(self))}</p>" + self.measurements._repr_html_()

