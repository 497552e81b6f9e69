"""A simulated Linux machine: the integrity decisions a running kernel makes.

:class:`Machine` is imasim's one stateful object. It owns a :class:`~imasim.tpm.SoftTpm`,
the system keyrings, the IMA measurement list and policy, a small virtual file system,
an audit log, a clock and an entropy source. Its methods are the events a kernel reacts
to (``exec``, ``open``, ``load_module``, ``add_key``, ``kexec_load``/``kexec_execute``,
``power_cycle``); each runs the IMA hook (security/integrity/ima/ima_main.c
``process_measurement``), measures into the list and every TPM bank, appraises against
the keyrings, and records audit messages as the kernel's integrity audit does.

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

import hmac
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from .algorithms import HashAlgorithm
from .archive import ArchiveMember, parse_cpio, parse_tar
from .env import Clock, Entropy, FixedClock, SeededEntropy
from .errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    PolicyError,
    RevokedError,
    SignatureInvalidError,
    SimulationError,
    UnsupportedAlgorithmError,
    UsageError,
    VerificationError,
)
from .ima.codec import MeasurementList
from .ima.entry import MeasurementEntry
from .ima.fields import DigestWithAlgo, FieldValue
from .ima.policy import (
    MAY_EXEC,
    MAY_READ,
    MAY_WRITE,
    Hook,
    ImaPolicy,
    MatchResult,
    arch_policy,
    builtin_policy,
    parse_ima_policy,
)
from .ima.replay import boot_aggregate
from .ima.templates import lookup_template
from .ipe.lsm import FileProperties, Ipe
from .ipe.policy import Op
from .ipe.verity import dm_verity_root_hash, fsverity_digest, verify_fsverity_signature
from .kconfig import PRESETS, BootOptions, KernelConfig
from .kexec import pack_kexec_buffer, restore_kexec_buffer
from .keys.key import Key
from .keys.keyring import (
    Blacklist,
    EventLog,
    Keyring,
    restrict_link_by_builtin_and_secondary_trusted,
    restrict_link_by_builtin_secondary_and_machine,
    restrict_link_by_builtin_trusted,
    restrict_link_reject,
)
from .sig.authenticode import verify_authenticode
from .sig.evm import EVM_XATTRS, evm_data, verify_evm
from .sig.modsig import ModuleSignature, split_modsig
from .sig.pkcs7 import Usage, verify_pkcs7
from .sig.xattr import XattrKind, parse_xattr, verify_xattr
from .tpm.soft_tpm import SoftTpm

__all__ = [
    "AccessResult",
    "AuditRecord",
    "Filesystem",
    "KexecRecord",
    "Machine",
    "SimFile",
    "SystemKeyrings",
]

EXT4: Final = ("ext4", 0xEF53)
TMPFS: Final = ("tmpfs", 0x01021994)
RAMFS: Final = ("ramfs", 0x858458F6)
PROC: Final = ("proc", 0x9FA0)


@dataclass(frozen=True, slots=True)
class DmVerity:
    """A dm-verity device under a file system: its root hash (algorithm name, bytes) and
    whether a root-hash signature verified when the table was loaded."""

    alg: str
    root_hash: bytes
    signed: bool = False


@dataclass(frozen=True, slots=True)
class FsVerity:
    """fs-verity enabled on a file: its file digest and whether a built-in signature
    verified against the .fs-verity keyring."""

    alg: str
    digest: bytes
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Filesystem:
    name: str
    magic: int
    uuid: str = "00000000-0000-0000-0000-000000000000"
    #: the superblock IPE marked when it unpacked the initramfs (boot_verified)
    initramfs: bool = False
    verity: DmVerity | None = None


@dataclass
class SimFile:
    """A file: content, owner, mode, security xattrs, its filesystem, a change counter."""

    path: str
    content: bytes
    fs: Filesystem
    uid: int = 0
    gid: int = 0
    mode: int = 0o100755
    xattrs: dict[str, bytes] = field(default_factory=dict)
    ino: int = 0
    i_version: int = 0
    readers: int = 0
    writers: int = 0
    fsverity: FsVerity | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An integrity audit message, as integrity_audit_msg formats it."""

    type: int
    op: str
    cause: str
    name: str
    result: int
    time: float

    def __str__(self) -> str:
        return (f"type={self.type} op={self.op} cause={self.cause} comm=\"imasim\" "
                f"name=\"{self.name}\" res={self.result}")


@dataclass(frozen=True, slots=True)
class AccessResult:
    """The outcome of a hook: allowed or denied (-EACCES/-EKEYREJECTED), and why."""

    allowed: bool
    measured: bool = False
    appraised: bool = False
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


@dataclass
class SystemKeyrings:
    """The keyrings a configured kernel builds (certs/system_keyring.c, integrity/digsig.c)."""

    builtin: Keyring
    secondary: Keyring
    platform: Keyring
    machine: Keyring
    ima: Keyring
    evm: Keyring
    blacklist: Blacklist
    log: EventLog

    @classmethod
    def build(cls, config: KernelConfig, builtin_keys: Iterable[Key] = (),
              log: EventLog | None = None) -> SystemKeyrings:
        log = log if log is not None else EventLog()
        bl = Blacklist()
        for h in config.system_blacklist_hash_list:
            kind, _, hexval = h.partition(":")
            (bl.add_tbs_hash if kind == "tbs" else bl.add_binary_hash)(bytes.fromhex(hexval))
        builtin = Keyring(".builtin_trusted_keys", blacklist=bl, log=log)
        for k in builtin_keys:
            builtin.add(k)
        builtin.restrict(restrict_link_reject)
        secondary = Keyring(".secondary_trusted_keys", blacklist=bl, log=log,
                            restriction=(restrict_link_by_builtin_secondary_and_machine
                                         if config.integrity_machine_keyring else
                                         restrict_link_by_builtin_and_secondary_trusted),
                            restriction_key=builtin)
        secondary.link(builtin)
        machine = Keyring(".machine", blacklist=bl, log=log)
        if config.integrity_machine_keyring:  # set_machine_trusted_keys (5.18+)
            secondary.link(machine)
        platform = Keyring(".platform", blacklist=bl, log=log)
        ima_restriction = (restrict_link_by_builtin_and_secondary_trusted
                           if config.ima_keyrings_permit_signed_by_builtin_or_secondary
                           else restrict_link_by_builtin_trusted)
        # digsig.c keyring_name[]: "_ima"/"_evm" without CONFIG_INTEGRITY_TRUSTED_KEYRING
        prefix = "." if config.integrity_trusted_keyring else "_"
        vouchers = secondary if config.ima_keyrings_permit_signed_by_builtin_or_secondary \
            else builtin
        ima, evm = (Keyring(prefix + name, blacklist=bl, log=log,
                            restriction=(ima_restriction if config.integrity_trusted_keyring
                                         else None), restriction_key=vouchers)
                    for name in ("ima", "evm"))
        return cls(builtin, secondary, platform, machine, ima, evm, bl, log)

    def by_name(self, name: str) -> Keyring:
        """A keyring by its name; ``.ima``/``_ima`` (and ``.evm``/``_evm``) both name the
        IMA (EVM) keyring, whichever the configuration calls it."""
        for ring in (self.builtin, self.secondary, self.platform, self.machine, self.ima,
                     self.evm):
            if ring.name == name or (ring in (self.ima, self.evm) and
                                     ring.name[1:] == name[1:] and name[:1] in "._"):
                return ring
        raise UsageError(f"no keyring {name!r}")


