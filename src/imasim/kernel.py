"""The simulated kernel's transitions, each computed on a :class:`Txn` over the current
:class:`~imasim.state.MachineState`.

A transition reads the state and the running kernel's objects (:class:`Kernel`: its
configuration, the TPM, the keyrings, IPE) and writes only into the :class:`Txn`: the
entries it appends, the PCR extends it wants, the files it changes, the audit records it
writes. :meth:`Txn.commit` applies all of that at once; a transition that raises is
simply dropped, so nothing of it reaches the machine (only audit records the kernel
writes about the refusal itself, marked ``keep``). The decisions themselves are the pure
functions of :mod:`imasim.ima.appraise`, :mod:`imasim.ima.policy` and
:mod:`imasim.kexec`.

Extension points: :func:`measure_firmware` is the one place the firmware's measurements
happen (a replacement takes the TPM and extends what it likes, e.g. with an event log);
:func:`process` is ``process_measurement`` for every file hook; :func:`boot` is IMA's init.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol, TypeVar, cast

from .algorithms import HashAlgorithm
from .archive import ArchiveMember, parse_cpio
from .env import Clock
from .errors import (
    ImasimError,
    KeyNotFoundError,
    ParseError,
    PolicyError,
    SimulationError,
    UnsupportedAlgorithmError,
    UsageError,
)
from .eventlog.codec import EventLog as FirmwareEventLog
from .ima import archpolicy
from .ima.appraise import (
    AUDIT_INTEGRITY_DATA,
    AUDIT_INTEGRITY_PCR,
    AUDIT_INTEGRITY_STATUS,
    AppraisalKeyrings,
    AppraiseMode,
    EvmKeys,
    Inode,
    appraise,
)
from .ima.archpolicy import ArchPolicy
from .ima.entry import MeasurementEntry
from .ima.fields import DigestWithAlgo, FieldValue
from .ima.policy import (
    MAY_EXEC,
    MAY_READ,
    MAY_WRITE,
    Action,
    Hook,
    ImaPolicy,
    MatchResult,
    builtin_policy,
    parse_ima_policy,
)
from .ima.replay import boot_aggregate
from .ima.templates import lookup_template
from .initkeys import integrity_load_keys
from .ipe.lsm import FileProperties, Ipe
from .ipe.policy import Op
from .ipe.verity import dm_verity_root_hash, fsverity_digest, verify_fsverity_signature
from .kconfig import BootOptions, KernelConfig
from .kexec import kexec_signature_refusal, pack_kexec_buffer, restore_kexec_buffer
from .keys.key import Key
from .keys.keyring import BlacklistKey, KeyNeed, Keyring
from .keys.layout import ProcKey
from .keys.layout import proc_keys as layout_proc_keys
from .keys.system import SystemKeyrings
from .kimage import embedded_initramfs
from .kinit import InitStep, default_modules, init_steps, modprobe_path, rdinit
from .policyfile import write_policy
from .sig.modsig import split_modsig
from .sig.pkcs7 import Usage, verify_pkcs7
from .state import (
    AccessResult,
    AuditRecord,
    BootState,
    KexecCopy,
    KexecImage,
    KexecRecord,
    MachineSnapshot,
    MachineState,
    QueuedKey,
)
from .tpm.soft_tpm import SoftTpm
from .vfs import EXT4, TMPFS, VOLATILE_MAGICS, DmVerity, Filesystem, FsVerity, SimFile

#: CONFIG_MODPROBE_PATH: what request_module runs
MODPROBE = "/sbin/modprobe"

__all__ = [
    "Firmware",
    "Kernel",
    "Txn",
    "add_key",
    "boot",
    "kexec_execute",
    "kexec_load",
    "load_module",
    "load_policy",
    "measure_buffer",
    "measure_firmware",
    "process",
    "write_policy",
]

class Firmware(Protocol):
    """The firmware step of a power-on: whatever it measures into the TPM before the
    kernel runs (:func:`measure_firmware` is imasim's default)."""

    def __call__(self, tpm: SoftTpm, /) -> None: ...


def measure_firmware(tpm: SoftTpm) -> None:
    """The firmware's measurements of a power-on (imasim's stand-in: one TPM2_PCR_Event
    into each of PCRs 0-7). The one place they happen; replace it to model a real
    firmware (an event log whose replay gives PCRs 0-7)."""
    for pcr in range(8):
        tpm.event(pcr, f"imasim firmware measurement {pcr}".encode())


def firmware_log(firmware: Firmware | None, banks: Sequence[HashAlgorithm]
                 ) -> FirmwareEventLog | None:
    """The TCG event log (``binary_bios_measurements``) the firmware wrote, when it writes
    one (:class:`imasim.eventlog.simulate.SimulatedFirmware` has ``log(banks)``)."""
    log = getattr(firmware, "log", None)
    return cast("FirmwareEventLog", log(banks)) if callable(log) else None


@dataclass(frozen=True, slots=True)
class Kernel:
    """The running kernel's objects: its configuration, the TPM it talks to, the keyrings
    it built, IPE (when an LSM), the .fs-verity keyring, the clock, and the firmware's
    secure-boot state. Rebuilt at every boot generation but the TPM and clock."""

    config: KernelConfig
    tpm: SoftTpm
    keyrings: SystemKeyrings
    fsverity_keyring: Keyring
    ipe: Ipe | None
    clock: Clock
    secure_boot: bool = False

    @property
    def lockdown(self) -> str:
        """The lockdown level: the configured one, raised to integrity by secure boot when
        the kernel carries the distribution's lock-down-in-secure-boot patch."""
        cfg = self.config
        if cfg.lockdown == "none" and self.secure_boot and cfg.lock_down_in_efi_secure_boot:
            return "integrity"
        return cfg.lockdown

    @property
    def arch_policy_active(self) -> bool:
        return self.secure_boot and self.config.ima_arch_policy

    @property
    def module_sig_enforced(self) -> bool:
        """is_module_sig_enforced(): CONFIG_MODULE_SIG_FORCE or the secure-boot arch policy."""
        return self.config.module_sig_force or self._arch.module_sig_enforced

    @property
    def kexec_sig_enforced(self) -> bool:
        """kexec's sig_enforce: CONFIG_KEXEC_SIG_FORCE or set_kexec_sig_enforced() by the
        secure-boot arch policy (5.19, 5.10.132, 5.15.56, 5.18.13 and later; EFI
        architectures only: :func:`imasim.kconfig.forces_kexec_sig`)."""
        return self.config.kexec_sig_force or self._arch.kexec_sig_enforced

    @property
    def _arch(self) -> ArchPolicy:
        return archpolicy.arch_rules(self.config, secure_boot=self.secure_boot)

    def arch_rules(self) -> str:
        return self._arch.rules

    def ima_hash(self, opts: BootOptions) -> HashAlgorithm:
        h = opts.ima_hash or self.config.ima_default_hash
        return h if h in self.config.init_hashes else HashAlgorithm.SHA256

    def template(self, opts: BootOptions) -> str:
        return opts.ima_template_fmt or opts.ima_template or self.config.ima_default_template


_K = TypeVar("_K")
_V = TypeVar("_V")


def _thaw(m: Mapping[_K, _V]) -> dict[_K, _V]:
    """A mutable copy of a frozen mapping (MappingProxyType.copy is the C-level dict copy)."""
    return m.copy() if isinstance(m, MappingProxyType) else dict(m)


class Txn:
    """One transition being computed: the state it started from, what it changed so far
    (copied on first write), the PCR extends and audit records it will commit."""

    def __init__(self, state: MachineState, kernel: Kernel) -> None:
        self.kernel = kernel
        self.start = state
        self.state = state  #: the fields outside ``boot``, replaced as they change
        self.boot = state.boot  #: the scalar fields of the boot state, replaced as they change
        self._entries: list[MeasurementEntry] | None = None
        self._htable: dict[tuple[bytes, int], int] | None = None
        self._measured: dict[tuple[int, int], int] | None = None
        self._open: dict[int, tuple[int, int]] | None = None
        self._files: dict[str, SimFile] | None = None
        self.extends: list[tuple[int, dict[HashAlgorithm, bytes]]] = []
        self.audit: list[tuple[AuditRecord, bool]] = []

    # -- copy on write ----------------------------------------------------------------
    @property
    def entries(self) -> list[MeasurementEntry]:
        if self._entries is None:
            self._entries = list(self.boot.entries)
        return self._entries

    @property
    def htable(self) -> dict[tuple[bytes, int], int]:
        if self._htable is None:
            self._htable = _thaw(self.boot.htable)
        return self._htable

    def in_htable(self, key: tuple[bytes, int]) -> bool:
        return key in (self._htable if self._htable is not None else self.boot.htable)

    def measured_version(self, key: tuple[int, int]) -> int | None:
        """The i_version last measured for (inode, PCR), without copying anything."""
        return (self._measured if self._measured is not None else self.boot.measured).get(key)

    def ino_measured(self, ino: int) -> bool:
        m = self._measured if self._measured is not None else self.boot.measured
        return any(k[0] == ino for k in m)

    @property
    def measured(self) -> dict[tuple[int, int], int]:
        if self._measured is None:
            self._measured = _thaw(self.boot.measured)
        return self._measured

    @property
    def open_files(self) -> dict[int, tuple[int, int]]:
        if self._open is None:
            self._open = _thaw(self.boot.open_files)
        return self._open

    @property
    def files(self) -> Mapping[str, SimFile]:
        return self._files if self._files is not None else self.state.files

    def file(self, path: str) -> SimFile:
        try:
            return self.files[path]
        except KeyError:
            raise UsageError(f"no such file {path!r}") from None

    def put_file(self, f: SimFile) -> None:
        if self._files is None:
            self._files = _thaw(self.state.files)
        self._files[f.path] = f

    def drop_volatile_files(self) -> None:
        """A new kernel's memory: the files on tmpfs, ramfs and proc are gone."""
        self._files = {p: f for p, f in self.files.items()
                       if f.fs.magic not in VOLATILE_MAGICS}

    def new_boot(self, boot: BootState) -> None:
        """Start a new boot generation: everything of the old one is dropped."""
        self.boot = boot
        self._entries = self._htable = self._measured = self._open = None

    # -- TPM and audit ----------------------------------------------------------------
    def pcr(self, alg: HashAlgorithm, index: int) -> bytes:
        """The PCR as it will be once the pending extends are applied."""
        value = self.kernel.tpm.read(alg, index)
        for i, digests in self.extends:
            if i == index and alg in digests:
                value = alg.hash(value + digests[alg])
        return value

    def extend(self, index: int, digests: dict[HashAlgorithm, bytes]) -> None:
        self.extends.append((index, digests))

    def audit_msg(self, type_: int, op: str, cause: str, name: str, result: int, *,
                  keep: bool = False) -> None:
        """An audit record; ``keep`` writes it even when the transition fails."""
        rec = AuditRecord(type_, op, cause, name, result, self.kernel.clock.now())
        self.audit.append((rec, keep))

    # -- the end ----------------------------------------------------------------------
    def result(self) -> MachineState:
        """The next state."""
        boot = self.boot
        changes: dict[str, object] = {}
        if self._entries is not None:
            changes["entries"] = tuple(self._entries)
        if self._htable is not None:
            changes["htable"] = MappingProxyType(self._htable)
        if self._measured is not None:
            changes["measured"] = MappingProxyType(self._measured)
        if self._open is not None:
            changes["open_files"] = MappingProxyType(
                {k: v for k, v in self._open.items() if v != (0, 0)})
        if changes:
            boot = replace(boot, **changes)  # type: ignore[arg-type]
        state = replace(self.state, boot=boot)
        if self._files is not None:
            state = replace(state, files=MappingProxyType(self._files))
        return state

    def commit(self) -> tuple[MachineState, tuple[AuditRecord, ...]]:
        """Extend the TPM and return the next state and the audit records written."""
        new = self.result()
        for index, digests in self.extends:
            self.kernel.tpm.extend(index, digests)
        return new, tuple(r for r, _ in self.audit)

    def kept_audit(self) -> tuple[AuditRecord, ...]:
        """The audit records of a failed transition that the kernel writes anyway."""
        return tuple(r for r, keep in self.audit if keep)


# -- measurement core ----------------------------------------------------------------------
def _make_entry(template: str, values: Mapping[str, FieldValue], pcr: int,
                violation: bool = False) -> MeasurementEntry:
    desc = lookup_template(template)
    return MeasurementEntry.create(desc, {k: values.get(k) for k in desc.field_ids},
                                   pcr=pcr, violation=violation)


def store(t: Txn, entry: MeasurementEntry, *, check_duplicate: bool = True) -> bool:
    """ima_add_template_entry: dedupe, append, extend every bank."""
    k = t.kernel
    key = (entry.template_hash(k.ima_hash(t.boot.boot_options)), entry.pcr)
    if check_duplicate and not entry.is_violation and t.in_htable(key):
        t.audit_msg(AUDIT_INTEGRITY_PCR, "add_template_measure", "hash_exists",
                    entry.event_name, 0)
        return False
    if not entry.is_violation:
        t.htable[key] = len(t.entries)
    t.entries.append(entry)
    digests = {}
    for alg in k.tpm.banks:
        if alg in k.config.init_hashes:
            digests[alg] = entry.extend_value(alg)
        elif entry.is_violation:
            digests[alg] = alg.ones
        else:  # the kernel could not allocate this hash: padded SHA-1
            digests[alg] = entry.template_hash(HashAlgorithm.SHA1).ljust(alg.digest_size, b"\0")
    t.extend(entry.pcr, digests)
    return True


def store_buffer(t: Txn, name: str, buf: bytes, pcr: int, template: str) -> bool:
    alg = t.kernel.ima_hash(t.boot.boot_options)
    values: dict[str, FieldValue] = {"d-ng": DigestWithAlgo(alg.kernel_name, alg.hash(buf)),
                                     "d-ngv2": DigestWithAlgo(alg.kernel_name, alg.hash(buf),
                                                              "ima"),
                                     "n-ng": name, "buf": buf}
    return store(t, _make_entry(template, values, pcr))


def measure_buffer(t: Txn, hook: Hook, name: str, buf: bytes, *, keyring: str | None = None,
                   label: str | None = None) -> bool:
    """process_buffer_measurement (KEY_CHECK, KEXEC_CMDLINE, CRITICAL_DATA)."""
    m = t.boot.policy.match(hook, keyring=keyring, data_label=label)
    if not m.measure:
        return False
    pcr = m.pcr if m.pcr is not None else t.kernel.config.ima_measure_pcr_idx
    return store_buffer(t, name, buf, pcr, m.template or "ima-buf")


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


def file_values(f: SimFile, digest: bytes, alg: HashAlgorithm,
                modsig: tuple[bytes, bytes] | None) -> dict[str, FieldValue]:
    """The template fields of a file measurement (ima_collect_measurement's results)."""
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


def ipe_properties(f: SimFile) -> FileProperties:
    """What IPE's property providers see for a file."""
    v = f.fs.verity
    return FileProperties(
        boot_verified=f.fs.initramfs,
        dmverity_roothash=(v.alg, v.root_hash) if v is not None else None,
        dmverity_signature=v is not None and v.signed,
        fsverity_digest=(f.fsverity.alg, f.fsverity.digest) if f.fsverity else None,
        fsverity_signature=f.fsverity is not None and f.fsverity.signed)


_IPE_OPS: dict[Hook, tuple[Op, str]] = {
    Hook.BPRM_CHECK: (Op.EXECUTE, "BPRM_CHECK"),
    Hook.MMAP_CHECK: (Op.EXECUTE, "MMAP"),
    Hook.MODULE_CHECK: (Op.KMODULE, "KERNEL_READ"),
    Hook.FIRMWARE_CHECK: (Op.FIRMWARE, "KERNEL_READ"),
    Hook.KEXEC_KERNEL_CHECK: (Op.KEXEC_IMAGE, "KERNEL_READ"),
    Hook.KEXEC_INITRAMFS_CHECK: (Op.KEXEC_INITRAMFS, "KERNEL_READ"),
    Hook.POLICY_CHECK: (Op.POLICY, "KERNEL_READ"),
}


def ipe_check(t: Txn, f: SimFile, hook: Hook) -> AccessResult | None:
    """The IPE LSM hook that runs before IMA: a denial stops the access."""
    ipe = t.kernel.ipe
    if ipe is None or hook not in _IPE_OPS:
        return None
    op, ipe_hook = _IPE_OPS[hook]
    comm = "kexec" if op in (Op.KEXEC_IMAGE, Op.KEXEC_INITRAMFS) else "imasim"  # kexec-tools
    d = ipe.evaluate(op, ipe_hook, ipe_properties(f), path=f.path, dev=f.fs.s_id, ino=f.ino,
                     comm=comm)
    return None if d.allowed else AccessResult(False, reason=f"IPE: {d.rule}")


# -- file hooks ----------------------------------------------------------------------------
def process(t: Txn, path: str, hook: Hook, mask: int, *, uid: int = 0,
            context: str | None = None) -> AccessResult:
    """process_measurement for a file hook: IPE, violations, measure, appraise."""
    if not t.boot.booted:
        raise SimulationError("boot the machine first")
    k = t.kernel
    f = t.file(path)
    denied = ipe_check(t, f, hook)
    if denied is not None:
        return denied
    labels = _lsm_labels("subj", context if context is not None else t.state.context)
    labels.update(_lsm_labels("obj", f.xattrs.get("security.selinux")))
    m = t.boot.policy.match(hook, mask=mask, fsmagic=f.fs.magic, fsname=f.fs.name,
                            uid=uid, euid=uid, fowner=f.uid, fgroup=f.gid, labels=labels)
    if hook in (Hook.FILE_CHECK, Hook.MMAP_CHECK) and (m.measure or mask & MAY_WRITE):
        _violation_check(t, f, mask, m)
    opts = t.boot.boot_options
    alg = k.ima_hash(opts)
    digest = alg.hash(f.content)
    with_modsig = hook in (Hook.MODULE_CHECK, Hook.KEXEC_KERNEL_CHECK,
                           Hook.KEXEC_INITRAMFS_CHECK)
    split = split_modsig(f.content) if with_modsig else None
    measured = False
    if m.measure:
        pcr = m.pcr if m.pcr is not None else k.config.ima_measure_pcr_idx
        if t.measured_version((f.ino, pcr)) != f.i_version:
            modsig = (split[0], split[1].pkcs7) if split else None
            entry = _make_entry(m.template or k.template(opts),
                                file_values(f, digest, alg, modsig), pcr)
            store(t, entry)
            t.measured[(f.ino, pcr)] = f.i_version
            measured = True
    mode = AppraiseMode(opts.ima_appraise)
    if not (m.appraise and mode is not AppraiseMode.OFF and k.config.ima_appraise):
        return AccessResult(True, measured=measured)
    rule = m.appraise_rule
    assert rule is not None
    rings = k.keyrings
    r = appraise(content=f.content, xattrs=f.xattrs, rule=rule, mode=mode,
                 keyrings=AppraisalKeyrings(rings.ima, rings.evm, rings.blacklist),
                 evm=EvmKeys(t.boot.evm_x509, t.boot.evm_hmac_key),
                 inode=Inode(f.ino, f.uid, f.gid, f.mode, f.fs.uuid), alg=alg,
                 modsig=with_modsig)
    if r.blacklisted_digest is not None and m.measure:
        store_buffer(t, "blacklisted-hash", r.blacklisted_digest,
                     m.pcr if m.pcr is not None else k.config.ima_measure_pcr_idx, "ima-buf")
    if r.audit:
        t.audit_msg(AUDIT_INTEGRITY_DATA, "appraise_data", r.reason, f.path, 0)
    if r.fix_xattr is not None:
        t.put_file(f.with_xattr("security.ima", r.fix_xattr))
    return AccessResult(r.allowed, measured=measured, appraised=True, reason=r.reason,
                        cause=r.cause)


def _violation_check(t: Txn, f: SimFile, mask: int, m: MatchResult) -> None:
    """ima_rdwr_violation_check: ToMToU and open_writers."""
    readers, writers = t.open_files.get(f.ino, (0, 0))
    cause = None
    if mask & MAY_WRITE:
        if readers > 0 and t.ino_measured(f.ino):
            cause = "ToMToU"
    elif writers > 0 and m.measure:
        cause = "open_writers"
    if cause is None:
        return
    k = t.kernel
    opts = t.boot.boot_options
    desc = lookup_template(k.template(opts))
    alg = k.ima_hash(opts)
    values: dict[str, FieldValue] = {
        "d": bytes(20), "n": f.path, "n-ng": f.path,
        "d-ng": DigestWithAlgo(alg.kernel_name, bytes(alg.digest_size)),
        "d-ngv2": DigestWithAlgo(alg.kernel_name, bytes(alg.digest_size), "ima"),
        "iuid": f.uid, "igid": f.gid, "imode": f.mode,
    }
    store(t, _make_entry(desc.name, values, k.config.ima_measure_pcr_idx, violation=True),
          check_duplicate=False)
    t.boot = replace(t.boot, violations=t.boot.violations + 1)
    t.audit_msg(AUDIT_INTEGRITY_PCR, "invalid_pcr", cause, f.path, 0)


def open_file(t: Txn, path: str, mask: int, *, uid: int = 0,
              context: str | None = None) -> AccessResult:
    """open(): FILE_CHECK with the access mask; an allowed open stays open."""
    result = process(t, path, Hook.FILE_CHECK, mask, uid=uid, context=context)
    if result.allowed:
        ino = t.file(path).ino
        readers, writers = t.open_files.get(ino, (0, 0))
        t.open_files[ino] = (readers, writers + 1) if mask & MAY_WRITE else (readers + 1,
                                                                              writers)
    return result


def close_file(t: Txn, path: str, mask: int) -> None:
    ino = t.file(path).ino
    readers, writers = t.open_files.get(ino, (0, 0))
    t.open_files[ino] = (readers, max(0, writers - 1)) if mask & MAY_WRITE else \
        (max(0, readers - 1), writers)


def load_module(t: Txn, path: str, *, ima_initialised: bool = True) -> AccessResult:
    """finit_module: MODULE_CHECK (IMA), then the module signature (module_sig_check).
    Before init_ima (``ima_initialised=False``: a module an initcall requests) IMA's hooks
    do nothing, and the secure-boot arch policy has not yet called
    set_module_sig_enforced (IMA's init does): only MODULE_SIG_FORCE and lockdown refuse."""
    ima = process(t, path, Hook.MODULE_CHECK, MAY_READ) if ima_initialised else \
        AccessResult(True)
    if not ima.allowed:
        return ima
    k = t.kernel
    enforced = k.module_sig_enforced if ima_initialised else k.config.module_sig_force
    reason = ""
    if k.config.module_sig:
        f = t.file(path)
        try:
            split = split_modsig(f.content)
            if split is None:
                raise KeyNotFoundError("unsigned module")  # -ENODATA, treated like -ENOKEY
            verify_pkcs7(split[1].signed_data, split[0], keyring=k.keyrings.secondary,
                         usage=Usage.MODULE_SIGNATURE, blacklist=k.keyrings.blacklist)
        except (KeyNotFoundError, UnsupportedAlgorithmError) as exc:
            # -ENODATA/-ENOKEY/-ENOPKG are fatal only when enforced or locked down
            if enforced or k.lockdown != "none":
                t.audit_msg(AUDIT_INTEGRITY_DATA, "module_sig", "rejected", path, 0)
                return AccessResult(False, ima.measured, ima.appraised,
                                    f"module signature: {exc}")
            t.boot = replace(t.boot, tainted=True)
            reason = f"tainted: {exc}"
        except ImasimError as exc:
            t.audit_msg(AUDIT_INTEGRITY_DATA, "module_sig", "invalid", path, 0)
            return AccessResult(False, ima.measured, ima.appraised, f"module signature: {exc}")
    t.boot = replace(t.boot, loaded_modules=(*t.boot.loaded_modules, path))
    return AccessResult(True, ima.measured, ima.appraised, reason)


# -- keys ----------------------------------------------------------------------------------
def key_check(t: Txn, ring: str, key: Key) -> None:
    """ima_post_key_create_or_update."""
    cfg = t.kernel.config
    if key.der is None or not cfg.ima_measure_asymmetric_keys:
        return
    if cfg.ima_queue_early_boot_keys and not t.boot.process_keys:
        t.boot = replace(t.boot, queued_keys=(*t.boot.queued_keys, QueuedKey(ring, key.der)))
        return
    measure_buffer(t, Hook.KEY_CHECK, ring, key.der, keyring=ring)


def add_key(t: Txn, ring: str | Keyring, key: Key | BlacklistKey) -> None:
    """add_key(2) from user space: WRITE permission on the keyring (-EACCES), KEY_CHECK
    measures (or queues) the key, then the keyring's restriction decides; the keyring
    changes last, so a refusal changes nothing. ``.blacklist`` (by name) takes
    :class:`~imasim.keys.keyring.BlacklistKey` hashes by its own rules
    (:meth:`~imasim.keys.keyring.Blacklist.add_key`; IMA measures only asymmetric keys)."""
    rings = t.kernel.keyrings
    if ring == ".blacklist" and any(s.name == ring for s in rings.layout):
        rings.blacklist.add_key(key, builtin=rings.builtin)
        return
    target = rings.resolve(ring)
    if isinstance(key, BlacklistKey):
        raise UsageError(f"blacklist keys are modelled in .blacklist only, not {target.name}")
    target.check_permission(KeyNeed.WRITE)
    key_check(t, target.name, key)
    target.add(key)


def keyctl_link(dest: Keyring, item: Keyring) -> None:
    """keyctl_keyring_link: WRITE on the destination, LINK on what is linked, then the
    destination's restriction (which compares keyring objects, not names)."""
    dest.check_permission(KeyNeed.WRITE)
    item.check_permission(KeyNeed.LINK)
    dest.link(item)


def keyctl_clear(rings: SystemKeyrings, ring: str | Keyring) -> None:
    """keyctl_keyring_clear: WRITE on the keyring (the kernel's own keyrings refuse:
    EACCES); .blacklist is also kept (KEY_FLAG_KEEP: EPERM)."""
    if ring == ".blacklist" and any(s.name == ring for s in rings.layout):
        rings.blacklist.keyctl_clear()
    target = rings.resolve(ring)
    target.check_permission(KeyNeed.WRITE)
    target.clear()


def _process_queued_keys(t: Txn) -> None:
    """ima_process_queued_keys, when the first custom policy is in place. (The kernel
    also drops the queue unmeasured 5 minutes after boot; not simulated.)"""
    if t.boot.process_keys:
        return
    queued = t.boot.queued_keys
    t.boot = replace(t.boot, process_keys=True, queued_keys=())
    for q in queued:
        measure_buffer(t, Hook.KEY_CHECK, q.keyring, q.der, keyring=q.keyring)


# -- boot and policy -----------------------------------------------------------------------
def boot(t: Txn, builtin_initramfs: bytes = b"", initrd: bytes | None = None) -> None:
    """kernel_init_freeable's integrity steps in the kernel's order for its version
    (:func:`imasim.kinit.init_steps`): populate_rootfs (``builtin_initramfs``, then
    ``initrd``), IMA init, prepare_namespace, integrity_load_keys, load_default_modules;
    what each did goes to ``BootState.boot_log``. An unknown ima_policy= or ima_template=
    refuses the boot before anything is measured."""
    if t.boot.booted:
        raise SimulationError("the machine is already booted")
    cfg = t.kernel.config
    cmdline = t.boot.boot_options.cmdline
    log: list[str] = []
    initramfs_root = False  # rootfs holds the rdinit program: no prepare_namespace
    for step in init_steps(cfg.version):
        if step is InitStep.POPULATE_ROOTFS:
            log += populate_rootfs(t, builtin_initramfs, initrd)
        elif step is InitStep.DEVICE_INITCALLS:
            log += request_modules(t, cfg.initcall_modules, "device_initcall",
                                   initramfs_root=True, ima_initialised=False)
        elif step is InitStep.INIT_IMA:
            _init_ima(t)
        elif step is InitStep.PREPARE_NAMESPACE:
            init = t.files.get(rdinit(cmdline))
            initramfs_root = init is not None and init.fs.initramfs
            log.append(f"prepare_namespace: skipped, rootfs has {rdinit(cmdline)}"
                       if initramfs_root else "prepare_namespace: root file system mounted")
        elif step is InitStep.INTEGRITY_LOAD_KEYS:
            log += integrity_load_keys(t, initramfs_root=initramfs_root)
        else:
            log += request_modules(t, default_modules(cmdline, cfg.version),
                                   "load_default_modules", initramfs_root=initramfs_root)
    t.boot = replace(t.boot, boot_log=tuple(log))


def _init_ima(t: Txn) -> None:
    """init_ima: the boot_aggregate, the builtin keys (queued), then the boot policy."""
    k = t.kernel
    opts = t.boot.boot_options
    desc = lookup_template(k.template(opts))
    policy = builtin_policy(list(opts.ima_policy), kernel_version=k.config.version,
                            arch_rules=k.arch_rules(),
                            signed_init=k.config.ima_appraise_signed_init)
    _add_boot_aggregate(t, desc.name)
    t.boot = replace(t.boot, booted=True, queued_keys=(), process_keys=False)
    for key in k.keyrings.builtin.keys:  # load_system_certificate_list
        key_check(t, k.keyrings.builtin.name, key)
    t.boot = replace(t.boot, policy=policy, policy_written=False)


def populate_rootfs(t: Txn, builtin: bytes, initrd: bytes | None) -> list[str]:
    """init/initramfs.c do_populate_rootfs: unpack the initramfs built into the kernel
    (a bad one panics: the boot is refused), then the external initrd over it, unless
    CONFIG_INITRAMFS_FORCE; a file of the same name is replaced (do_name opens it with
    O_TRUNC). A bad external initrd is logged and skipped whole (the kernel keeps what
    it unpacked before the error)."""
    fs = Filesystem(*TMPFS, initramfs=True)
    log = []
    if builtin:
        try:
            add_members(t, parse_cpio(builtin), fs)
        except ParseError as exc:
            raise SimulationError(f"Kernel panic: Failed to decompress INTERNAL initramfs: "
                                  f"{exc}") from None
        log.append("populate_rootfs: unpacked the built-in initramfs")
    if initrd is None:
        return log
    if t.kernel.config.initramfs_force:
        return [*log, "populate_rootfs: external initrd ignored (CONFIG_INITRAMFS_FORCE)"]
    try:
        members = parse_cpio(initrd)
    except ParseError as exc:
        return [*log, f"Initramfs unpacking failed: {exc}"]
    add_members(t, members, fs)
    return [*log, "populate_rootfs: Unpacking initramfs..."]


def request_modules(t: Txn, names: Sequence[str], caller: str, *, initramfs_root: bool,
                    ima_initialised: bool = True) -> list[str]:
    """request_module for each of ``names`` (by ``caller``: load_default_modules, or a
    device_initcall before IMA is up). The kernel runs CONFIG_MODPROBE_PATH
    (/sbin/modprobe: BPRM_CHECK) which finds the module (:func:`imasim.kinit.modprobe_path`)
    and loads it (finit_module: MODULE_CHECK, then the module signature), on the root the
    kernel has now (only the initramfs before prepare_namespace, or when it kept it). A
    refusal is logged and the boot goes on."""
    log: list[str] = []
    if not names:  # the usual boot: no file list to build
        return log
    visible = [p for p, f in t.files.items() if f.fs.initramfs or not initramfs_root]
    for name in names:
        where = f"{caller}: request_module({name})"
        path = modprobe_path(name, visible)
        if MODPROBE not in visible or path is None:
            log.append(f"{where}: {MODPROBE} not found (-ENOENT)" if MODPROBE not in visible
                       else f"{where}: modprobe: module {name} not found")
            continue
        if ima_initialised:
            r = process(t, MODPROBE, Hook.BPRM_CHECK, MAY_EXEC)
            if not r.allowed:
                log.append(f"{where}: {MODPROBE} refused: {r.reason}")
                continue
        r = load_module(t, path, ima_initialised=ima_initialised)
        log.append(f"{where}: {path} " + ("loaded" if r.allowed else f"refused: {r.reason}"))
    return log


def _add_boot_aggregate(t: Txn, template: str) -> None:
    k = t.kernel
    banks = k.tpm.banks
    pcrs = {a: {i: t.pcr(a, i) for i in range(10)} for a in banks}
    version = k.config.version
    agg = boot_aggregate(pcrs, banks=banks, ima_hash=k.ima_hash(t.boot.boot_options),
                         kernel_version=version)
    desc = lookup_template(template)
    values: dict[str, FieldValue] = {"n-ng": "boot_aggregate", "n": "boot_aggregate"}
    if "d" in desc.field_ids:
        sha1 = boot_aggregate(pcrs, banks=[HashAlgorithm.SHA1], kernel_version=version) \
            if HashAlgorithm.SHA1 in banks else None
        values["d"] = sha1.digest if sha1 else bytes(20)
    values["d-ng"] = DigestWithAlgo(agg.alg.kernel_name, agg.digest)
    values["d-ngv2"] = DigestWithAlgo(agg.alg.kernel_name, agg.digest, "ima")
    store(t, _make_entry(desc.name, values, k.config.ima_measure_pcr_idx),
          check_duplicate=False)


def load_policy(t: Txn, text: str) -> None:
    """Write a custom policy to securityfs: all rules or none; the first replaces the
    built-in rules, later ones append (CONFIG_IMA_WRITE_POLICY) or are refused."""
    k = t.kernel
    if t.boot.policy_written and not k.config.ima_write_policy:
        t.audit_msg(AUDIT_INTEGRITY_STATUS, "policy_update", "failed", "policy", 0, keep=True)
        raise PolicyError("the policy file is gone (CONFIG_IMA_WRITE_POLICY is not set)")
    try:
        new = parse_ima_policy(text, appraise_modsig=k.config.ima_appraise_modsig)
    except PolicyError:
        t.audit_msg(AUDIT_INTEGRITY_STATUS, "policy_update", "failed", "policy", 0, keep=True)
        raise
    if not t.boot.policy_written and k.arch_policy_active:
        # the arch rules were added with IMA_CUSTOM_POLICY: they head the custom policy
        new = ImaPolicy(parse_ima_policy(k.arch_rules()).rules + new.rules, new.name)
    policy = (t.boot.policy + new) if t.boot.policy_written else new
    t.boot = replace(t.boot, policy=policy, policy_written=True)
    _process_queued_keys(t)
    t.audit_msg(AUDIT_INTEGRITY_STATUS, "policy_update", "completed", "policy", 1)


# -- kexec ---------------------------------------------------------------------------------
def kexec_load(t: Txn, kernel: str | None, initrd: str | None, cmdline: str,
               syscall: str = "kexec_file_load") -> AccessResult:
    """kexec_file_load: measure/appraise the image and initramfs, check the image's
    signature (KEXEC_SIG), measure the command line, and (kernels that copy at load)
    copy the measurement list into the kexec buffer now. ``syscall="kexec_load"``: the
    classic kexec_load(2) (:func:`kexec_load_segments`). No ``kernel``: ``kexec -u``
    (:func:`kexec_unload`)."""
    if syscall not in ("kexec_file_load", "kexec_load"):
        raise UsageError(f"unknown kexec syscall {syscall!r} "
                         "(kexec_file_load or kexec_load)")
    if kernel is None:
        return kexec_unload(t, syscall)
    if syscall == "kexec_load":
        return kexec_load_segments(t, kernel, initrd, cmdline)
    r = process(t, kernel, Hook.KEXEC_KERNEL_CHECK, MAY_READ)
    if not r.allowed:
        return r
    k = t.kernel
    cfg = k.config
    if cfg.kexec_sig:
        rings = [k.keyrings.secondary]
        if cfg.integrity_platform_keyring:
            rings.append(k.keyrings.platform)
        appraise_enforced = t.boot.boot_options.ima_appraise == "enforce" and cfg.ima_appraise
        refusal = kexec_signature_refusal(
            t.file(kernel).content, arch=cfg.arch, keyrings=rings,
            blacklist=k.keyrings.blacklist, sig_enforced=k.kexec_sig_enforced,
            lockdown=k.lockdown, ima_appraises_signature=appraise_enforced and
            t.boot.policy.appraise_signature(Hook.KEXEC_KERNEL_CHECK))
        if refusal is not None:
            return AccessResult(False, r.measured, r.appraised, refusal)
    if initrd is not None:
        ri = process(t, initrd, Hook.KEXEC_INITRAMFS_CHECK, MAY_READ)
        if not ri.allowed:
            return ri
    if cmdline:
        measure_buffer(t, Hook.KEXEC_CMDLINE, "kexec-cmdline", cmdline.encode())
    carried = None
    if cfg.ima_kexec and not cfg.copies_list_at_execute:
        carried = pack_kexec_buffer(t.entries)
    t.boot = replace(t.boot, kexec=_kexec_image(t, kernel, initrd, cmdline, carried))
    return AccessResult(True, r.measured, r.appraised)


def _kexec_image(t: Txn, kernel: str, initrd: str | None, cmdline: str,
                 carried: bytes | None, ima_buffer: bool = True) -> KexecImage:
    """The loaded image: the bytes the next kernel unpacks (its built-in initramfs, the
    initrd) as read now; an image that is not imasim's stand-in PE has no built-in one."""
    try:
        builtin = embedded_initramfs(t.file(kernel).content)
    except ParseError:
        builtin = b""
    return KexecImage(kernel, initrd, cmdline, carried, ima_buffer, builtin,
                      None if initrd is None else t.file(initrd).content)


def kexec_load_segments(t: Txn, kernel: str, initrd: str | None, cmdline: str
                        ) -> AccessResult:
    """The classic kexec_load(2): user space (kexec-tools) reads ``kernel`` and ``initrd``
    and hands the kernel memory segments, so nothing can be measured, appraised or
    signature-checked. kexec_load_check asks the LSMs first (security_kernel_load_data,
    LOADING_KEXEC_IMAGE): IPE (ipe_kernel_load_data) evaluates op=KEXEC_IMAGE with no
    file, so ``boot_verified=TRUE``, a digest or a ``*_signature=TRUE`` never matches and
    every ``=FALSE`` property does; a denial is EACCES with a 1420 record
    (``ipe_hook=KERNEL_LOAD ... path=? dev=? ino=?``), permissive mode only audits.
    Then IMA (ima_load_data) refuses with EACCES when the kernel has KEXEC_SIG and booted
    with secure boot, or when appraisal is enforced and the policy appraises
    KEXEC_KERNEL_CHECK (IMA_APPRAISE_KEXEC); then lockdown (LOCKDOWN_KEXEC) refuses with
    EPERM. Otherwise the image loads unmeasured and without an IMA buffer: even with
    CONFIG_IMA_KEXEC the next kernel starts a new list."""
    if not t.boot.booted:
        raise SimulationError("boot the machine first")
    for path in (kernel, initrd):
        if path is not None:
            t.file(path)  # kexec-tools reads it: a missing file is its error
    refused = _kexec_load_check(t)
    if refused is not None:
        return refused
    t.boot = replace(t.boot, kexec=_kexec_image(t, kernel, initrd, cmdline, None, False))
    return AccessResult(True)


def _kexec_load_check(t: Txn) -> AccessResult | None:
    """kexec_load_check (kernel/kexec.c): security_kernel_load_data(LOADING_KEXEC_IMAGE)
    (IPE, then IMA), then security_locked_down(LOCKDOWN_KEXEC); None when all agree."""
    if not t.boot.booted:
        raise SimulationError("boot the machine first")
    k = t.kernel
    if k.ipe is not None:  # IPE's kernel_load_data runs before IMA's (LSM order)
        d = k.ipe.evaluate(Op.KEXEC_IMAGE, "KERNEL_LOAD", None, comm="kexec")
        if not d.allowed:
            return AccessResult(False, reason=f"IPE: {d.rule} (EACCES)")
    cfg = k.config
    enforce = t.boot.boot_options.ima_appraise == "enforce" and cfg.ima_appraise
    appraises_kexec = any(r.action is Action.APPRAISE and r.func is Hook.KEXEC_KERNEL_CHECK
                          for r in t.boot.policy.rules)
    if (cfg.kexec_sig and k.secure_boot) or (enforce and appraises_kexec):
        return AccessResult(False, reason="impossible to appraise a kernel image without a "
                            "file descriptor; try using kexec_file_load syscall (EACCES)")
    if k.lockdown != "none":
        return AccessResult(False, reason=f"Lockdown: kexec of unsigned images is "
                            f"restricted; see man kernel_lockdown.7 ({k.lockdown}) (EPERM)")
    return None


def kexec_unload(t: Txn, syscall: str) -> AccessResult:
    """``kexec -u``: through kexec_file_load (KEXEC_FILE_UNLOAD, what ``kexec -s -u``
    and kexec-tools' default use) no LSM is asked; through the classic kexec_load(2)
    with no segments (``kexec -c -u``) kexec_load_check runs first, so what refuses a
    classic load (IPE's KEXEC_IMAGE rules, IMA under secure boot, lockdown) refuses the
    unload too, as Debian's 6.12 did with IPE (tests/vectors/realkernel/
    k612-ipe-kexec-load). Unloading when nothing is loaded succeeds."""
    if syscall == "kexec_load":
        refused = _kexec_load_check(t)
        if refused is not None:
            return refused
    elif not t.boot.booted:
        raise SimulationError("boot the machine first")
    t.boot = replace(t.boot, kexec=None)
    return AccessResult(True)


def kexec_execute(t: Txn, cmdline: str | None) -> None:
    """kexec -e: the TPM keeps its PCRs; the new kernel (a new boot generation) restores
    the carried list (CONFIG_IMA_KEXEC) and boots on a fresh rootfs (the old kernel's
    tmpfs/ramfs files are gone; the disk stays). A command line the new kernel refuses
    refuses the whole kexec: the image stays loaded and nothing is recorded."""
    image = t.boot.kexec
    if image is None:
        raise SimulationError("no kexec image loaded")
    cfg = t.kernel.config
    old = t.boot
    new_cmdline = cmdline if cmdline is not None else image.cmdline
    opts = BootOptions.from_cmdline(new_cmdline) if new_cmdline else old.boot_options
    carries = cfg.ima_kexec and image.ima_buffer
    if carries:
        buf = image.carried if image.carried is not None else pack_kexec_buffer(old.entries)
        restored = tuple(restore_kexec_buffer(buf).entries)
    else:
        restored = ()
    record = KexecRecord(old.generation,
                         KexecCopy.NOT_CARRIED if not carries else
                         KexecCopy.LOAD if image.carried is not None else KexecCopy.EXECUTE,
                         len(restored), tuple(old.entries[len(restored):]))
    t.state = replace(t.state, kexec_log=(*t.state.kexec_log, record))
    t.new_boot(BootState(generation=old.generation + 1, boot_options=opts, entries=restored))
    t.drop_volatile_files()  # a fresh rootfs, which populate_rootfs fills
    boot(t, image.builtin_initramfs, image.initrd_data)


def measure_critical_data(t: Txn, label: str, event_name: str, data: bytes) -> bool:
    """ima_measure_critical_data: CRITICAL_DATA rules with ``label=``."""
    return measure_buffer(t, Hook.CRITICAL_DATA, event_name, data, label=label)


def load_x509_file(t: Txn, path: str, ring: Keyring) -> AccessResult:
    """integrity_load_x509 (CONFIG_IMA_X509_PATH/EVM_X509_PATH): the kernel reads the
    certificate file (READING_X509_CERTIFICATE: IPE's X509_CERT, IMA's FILE_CHECK rules)
    and adds it to the keyring, whose restriction decides."""
    if not t.boot.booted:
        raise SimulationError("boot the machine first")
    f = t.file(path)
    ipe = t.kernel.ipe
    if ipe is not None:
        d = ipe.evaluate(Op.X509_CERT, "KERNEL_READ", ipe_properties(f), path=path,
                         dev=f.fs.s_id, ino=f.ino)
        if not d.allowed:
            return AccessResult(False, reason=f"IPE: {d.rule}")
    r = process(t, path, Hook.FILE_CHECK, MAY_READ)
    if not r.allowed:
        return r
    add_key(t, ring, Key.from_certificate(f.content))
    return r


def ipe_load_policy_file(t: Txn, path: str, update: str | None, activate: bool) -> None:
    """``cat FILE > /sys/kernel/security/ipe/new_policy`` (or policies/<update>/update);
    the file's properties matter only to the unsigned-policy proposal (not mainline)."""
    ipe = t.kernel.ipe
    if ipe is None:
        raise SimulationError("IPE is not enabled")
    f = t.file(path)
    source = ipe_properties(f)
    p = ipe.update_policy(update, f.content, source=source) if update is not None else \
        ipe.new_policy(f.content, source=source)
    if activate:
        ipe.activate(p.name)


# -- files ---------------------------------------------------------------------------------
def add_file(t: Txn, path: str, content: bytes, *, uid: int = 0, gid: int = 0,
             mode: int = 0o100755, xattrs: Mapping[str, bytes] | None = None,
             fs: Filesystem | tuple[str, int] = EXT4) -> None:
    """Create a file, or replace one (same inode, i_version + 1)."""
    fsys = fs if isinstance(fs, Filesystem) else Filesystem(*fs)
    old = t.files.get(path)
    ino = old.ino if old is not None else t.state.next_ino
    if old is None:
        t.state = replace(t.state, next_ino=t.state.next_ino + 1)
    t.put_file(SimFile(path=path, content=bytes(content), fs=fsys, uid=uid, gid=gid,
                       mode=mode, xattrs=dict(xattrs or {}), ino=ino,
                       i_version=(old.i_version + 1) if old else 0))


def add_members(t: Txn, members: Sequence[ArchiveMember], fs: Filesystem | tuple[str, int]
                ) -> list[str]:
    """Regular files of an unpacked archive, with their ``security.*`` xattrs."""
    added = []
    for m in members:
        if not m.is_file:
            continue
        path = "/" + m.path
        add_file(t, path, m.content, uid=m.uid, gid=m.gid, mode=m.mode, fs=fs,
                 xattrs={k: v for k, v in m.xattrs if k.startswith("security.")})
        added.append(path)
    return added


def mount_dm_verity(t: Txn, files: Mapping[str, bytes], salt: bytes, signature: bytes | None,
                    name: str) -> DmVerity:
    """A read-only file system on dm-verity holding ``files`` (see Machine.mount_dm_verity)."""
    image = b"".join(c + bytes(-len(c) % 4096) for c in files.values()) or bytes(4096)
    root = dm_verity_root_hash(image, salt=salt)
    if signature is not None:
        verify_pkcs7(signature, root.hex().encode(), keyring=t.kernel.keyrings.secondary,
                     usage=Usage.UNSPECIFIED_SIGNATURE)
    verity = DmVerity("sha256", root, signature is not None)
    fs = Filesystem(name, EXT4[1], str(uuid.UUID(bytes=root[:16])), verity=verity)
    for path, content in files.items():
        add_file(t, path, content, fs=fs, mode=0o100755)
    return verity


def enable_fsverity(t: Txn, path: str, signature: bytes | None) -> FsVerity:
    """FS_IOC_ENABLE_VERITY (sha256, 4096-byte blocks): a built-in signature must verify
    against the .fs-verity keyring or the ioctl fails and nothing changes."""
    f = t.file(path)
    alg, digest = fsverity_digest(f.content)
    if signature is not None:
        verify_fsverity_signature(f.content, signature, t.kernel.fsverity_keyring)
    verity = FsVerity(alg, digest, signature is not None)
    t.put_file(replace(f, fsverity=verity))
    return verity


def make_ipe(kernel: Kernel, cmdline: str, boot_policy: str | None, enforce: bool,
             unsigned_policy_by_rule: bool) -> Ipe:
    """IPE as the kernel builds it: policies verified against the secondary keyring (or
    the builtin one) and retried with the platform keyring, per config; ipe.enforce= and
    ipe.success_audit= from the command line."""
    cfg, rings = kernel.config, kernel.keyrings
    args = dict(w.split("=", 1) for w in cmdline.split() if "=" in w)
    return Ipe(
        keyring=rings.secondary if cfg.ipe_policy_sig_secondary_keyring else rings.builtin,
        platform_keyring=rings.platform if cfg.ipe_policy_sig_platform_keyring else None,
        boot_policy=boot_policy, kernel_version=cfg.version,
        enforce=enforce and args.get("ipe.enforce", "1") not in ("0", "n", "N"),
        success_audit=args.get("ipe.success_audit", "0") in ("1", "y", "Y"),
        unsigned_policy_by_rule=unsigned_policy_by_rule)


def snapshot(kernel: Kernel, state: MachineState) -> MachineSnapshot:
    """Everything that decides what the machine does next, as one value."""
    tpm, rings, ipe = kernel.tpm, kernel.keyrings, kernel.ipe
    return MachineSnapshot(
        state, tuple((a, tpm.pcr_values(a)) for a in tpm.banks),
        (tpm.reset_count, tpm.restart_count),
        tuple((r.name, r.restriction_name, tuple(key.ids[0] or b"" for key in r.keys),
               tuple(x.name for x in r.links))
              for r in (rings.builtin, rings.secondary, rings.platform, rings.machine,
                        rings.ima, rings.evm, kernel.fsverity_keyring)),
        tuple(rings.blacklist.entries()),
        None if ipe is None else (tuple(sorted(ipe.policies)), ipe.active, ipe.enforce))


def read_file(t: Txn, path: str, uid: int) -> AccessResult:
    """open for read and close again."""
    r = open_file(t, path, MAY_READ, uid=uid)
    if r.allowed:
        close_file(t, path, MAY_READ)
    return r


def evm_init(t: Txn, x509: bool, hmac_key: bytes | None) -> None:
    """Write to <securityfs>/evm: EVM_INIT_X509 (keys in the EVM keyring) and/or
    EVM_INIT_HMAC with ``hmac_key`` (the evm-key's payload)."""
    b = t.boot
    key = bytes(hmac_key) if hmac_key is not None else b.evm_hmac_key
    t.boot = replace(b, evm_x509=b.evm_x509 or x509, evm_hmac_key=key)


def build_kernel(config: KernelConfig, tpm: SoftTpm, builtin_keys: tuple[Key, ...],
                 clock: Clock, secure_boot: bool, cmdline: str,
                 ipe_args: tuple[str | None, bool, bool] | None) -> Kernel:
    """The objects a kernel builds as it boots: its keyrings (with the builtin keys),
    an empty .fs-verity keyring, and IPE when it is an LSM (``ipe_args``: the boot
    policy, enforce, the unsigned-policy proposal)."""
    kern = Kernel(config, tpm, SystemKeyrings.build(config, builtin_keys),
                  Keyring(".fs-verity"), None, clock, secure_boot)
    return kern if ipe_args is None else replace(kern, ipe=make_ipe(kern, cmdline, *ipe_args))


def powered_on(state: MachineState, cmdline: str) -> MachineState:
    """The state after a power cycle: a new first boot generation with the bootloader's
    command line; the files on disk stay, those on tmpfs/ramfs/proc are gone (and new
    inode numbers follow the disk's again)."""
    files = {p: f for p, f in state.files.items() if f.fs.magic not in VOLATILE_MAGICS}
    return MachineState(boot=BootState(boot_options=BootOptions.from_cmdline(cmdline)),
                        files=MappingProxyType(files),
                        next_ino=max((f.ino for f in files.values()), default=0) + 1,
                        context=state.context)


def proc_keys(kernel: Kernel) -> tuple[ProcKey, ...]:
    """``/proc/keys`` of the running kernel (imasim.keys.layout.proc_keys)."""
    rings = {**kernel.keyrings.named(), ".fs-verity": kernel.fsverity_keyring}
    bl = kernel.keyrings.blacklist
    user = bl.added_by_user()
    return layout_proc_keys(kernel.config, rings, user_blacklist=user,
                            blacklist=[e for e in bl.entries() if e not in user])
