"""The simulated machine's state as immutable values: one :class:`BootState` per boot
generation, inside a :class:`MachineState` that also holds what outlives a boot (files on
disk, the kexec history since the last power cycle).

Every transition of :class:`~imasim.machine.Machine` computes the next
:class:`MachineState` from the current one and swaps it in only when nothing failed, so
a refused operation leaves the state equal to what it was:

>>> from imasim.machine import Machine
>>> m = Machine.create(cmdline="ima_policy=tcb")
>>> before = m.state
>>> m.boot()
>>> m.state.boot.booted, before.boot.booted, len(m.state.boot.entries)
(True, False, 1)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from .algorithms import HashAlgorithm
from .ima.appraise import Cause
from .ima.entry import MeasurementEntry
from .ima.policy import ImaPolicy
from .kconfig import BootOptions
from .vfs import SimFile

__all__ = [
    "AccessResult",
    "AuditRecord",
    "BootState",
    "KexecCopy",
    "KexecImage",
    "KexecRecord",
    "MachineSnapshot",
    "MachineState",
    "QueuedKey",
]

_EMPTY: Final[Mapping[object, object]] = MappingProxyType({})


def _empty() -> Mapping[object, object]:
    return _EMPTY


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
    """The outcome of a hook: allowed or denied (-EACCES/-EKEYREJECTED), and why
    (``reason``; ``cause`` when appraisal decided)."""

    allowed: bool
    measured: bool = False
    appraised: bool = False
    reason: str = ""
    cause: Cause | None = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class KexecImage:
    """A kernel loaded by kexec_file_load, waiting for ``kexec -e``: its paths, the new
    command line, and the measurement list copied into its buffer at load time (None
    when the list is copied at execute, or not carried at all). ``ima_buffer`` is False
    for an image loaded by the classic kexec_load(2): only kexec_file_load adds the IMA
    buffer (ima_add_kexec_buffer), so the next kernel starts a new list. The new kernel
    unpacks ``builtin_initramfs`` and then ``initrd_data`` (populate_rootfs)."""

    kernel: str
    initrd: str | None
    cmdline: str
    carried: bytes | None
    ima_buffer: bool = True
    #: the cpio built into the kernel image (CONFIG_INITRAMFS_SOURCE), read at load
    builtin_initramfs: bytes = b""
    #: the external initrd's bytes as read at load (None: no initrd)
    initrd_data: bytes | None = None


class KexecCopy(enum.StrEnum):
    """When a kexec copied the measurement list into the new kernel's buffer: at
    kexec_file_load (kernels up to 6.15: what is measured after it is lost), at execute
    (ima_update_kexec_buffer), or not at all (no CONFIG_IMA_KEXEC, or an image loaded by
    the classic kexec_load, which has no IMA buffer)."""

    LOAD = "load"
    EXECUTE = "execute"
    NOT_CARRIED = "not carried"


@dataclass(frozen=True, slots=True)
class KexecRecord:
    """What one kexec did to the measurement list: how many entries the new kernel got,
    and the ones it lost (measured into the TPM after a copy at load, or all of them
    without CONFIG_IMA_KEXEC)."""

    generation: int  #: the kernel generation that executed the kexec (0 = first boot)
    copied_at: KexecCopy  #: when the list was copied into the kexec buffer
    carried: int
    lost: tuple[MeasurementEntry, ...]


@dataclass(frozen=True, slots=True)
class QueuedKey:
    """A key IMA queued before a custom policy was loaded
    (CONFIG_IMA_QUEUE_EARLY_BOOT_KEYS): the keyring it went into and its DER payload."""

    keyring: str
    der: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BootState:
    """Everything one running kernel holds about integrity; a kexec or a power cycle
    starts a new one. ``htable`` maps (template digest, PCR) to the index of the entry
    that has it (ima_htable: what a duplicate is checked against). ``measured`` maps
    (inode, PCR) to the i_version last measured (the iint's IMA_MEASURED); ``open_files``
    maps an inode to its (readers, writers)."""

    generation: int = 0
    booted: bool = False
    boot_options: BootOptions = field(default_factory=BootOptions)
    entries: tuple[MeasurementEntry, ...] = ()
    htable: Mapping[tuple[bytes, int], int] = field(default_factory=_empty)  # type: ignore[arg-type]
    measured: Mapping[tuple[int, int], int] = field(default_factory=_empty)  # type: ignore[arg-type]
    open_files: Mapping[int, tuple[int, int]] = field(default_factory=_empty)  # type: ignore[arg-type]
    violations: int = 0
    loaded_modules: tuple[str, ...] = ()
    tainted: bool = False
    kexec: KexecImage | None = None
    policy: ImaPolicy = field(default_factory=ImaPolicy)
    policy_written: bool = False
    queued_keys: tuple[QueuedKey, ...] = ()
    process_keys: bool = False
    evm_x509: bool = False
    evm_hmac_key: bytes | None = None
    #: what each step of the boot did (imasim.kinit: populate_rootfs, prepare_namespace,
    #: integrity_load_keys, load_default_modules), as kernel log lines
    boot_log: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineState:
    """The running kernel's :class:`BootState` and what outlives it: the files (path ->
    :class:`~imasim.vfs.SimFile`), the next inode number, the kexecs since the last power
    cycle, and the LSM context of the simulated processes (``subj_*`` rules)."""

    boot: BootState
    files: Mapping[str, SimFile] = field(default_factory=_empty)  # type: ignore[arg-type]
    next_ino: int = 1
    kexec_log: tuple[KexecRecord, ...] = ()
    context: str | None = None


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