@dataclass
class _KexecImage:
    kernel: str
    initrd: str | None
    cmdline: str
    carried: bytes | None  # the buffer when copied at load time


@dataclass(frozen=True, slots=True)
class KexecRecord:
    """What one kexec did to the measurement list: how many entries the new kernel got,
    and the ones it lost (measured into the TPM after a copy at load, or all of them
    without CONFIG_IMA_KEXEC)."""

    generation: int  #: the kernel generation that executed the kexec (0 = first boot)
    copied_at: str  #: "load", "execute" or "not carried"
    carried: int
    lost: tuple[MeasurementEntry, ...]


_IPE_OPS: Final = {
    Hook.BPRM_CHECK: (Op.EXECUTE, "BPRM_CHECK"),
    Hook.MMAP_CHECK: (Op.EXECUTE, "MMAP"),
    Hook.MODULE_CHECK: (Op.KMODULE, "KERNEL_READ"),
    Hook.FIRMWARE_CHECK: (Op.FIRMWARE, "KERNEL_READ"),
    Hook.KEXEC_KERNEL_CHECK: (Op.KEXEC_IMAGE, "KERNEL_READ"),
    Hook.KEXEC_INITRAMFS_CHECK: (Op.KEXEC_INITRAMFS, "KERNEL_READ"),
    Hook.POLICY_CHECK: (Op.POLICY, "KERNEL_READ"),
}


def _lsm_labels(prefix: str, context: str | bytes | None) -> dict[str, str]:
    """``user:role:type[:level]`` (an SELinux context, as security.selinux holds it with a
    trailing NUL) -> {prefix_user, prefix_role, prefix_type}; empty when unlabelled."""
    if context is None:
        return {}
    text = context.decode(errors="replace") if isinstance(context, bytes) else context
    parts = text.rstrip("\0").split(":", 3)
    if len(parts) < 3:
        return {}
    return {f"{prefix}_user": parts[0], f"{prefix}_role": parts[1],
            f"{prefix}_type": parts[2]}


class Machine:
    """A simulated machine; create one with :meth:`create`."""

    def __init__(self, *, config: KernelConfig, boot_options: BootOptions, tpm: SoftTpm,
                 keyrings: SystemKeyrings, clock: Clock, entropy: Entropy) -> None:
        self.config = config
        self.boot_options = boot_options
        self.tpm = tpm
        self.keyrings = keyrings
        self.clock = clock
        self.entropy = entropy
        self.files: dict[str, SimFile] = {}
        self.audit: list[AuditRecord] = []
        self._entries: list[MeasurementEntry] = []
        self._htable: set[tuple[bytes, int]] = set()
        self._measured: dict[tuple[int, int], int] = {}  # (ino, pcr) -> i_version measured
        self._appraised: dict[int, tuple[int, bool]] = {}
        self.policy = ImaPolicy()
        self._policy_written = False
        self.booted = False
        self.violations = 0
        self._next_ino = 1
        self._kexec: _KexecImage | None = None
        self.loaded_modules: list[str] = []
        self.tainted = False
        self.kernel_generation = 0
        self.secure_boot = False
        self.kexec_log: list[KexecRecord] = []
        self._queued_keys: list[tuple[str, bytes]] = []
        self.evm_x509 = False
        self.evm_hmac_key: bytes | None = None
        #: the IPE LSM (None unless enabled: Machine.enable_ipe or CONFIG_SECURITY_IPE)
        self.ipe: Ipe | None = None
        self.fsverity_keyring = Keyring(".fs-verity")
        #: the LSM context of the simulated processes (subj_* rules), e.g.
        #: ``"system_u:system_r:init_t:s0"``; None when no LSM labels processes
        self.context: str | None = None
        self._process_keys = False

    # -- construction -----------------------------------------------------------------
    @classmethod
    def create(cls, *, preset: str = "custom-6.1-ima-kexec", config: KernelConfig | None = None,
               cmdline: str = "ima_policy=tcb", banks: Sequence[HashAlgorithm] = (
                   HashAlgorithm.SHA1, HashAlgorithm.SHA256),
               builtin_keys: Iterable[Key] = (), clock: Clock | None = None,
               entropy: Entropy | None = None, tpm: SoftTpm | None = None,
               firmware_pcrs: bool = True, secure_boot: bool = False) -> Machine:
        """A powered-on machine whose firmware measured PCRs 0-7 (unless told not to).

        ``secure_boot`` is the firmware's state as the kernel reads it
        (arch_ima_get_secureboot): with CONFIG_IMA_ARCH_POLICY it enforces module and kexec
        signatures and adds the architecture rules; with CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT
        it locks the kernel down (integrity)."""
        cfg = config if config is not None else PRESETS[preset]
        clock = clock if clock is not None else FixedClock()
        entropy = entropy if entropy is not None else SeededEntropy(b"imasim-machine")
        tpm = tpm if tpm is not None else SoftTpm(banks, clock=clock, entropy=entropy)
        if firmware_pcrs:
            for pcr in range(8):
                tpm.event(pcr, f"imasim firmware measurement {pcr}".encode())
        m = cls(config=cfg, boot_options=BootOptions.from_cmdline(cmdline), tpm=tpm,
                keyrings=SystemKeyrings.build(cfg, builtin_keys), clock=clock,
                entropy=entropy)
        m.secure_boot = secure_boot
        if cfg.security_ipe:
            m.enable_ipe(cfg.ipe_boot_policy)
        return m

    # -- IPE --------------------------------------------------------------------------
    def enable_ipe(self, boot_policy: str | None = None, *, enforce: bool = True,
                   unsigned_policy_by_rule: bool = False) -> Ipe:
        """IPE in the LSM list, with CONFIG_IPE_BOOT_POLICY's text (None: allow all until
        a policy is deployed and activated). Policies are verified against the secondary
        keyring (or the builtin one) and retried with the platform keyring, per config.
        ``unsigned_policy_by_rule`` turns on the proposal that is NOT in mainline."""
        cfg = self.config
        args = dict(t.split("=", 1) for t in self.boot_options.cmdline.split() if "=" in t)
        self.ipe = Ipe(
            keyring=(self.keyrings.secondary if cfg.ipe_policy_sig_secondary_keyring
                     else self.keyrings.builtin),
            platform_keyring=(self.keyrings.platform if cfg.ipe_policy_sig_platform_keyring
                              else None),
            boot_policy=boot_policy, kernel_version=cfg.version,
            # ipe.enforce= and ipe.success_audit= on the command line
            enforce=enforce and args.get("ipe.enforce", "1") not in ("0", "n", "N"),
            success_audit=args.get("ipe.success_audit", "0") in ("1", "y", "Y"),
            unsigned_policy_by_rule=unsigned_policy_by_rule)
        return self.ipe

    def ipe_properties(self, path: str) -> FileProperties:
        """What IPE's property providers see for a file."""
        f = self._file(path)
        v = f.fs.verity
        return FileProperties(
            boot_verified=f.fs.initramfs,
            dmverity_roothash=(v.alg, v.root_hash) if v is not None else None,
            dmverity_signature=v is not None and v.signed,
            fsverity_digest=(f.fsverity.alg, f.fsverity.digest) if f.fsverity else None,
            fsverity_signature=f.fsverity is not None and f.fsverity.signed)

    def enable_fsverity(self, path: str, signature: bytes | None = None) -> FsVerity:
        """FS_IOC_ENABLE_VERITY (sha256, 4096-byte blocks): a built-in signature must
        verify against the .fs-verity keyring or the ioctl fails and nothing changes."""
        f = self._file(path)
        alg, digest = fsverity_digest(f.content)
        if signature is not None:
            verify_fsverity_signature(f.content, signature, self.fsverity_keyring)
        f.fsverity = FsVerity(alg, digest, signature is not None)
        return f.fsverity

    def mount_dm_verity(self, files: dict[str, bytes], *, salt: bytes = bytes(32),
                        signature: bytes | None = None, name: str = "ext4") -> DmVerity:
        """A read-only file system on dm-verity holding ``files``. The simulated device is
        the files' contents in order, each padded to 4096 bytes; its root hash is what
        veritysetup computes for those bytes. A root-hash signature (PKCS#7 over the hex
        string, as dm-verity checks it) must verify against the secondary keyring, else
        the table load fails and nothing is mounted."""
        image = b"".join(c + bytes(-len(c) % 4096) for c in files.values()) or bytes(4096)
        root = dm_verity_root_hash(image, salt=salt)
        signed = False
        if signature is not None:
            verify_pkcs7(signature, root.hex().encode(), keyring=self.keyrings.secondary,
                         usage=Usage.UNSPECIFIED_SIGNATURE)
            signed = True
        verity = DmVerity("sha256", root, signed)
        fs = Filesystem(name, EXT4[1], str(uuid.UUID(bytes=root[:16])), verity=verity)
        for path, content in files.items():
            self.add_file(path, content, fs=fs, mode=0o100755)
        return verity

    def ipe_load_policy_file(self, path: str, *, update: str | None = None,
                             activate: bool = False) -> None:
        """Write a file's bytes to IPE's new_policy (or policies/<update>/update), as
        ``cat FILE > /sys/kernel/security/ipe/new_policy`` does; the file's properties
        matter only to the unsigned-policy proposal (not mainline)."""
        if self.ipe is None:
            raise SimulationError("IPE is not enabled")
        f = self._file(path)
        source = self.ipe_properties(path)
        if update is not None:
            p = self.ipe.update_policy(update, f.content, source=source)
        else:
            p = self.ipe.new_policy(f.content, source=source)
        if activate:
            self.ipe.activate(p.name)

    def load_x509_file(self, path: str, keyring: str = ".ima") -> AccessResult:
        """integrity_load_x509 (CONFIG_IMA_X509_PATH/EVM_X509_PATH): the kernel reads the
        certificate file (READING_X509_CERTIFICATE: IPE's X509_CERT, IMA's FILE_CHECK
        rules) and adds it to the keyring, whose restriction decides."""
        if not self.booted:
            raise SimulationError("boot the machine first")
        f = self._file(path)
        if self.ipe is not None:
            d = self.ipe.evaluate(Op.X509_CERT, "KERNEL_READ", self.ipe_properties(path),
                                  path=path, ino=f.ino)
            if not d.allowed:
                return AccessResult(False, reason=f"IPE: {d.rule}")
        r = self._process(path, Hook.FILE_CHECK, MAY_READ)
        if not r.allowed:
            return r
        self.add_key(keyring, Key.from_certificate(f.content))
        return r

    def _ipe_check(self, f: SimFile, hook: Hook) -> AccessResult | None:
        """The IPE LSM hook that runs before IMA: a denial stops the access."""
        if self.ipe is None or hook not in _IPE_OPS:
            return None
        op, ipe_hook = _IPE_OPS[hook]
        d = self.ipe.evaluate(op, ipe_hook, self.ipe_properties(f.path), path=f.path,
                              ino=f.ino)
        return None if d.allowed else AccessResult(False, reason=f"IPE: {d.rule}")

    # -- derived settings -------------------------------------------------------------
    @property
    def ima_hash(self) -> HashAlgorithm:
        h = self.boot_options.ima_hash or self.config.ima_default_hash
        return h if h in self.config.init_hashes else HashAlgorithm.SHA256

    @property
    def lockdown(self) -> str:
        """The lockdown level: the configured one, raised to integrity by secure boot when
        the kernel carries the distribution's lock-down-in-secure-boot patch."""
        if self.config.lockdown == "none" and self.secure_boot and \
                self.config.lock_down_in_efi_secure_boot:
            return "integrity"
        return self.config.lockdown

    @property
    def _arch_policy_active(self) -> bool:
        return self.secure_boot and self.config.ima_arch_policy

    @property
    def module_sig_enforced(self) -> bool:
        """is_module_sig_enforced(): CONFIG_MODULE_SIG_FORCE or the secure-boot arch policy."""
        return self.config.module_sig_force or (self._arch_policy_active and
                                                self.config.module_sig)

    @property
    def kexec_sig_enforced(self) -> bool:
        """kexec's sig_enforce: CONFIG_KEXEC_SIG_FORCE or set_kexec_sig_enforced() by the
        secure-boot arch policy."""
        return self.config.kexec_sig_force or (self._arch_policy_active and
                                               self.config.kexec_sig)

    @property
    def template(self) -> str:
        opts = self.boot_options
        return opts.ima_template_fmt or opts.ima_template or self.config.ima_default_template

    @property
    def measurements(self) -> MeasurementList:
        """The list as binary_runtime_measurements holds it (SHA-1 template digests)."""
        return MeasurementList(self._entries)

    def pcr_values(self, pcrs: Iterable[int] = range(24)) -> dict[HashAlgorithm, dict[int, bytes]]:
        wanted = list(pcrs)
        return {a: {i: self.tpm.read(a, i) for i in wanted} for a in self.tpm.banks}

    def _audit(self, type_: int, op: str, cause: str, name: str, result: int) -> None:
        self.audit.append(AuditRecord(type_, op, cause, name, result, self.clock.now()))

    # -- files ------------------------------------------------------------------------
    def add_file(self, path: str, content: bytes, *, uid: int = 0, gid: int = 0,
                 mode: int = 0o100755, xattrs: dict[str, bytes] | None = None,
                 fs: Filesystem | tuple[str, int] = EXT4) -> None:
        fsys = fs if isinstance(fs, Filesystem) else Filesystem(*fs)
        old = self.files.get(path)
        ino = old.ino if old is not None else self._next_ino
        if old is None:
            self._next_ino += 1
        self.files[path] = SimFile(path, bytes(content), fsys, uid, gid, mode,
                                   dict(xattrs or {}), ino,
                                   (old.i_version + 1) if old else 0)

    def unpack_initramfs(self, archive: bytes, *, fs: Filesystem | tuple[str, int] = TMPFS
                         ) -> list[str]:
        """Populate rootfs from an initramfs (cpio newc, as unpack_to_rootfs): regular
        files only, and never with xattrs, since cpio cannot carry them; rootfs is tmpfs
        (or ramfs), which the appraise_tcb policy does not appraise. The paths added."""
        fsys = fs if isinstance(fs, Filesystem) else Filesystem(*fs)
        # ipe_unpack_initramfs marks the rootfs superblock: boot_verified for IPE
        return self._add_members(parse_cpio(archive), replace(fsys, initramfs=True))

    def extract_tar(self, archive: bytes, *, fs: Filesystem | tuple[str, int] = EXT4
                    ) -> list[str]:
        """Unpack a tar archive onto a disk file system as ``tar --xattrs`` does: each
        file keeps its ``security.*`` xattrs (pax SCHILY.xattr records). The paths added."""
        return self._add_members(parse_tar(archive), fs)

    def _add_members(self, members: Sequence[ArchiveMember],
                     fs: Filesystem | tuple[str, int]) -> list[str]:
        added = []
        for m in members:
            if not m.is_file:
                continue
            path = "/" + m.path
            self.add_file(path, m.content, uid=m.uid, gid=m.gid, mode=m.mode, fs=fs,
                          xattrs={k: v for k, v in m.xattrs if k.startswith("security.")})
            added.append(path)
        return added

    def write_file(self, path: str, content: bytes) -> None:
        """Replace a file's content (its i_version changes, so it is measured again)."""
        f = self._file(path)
        f.content = bytes(content)
        f.i_version += 1

    def _file(self, path: str) -> SimFile:
        try:
            return self.files[path]
        except KeyError:
            raise UsageError(f"no such file {path!r}") from None

    # -- boot -------------------------------------------------------------------------
    def boot(self) -> None:
        """IMA init: (restore a kexec buffer,) boot_aggregate, then the boot policy."""
        if self.booted:
            raise SimulationError("the machine is already booted")
        self.booted = True
        self._add_boot_aggregate()
        self._queued_keys, self._process_keys = [], False
        for key in self.keyrings.builtin.keys:  # load_system_certificate_list
            self._key_check(self.keyrings.builtin.name, key)
        opts = self.boot_options
        self.policy = builtin_policy(list(opts.ima_policy),
                                     kernel_version=self.config.version,
                                     arch_rules=self._arch_rules())
        self._policy_written = False

    def _arch_rules(self) -> str:
        if not self._arch_policy_active:
            return ""
        cfg = self.config
        return arch_policy(kexec_sig=cfg.kexec_sig, module_sig=cfg.module_sig,
                           machine_keyring_policy=cfg.integrity_machine_keyring and
                           cfg.ima_keyrings_permit_signed_by_builtin_or_secondary)

    def _add_boot_aggregate(self) -> None:
        banks = self.tpm.banks
        pcrs = {a: {i: self.tpm.read(a, i) for i in range(10)} for a in banks}
        agg = boot_aggregate(pcrs, banks=banks, ima_hash=self.ima_hash,
                             kernel_version=self.config.version)
        desc = lookup_template(self.template)
        values: dict[str, FieldValue] = {"n-ng": "boot_aggregate", "n": "boot_aggregate"}
        if "d" in desc.field_ids:
            sha1 = boot_aggregate(pcrs, banks=[HashAlgorithm.SHA1],
                                  kernel_version=self.config.version) \
                if HashAlgorithm.SHA1 in banks else None
            values["d"] = sha1.digest if sha1 else bytes(20)
        values["d-ng"] = DigestWithAlgo(agg.alg.kernel_name, agg.digest)
        values["d-ngv2"] = DigestWithAlgo(agg.alg.kernel_name, agg.digest, "ima")
        self._store(self._make_entry(desc.name, values, self.config.ima_measure_pcr_idx),
                    check_duplicate=False)

    # -- policy -----------------------------------------------------------------------
    def load_policy(self, text: str) -> None:
        """Write a custom policy to securityfs: all rules or none; the first replaces the
        built-in rules, later ones append (CONFIG_IMA_WRITE_POLICY) or are refused."""
        if self._policy_written and not self.config.ima_write_policy:
            self._audit(1802, "policy_update", "failed", "policy", 0)
            raise PolicyError("the policy file is gone (CONFIG_IMA_WRITE_POLICY is not set)")
        try:
            new = parse_ima_policy(text, appraise_modsig=self.config.ima_appraise_modsig)
        except PolicyError:
            self._audit(1802, "policy_update", "failed", "policy", 0)
            raise
        if not self._policy_written and self._arch_policy_active:
            # the arch rules were added with IMA_CUSTOM_POLICY: they head the custom policy
            new = ImaPolicy(parse_ima_policy(self._arch_rules()).rules + new.rules, new.name)
        self.policy = (self.policy + new) if self._policy_written else new
        self._policy_written = True
        self._process_queued_keys()
        self._audit(1802, "policy_update", "completed", "policy", 1)

    # -- measurement core -------------------------------------------------------------
    def _make_entry(self, template: str, values: dict[str, FieldValue], pcr: int,
                    violation: bool = False) -> MeasurementEntry:
        desc = lookup_template(template)
        return MeasurementEntry.create(desc, {k: values.get(k) for k in desc.field_ids},
                                       pcr=pcr, violation=violation)

    def _store(self, entry: MeasurementEntry, *, check_duplicate: bool = True) -> bool:
        """ima_add_template_entry: dedupe, append, extend every bank."""
        key = (entry.template_hash(self.ima_hash), entry.pcr)
        if check_duplicate and not entry.is_violation and key in self._htable:
            self._audit(1804, "add_template_measure", "hash_exists", entry.event_name, 0)
            return False
        if not entry.is_violation:
            self._htable.add(key)
        self._entries.append(entry)
        digests = {}
        for alg in self.tpm.banks:
            if alg in self.config.init_hashes:
                digests[alg] = entry.extend_value(alg)
            elif entry.is_violation:
                digests[alg] = alg.ones
            else:  # the kernel could not allocate this hash: padded SHA-1
                digests[alg] = entry.template_hash(HashAlgorithm.SHA1).ljust(
                    alg.digest_size, b"\0")
        self.tpm.extend(entry.pcr, digests)
        return True

    def _file_values(self, f: SimFile, digest: bytes, alg: HashAlgorithm,
                     modsig: tuple[bytes, bytes] | None) -> dict[str, FieldValue]:
        sec_ima = f.xattrs.get("security.ima", b"")
        sig = sec_ima if sec_ima[:1] in (b"\x03", b"\x06") else None
        values: dict[str, FieldValue] = {
            "d": HashAlgorithm.SHA1.hash(f.content) if alg is not HashAlgorithm.SHA1 else digest,
            "n": f.path if len(f.path) <= 255 else f.path.rsplit("/", 1)[-1],
            "d-ng": DigestWithAlgo(alg.kernel_name, digest),
            "d-ngv2": DigestWithAlgo(alg.kernel_name, digest, "ima"),
            "n-ng": f.path, "sig": sig, "iuid": f.uid, "igid": f.gid, "imode": f.mode,
        }
        if modsig is not None:
            payload, blob = modsig
            values["d-modsig"] = DigestWithAlgo(alg.kernel_name, alg.hash(payload))
            values["modsig"] = blob
        return values

    def _process(self, path: str, hook: Hook, mask: int, *, uid: int = 0,
                 context: str | None = None) -> AccessResult:
        """process_measurement for a file hook."""
        if not self.booted:
            raise SimulationError("boot the machine first")
        f = self._file(path)
        denied = self._ipe_check(f, hook)
        if denied is not None:
            return denied
        labels = _lsm_labels("subj", context if context is not None else self.context)
        labels.update(_lsm_labels("obj", f.xattrs.get("security.selinux")))
        m = self.policy.match(hook, mask=mask, fsmagic=f.fs.magic, fsname=f.fs.name,
                              uid=uid, euid=uid, fowner=f.uid, fgroup=f.gid, labels=labels)
        if hook in (Hook.FILE_CHECK, Hook.MMAP_CHECK) and (m.measure or mask & MAY_WRITE):
            self._violation_check(f, mask, m)
        alg = self.ima_hash
        digest = alg.hash(f.content)
        split = split_modsig(f.content) if hook in (Hook.MODULE_CHECK, Hook.KEXEC_KERNEL_CHECK,
                                                    Hook.KEXEC_INITRAMFS_CHECK) else None
        modsig = (split[0], split[1].pkcs7) if split else None
        measured = False
        if m.measure:
            pcr = m.pcr if m.pcr is not None else self.config.ima_measure_pcr_idx
            if self._measured.get((f.ino, pcr)) != f.i_version:
                entry = self._make_entry(m.template or self.template,
                                         self._file_values(f, digest, alg, modsig), pcr)
                self._store(entry)
                self._measured[(f.ino, pcr)] = f.i_version
                measured = True
        result = AccessResult(True, measured=measured)
        if m.appraise and self.boot_options.ima_appraise != "off" and self.config.ima_appraise:
            result = self._appraise(f, hook, m, digest, alg, split, measured)
        return result

    def _violation_check(self, f: SimFile, mask: int, m: MatchResult) -> None:
        """ima_rdwr_violation_check: ToMToU and open_writers."""
        cause = None
        if mask & MAY_WRITE:
            if f.readers > 0 and any(k[0] == f.ino for k in self._measured):
                cause = "ToMToU"
        elif f.writers > 0 and m.measure:
            cause = "open_writers"
        if cause is None:
            return
        desc = lookup_template(self.template)
        alg = self.ima_hash
        values: dict[str, FieldValue] = {
            "d": bytes(20), "n": f.path, "n-ng": f.path,
            "d-ng": DigestWithAlgo(alg.kernel_name, bytes(alg.digest_size)),
            "d-ngv2": DigestWithAlgo(alg.kernel_name, bytes(alg.digest_size), "ima"),
            "iuid": f.uid, "igid": f.gid, "imode": f.mode,
        }
        self._store(self._make_entry(desc.name, values, self.config.ima_measure_pcr_idx,
                                     violation=True), check_duplicate=False)
        self.violations += 1
        self._audit(1804, "invalid_pcr", cause, f.path, 0)

    def _appraise(self, f: SimFile, hook: Hook, m: MatchResult, digest: bytes,
                  alg: HashAlgorithm, split: tuple[bytes, ModuleSignature] | None,
                  measured: bool) -> AccessResult:
        """ima_appraise_measurement with the keyring checks of asymmetric_verify."""
        rule = m.appraise_rule
        assert rule is not None
        if rule.check_blacklist and rule.modsig_allowed and split is not None:
            # ima_check_blacklist: the modsig's digest of the unsigned content, before
            # appraisal; a hit is -EPERM (no appraise_data audit), measured if measuring
            sig_alg = split[1].signed_data.signer_infos[0].digest_alg
            sig_digest = sig_alg.hash(split[0]) if sig_alg is not None else b""
            if sig_digest and self.keyrings.blacklist.is_binary_blocked(sig_digest):
                if m.measure:
                    self._store_buffer("blacklisted-hash", sig_digest,
                                       m.pcr if m.pcr is not None else
                                       self.config.ima_measure_pcr_idx, "ima-buf")
                denied = self.boot_options.ima_appraise == "enforce"
                return AccessResult(not denied, measured=measured, appraised=True,
                                    reason="blacklisted-hash")
        cause = self._appraise_cause(f, rule.requires_signature, rule.modsig_allowed,
                                     digest, alg, split)
        if cause is None:
            return AccessResult(True, measured=measured, appraised=True)
        self._audit(1800, "appraise_data", cause, f.path, 0)
        mode = self.boot_options.ima_appraise
        if mode == "enforce":
            return AccessResult(False, measured=measured, appraised=True, reason=cause)
        if mode == "fix" and cause in ("missing-hash", "invalid-hash") and \
                not rule.requires_signature:
            f.xattrs["security.ima"] = bytes([XattrKind.DIGEST_NG, alg.hash_algo]) + digest
        return AccessResult(True, measured=measured, appraised=True, reason=cause)

    def _appraise_cause(self, f: SimFile, sig_required: bool, modsig_ok: bool, digest: bytes,
                        alg: HashAlgorithm, split: tuple[bytes, ModuleSignature] | None
                        ) -> str | None:
        raw = f.xattrs.get("security.ima")
        try_modsig = modsig_ok and split is not None
        if raw is None and not try_modsig:
            return "IMA-signature-required" if sig_required else "missing-hash"
        evm_cause = self._evm_cause(f, try_modsig)
        if evm_cause is not None:
            return evm_cause
        if raw is None:
            return self._verify_modsig(f)
        try:
            v = parse_xattr(raw)
        except (ParseError, UnsupportedAlgorithmError):
            return "unknown-ima-data"
        if not v.is_signature:
            if sig_required:
                if modsig_ok and split is not None:
                    return self._verify_modsig(f)
                return "IMA-signature-required"
            assert v.hash_algo is not None
            return None if v.hash_algo.hash(f.content) == v.digest else "invalid-hash"
        assert v.hash_algo is not None
        try:
            verify_xattr(v, v.hash_algo.hash(f.content), keyring=self.keyrings.ima,
                         blacklist=self.keyrings.blacklist)
        except (KeyNotFoundError, SignatureInvalidError, RevokedError, KeyRejectedError):
            return "invalid-signature"
        except UnsupportedAlgorithmError:
            return "invalid-signature"
        return None

    def evm_init(self, *, x509: bool = True, hmac_key: bytes | None = None) -> None:
        """Initialise EVM as writing to <securityfs>/evm does (EVM_INIT_X509 with keys in
        the EVM keyring, EVM_INIT_HMAC with ``hmac_key``, the evm-key's payload): from now
        on appraisal first checks that security.evm vouches for the file's xattrs."""
        self.evm_x509 = self.evm_x509 or x509
        if hmac_key is not None:
            self.evm_hmac_key = bytes(hmac_key)

    def _evm_cause(self, f: SimFile, try_modsig: bool) -> str | None:
        """evm_verifyxattr(security.ima) as ima_appraise_measurement maps its status."""
        if not self.evm_x509 and self.evm_hmac_key is None:
            return None  # INTEGRITY_UNKNOWN: no EVM key loaded
        evm = f.xattrs.get("security.evm")
        if evm is None:
            protected = any(n in f.xattrs for n in EVM_XATTRS)
            if not protected and try_modsig:
                return None  # INTEGRITY_NOXATTRS is fine with a modsig
            return "missing-HMAC"
        uid, gid, mode = f.uid, f.gid, f.mode & 0xFFFF
        uuid_bytes = uuid.UUID(f.fs.uuid).bytes
        if evm[:1] == b"\x02":  # EVM_XATTR_HMAC: HMAC-SHA1, bound to the inode
            if self.evm_hmac_key is None or len(evm) != 21:
                return "invalid-HMAC"
            data = evm_data(f.xattrs, portable=False, ino=f.ino, fs_uuid=uuid_bytes, uid=uid,
                            gid=gid, mode=mode)
            mac = hmac.new(self.evm_hmac_key, data, "sha1").digest()
            return None if hmac.compare_digest(mac, evm[1:]) else "invalid-HMAC"
        try:
            verify_evm(evm, f.xattrs, keyring=self.keyrings.evm, ino=f.ino, fs_uuid=uuid_bytes,
                       uid=uid, gid=gid, mode=mode)
        except ImasimError:
            return "invalid-fail-immutable" if evm[:1] == b"\x05" else "invalid-HMAC"
        return None

    def _verify_modsig(self, f: SimFile) -> str | None:
        try:
            split = split_modsig(f.content)
            assert split is not None
            verify_pkcs7(split[1].signed_data, split[0], keyring=self.keyrings.ima,
                         usage=Usage.MODULE_SIGNATURE, blacklist=self.keyrings.blacklist)
        except (VerificationError, ParseError):
            return "invalid-signature"
        return None

    # -- hooks ------------------------------------------------------------------------
    def exec(self, path: str, *, uid: int = 0, context: str | None = None) -> AccessResult:
        """execve: BPRM_CHECK with MAY_EXEC. ``context`` is the calling process's LSM
        context (``user:role:type:level``, matched by ``subj_*`` rules; default
        :attr:`context`); the file's comes from its ``security.selinux`` xattr
        (``obj_*`` rules)."""
        return self._process(path, Hook.BPRM_CHECK, MAY_EXEC, uid=uid, context=context)

    def mmap(self, path: str, *, uid: int = 0, context: str | None = None) -> AccessResult:
        """mmap with PROT_EXEC: MMAP_CHECK."""
        return self._process(path, Hook.MMAP_CHECK, MAY_EXEC, uid=uid, context=context)

    def open(self, path: str, mask: int = MAY_READ, *, uid: int = 0,
             context: str | None = None) -> AccessResult:
        """open(): FILE_CHECK with the access mask; keeps the file open (see close)."""
        result = self._process(path, Hook.FILE_CHECK, mask, uid=uid, context=context)
        f = self._file(path)
        if result.allowed:
            if mask & MAY_WRITE:
                f.writers += 1
            else:
                f.readers += 1
        return result

    def close(self, path: str, mask: int = MAY_READ) -> None:
        f = self._file(path)
        if mask & MAY_WRITE:
            f.writers = max(0, f.writers - 1)
        else:
            f.readers = max(0, f.readers - 1)

    def read_file(self, path: str, *, uid: int = 0) -> AccessResult:
        """open for read and close again."""
        r = self.open(path, MAY_READ, uid=uid)
        if r.allowed:
            self.close(path, MAY_READ)
        return r

    def load_firmware(self, path: str) -> AccessResult:
        return self._process(path, Hook.FIRMWARE_CHECK, MAY_READ)

    def load_module(self, path: str) -> AccessResult:
        """finit_module: MODULE_CHECK (IMA), then the module signature (module_sig_check)."""
        ima = self._process(path, Hook.MODULE_CHECK, MAY_READ)
        if not ima.allowed:
            return ima
        reason = ""
        if self.config.module_sig:
            f = self._file(path)
            try:
                split = split_modsig(f.content)
                if split is None:
                    raise KeyNotFoundError("unsigned module")  # -ENODATA, treated like -ENOKEY
                verify_pkcs7(split[1].signed_data, split[0], keyring=self.keyrings.secondary,
                             usage=Usage.MODULE_SIGNATURE, blacklist=self.keyrings.blacklist)
            except (KeyNotFoundError, UnsupportedAlgorithmError) as exc:
                # -ENODATA/-ENOKEY/-ENOPKG are fatal only when enforced or locked down
                if self.module_sig_enforced or self.lockdown != "none":
                    self._audit(1800, "module_sig", "rejected", path, 0)
                    return AccessResult(False, ima.measured, ima.appraised,
                                        f"module signature: {exc}")
                self.tainted = True
                reason = f"tainted: {exc}"
            except ImasimError as exc:
                self._audit(1800, "module_sig", "invalid", path, 0)
                return AccessResult(False, ima.measured, ima.appraised,
                                    f"module signature: {exc}")
        self.loaded_modules.append(path)
        return AccessResult(True, ima.measured, ima.appraised, reason)

    def _buffer_measurement(self, hook: Hook, name: str, buf: bytes, *,
                            keyring: str | None = None, label: str | None = None) -> bool:
        """process_buffer_measurement."""
        m = self.policy.match(hook, keyring=keyring, data_label=label)
        if not m.measure:
            return False
        pcr = m.pcr if m.pcr is not None else self.config.ima_measure_pcr_idx
        return self._store_buffer(name, buf, pcr, m.template or "ima-buf")

    def _store_buffer(self, name: str, buf: bytes, pcr: int, template: str) -> bool:
        alg = self.ima_hash
        values: dict[str, FieldValue] = {"d-ng": DigestWithAlgo(alg.kernel_name, alg.hash(buf)),
                                         "d-ngv2": DigestWithAlgo(alg.kernel_name, alg.hash(buf),
                                                                  "ima"),
                                         "n-ng": name, "buf": buf}
        return self._store(self._make_entry(template, values, pcr))

    def add_key(self, keyring: str, key: Key) -> None:
        """add_key(2) into a system keyring: the restriction decides; KEY_CHECK measures,
        or, until a custom policy is loaded, queues (CONFIG_IMA_QUEUE_EARLY_BOOT_KEYS)."""
        ring = self.keyrings.by_name(keyring)
        ring.add(key)
        self._key_check(ring.name, key)

    def _key_check(self, ring: str, key: Key) -> None:
        """ima_post_key_create_or_update."""
        if key.der is None or not self.config.ima_measure_asymmetric_keys:
            return
        if self.config.ima_queue_early_boot_keys and not self._process_keys:
            self._queued_keys.append((ring, key.der))
            return
        self._buffer_measurement(Hook.KEY_CHECK, ring, key.der, keyring=ring)

    def _process_queued_keys(self) -> None:
        """ima_process_queued_keys, when the first custom policy is in place. (The kernel
        also drops the queue unmeasured 5 minutes after boot; not simulated.)"""
        if self._process_keys:
            return
        self._process_keys = True
        queued, self._queued_keys = self._queued_keys, []
        for ring, der in queued:
            self._buffer_measurement(Hook.KEY_CHECK, ring, der, keyring=ring)

    def measure_critical_data(self, label: str, event_name: str, data: bytes) -> bool:
        return self._buffer_measurement(Hook.CRITICAL_DATA, event_name, data, label=label)

    # -- kexec ------------------------------------------------------------------------
    def kexec_load(self, kernel: str, initrd: str | None = None, cmdline: str = "") -> AccessResult:
        """kexec_file_load: measure/appraise the image and initramfs, measure the command
        line, and (up to 6.15) copy the measurement list into the kexec buffer now."""
        r = self._process(kernel, Hook.KEXEC_KERNEL_CHECK, MAY_READ)
        if not r.allowed:
            return r
        if self.config.kexec_sig:
            refusal = self._kexec_validate_signature(self._file(kernel).content)
            if refusal is not None:
                return AccessResult(False, r.measured, r.appraised, refusal)
        if initrd is not None:
            ri = self._process(initrd, Hook.KEXEC_INITRAMFS_CHECK, MAY_READ)
            if not ri.allowed:
                return ri
        if cmdline:
            self._buffer_measurement(Hook.KEXEC_CMDLINE, "kexec-cmdline", cmdline.encode())
        carried = None
        if self.config.ima_kexec and not self.config.copies_list_at_execute:
            carried = pack_kexec_buffer(self._entries)
        self._kexec = _KexecImage(kernel, initrd, cmdline, carried)
        return AccessResult(True, r.measured, r.appraised)

    def _kexec_verify_sig(self, image: bytes) -> str:
        """The arch loader's verify_sig: the keyring that accepted the image, or the
        kernel's error. The secondary keyring first, the platform keyring on -ENOKEY."""
        rings = [self.keyrings.secondary]
        if self.config.integrity_platform_keyring:
            rings.append(self.keyrings.platform)
        blacklist = self.keyrings.blacklist
        if self.config.arch != "s390x":
            # kexec_kernel_verify_pe_sig -> verify_pefile_signature
            return verify_authenticode(image, keyrings=rings, blacklist=blacklist).keyring
        # s390_verify_sig: a missing or non-PKCS#7 trailer is -EKEYREJECTED
        split = split_modsig(image)
        if split is None:
            raise KeyRejectedError("kernel image has no appended signature")
        for ring in rings:
            try:
                verify_pkcs7(split[1].signed_data, split[0], keyring=ring,
                             usage=Usage.MODULE_SIGNATURE, blacklist=blacklist)
                return ring.name
            except KeyNotFoundError:
                if ring is rings[-1]:
                    raise
        raise AssertionError("unreachable")

    def _kexec_validate_signature(self, image: bytes) -> str | None:
        """kimage_validate_signature: None to go on, else why the load is refused.

        A failed check refuses the load when signatures are enforced; otherwise only
        lockdown refuses it (-EPERM), unless the IMA policy guarantees a signature
        appraisal of the image (ima_appraise_signature). The image-hash (``bin:``)
        blacklist is not consulted here: only IMA appraisal with
        ``appraise_flag=check_blacklist`` checks it."""
        try:
            self._kexec_verify_sig(image)
            return None
        except ImasimError as exc:
            error = f"KEXEC_SIG: {exc}"
        if self.kexec_sig_enforced:
            return error
        appraise_enforced = self.boot_options.ima_appraise == "enforce" and \
            self.config.ima_appraise
        if self.lockdown != "none" and not (
                appraise_enforced and self.policy.appraise_signature(Hook.KEXEC_KERNEL_CHECK)):
            return f"{error}; lockdown ({self.lockdown}) refuses unverified kexec images"
        return None

    def kexec_execute(self, *, cmdline: str | None = None) -> None:
        """kexec -e: the TPM keeps its PCRs; the new kernel restores the carried list (if
        CONFIG_IMA_KEXEC) and appends its own boot_aggregate."""
        if self._kexec is None:
            raise SimulationError("no kexec image loaded")
        image = self._kexec
        if self.config.ima_kexec:
            buf = image.carried if image.carried is not None else pack_kexec_buffer(self._entries)
            restored = list(restore_kexec_buffer(buf).entries)
        else:
            restored = []
        self.kexec_log.append(KexecRecord(
            self.kernel_generation,
            "not carried" if not self.config.ima_kexec else
            "load" if image.carried is not None else "execute",
            len(restored), tuple(self._entries[len(restored):])))
        self.tpm.soft_reboot()
        new_cmdline = cmdline if cmdline is not None else image.cmdline
        self.boot_options = BootOptions.from_cmdline(new_cmdline) if new_cmdline else \
            self.boot_options
        self._entries = restored
        self._htable = set()
        self._measured = {}
        self._appraised = {}
        self._kexec = None
        self.violations = 0
        self.booted = False
        self.kernel_generation += 1
        self.boot()

    @property
    def lost_measurements(self) -> tuple[MeasurementEntry, ...]:
        """Every entry extended into the TPM that the current list no longer holds (the
        kexec window of kernels up to 6.15, or whole lists without CONFIG_IMA_KEXEC),
        since the last power cycle."""
        return tuple(e for r in self.kexec_log for e in r.lost)

    def power_cycle(self) -> None:
        """A cold reboot: TPM Reset, new firmware measurements, an empty list."""
        self.tpm.power_cycle()
        for pcr in range(8):
            self.tpm.event(pcr, f"imasim firmware measurement {pcr}".encode())
        self._entries = []
        self._htable = set()
        self._measured = {}
        self._kexec = None
        self.booted = False
        self.kernel_generation += 1
        self.kexec_log = []

    def __repr__(self) -> str:
        return (f"<Machine kernel {self.config.version[0]}.{self.config.version[1]} "
                f"{len(self._entries)} measurements, policy {self.policy.name}>")

    def _repr_html_(self) -> str:
        return (f"<p>{self!r}</p>" + self.measurements._repr_html_())

