"""The simulated machine's files: immutable inodes on named file systems.

A :class:`SimFile` is a frozen record (content, owner, mode, security xattrs, inode
number, i_version, fs-verity state); a change to a file is a new record with the same
inode and a higher i_version, as the kernel's inode change counter sees it. The
:class:`~imasim.machine.Machine` keeps them in its state, a mapping from path to file.

>>> f = SimFile(path="/bin/true", content=b"true", fs=EXT4_FS)
>>> g = f.with_content(b"false")
>>> (g.ino, g.i_version), f.content
((0, 1), b'true')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Final

__all__ = [
    "EXT4",
    "EXT4_FS",
    "PROC",
    "RAMFS",
    "TMPFS",
    "VOLATILE_MAGICS",
    "DmVerity",
    "Filesystem",
    "FsVerity",
    "SimFile",
    "frozen_mapping",
]

#: (name, superblock magic) of the file systems the simulation knows
EXT4: Final = ("ext4", 0xEF53)
TMPFS: Final = ("tmpfs", 0x01021994)
RAMFS: Final = ("ramfs", 0x858458F6)
PROC: Final = ("proc", 0x9FA0)
#: file systems in memory: their files are gone after a power cycle
VOLATILE_MAGICS: Final = frozenset({TMPFS[1], RAMFS[1], PROC[1]})


def frozen_mapping(items: Mapping[str, bytes] | None = None) -> Mapping[str, bytes]:
    """A read-only copy of ``items`` (compares equal to a dict with the same items)."""
    return MappingProxyType(dict(items or {}))


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
    """A mounted file system: its name and superblock magic (what ``fsmagic=``/``fsname=``
    policy conditions match), its UUID (EVM's portable binding), whether IPE marked it as
    the unpacked initramfs (boot_verified), and the dm-verity device under it."""

    name: str
    magic: int
    uuid: str = "00000000-0000-0000-0000-000000000000"
    #: the superblock IPE marked when it unpacked the initramfs (boot_verified)
    initramfs: bool = False
    verity: DmVerity | None = None
    #: the block device under a disk file system (None: the device of EXT4 is ``vda``)
    device: str | None = None

    @property
    def s_id(self) -> str:
        """The superblock's ``s_id``, what audit records print as ``dev=``: the block
        device for a disk file system (``vda``, ``dm-0`` under dm-verity), ``rootfs`` for
        the unpacked initramfs, else the file system type's name (``tmpfs``, ``proc``)."""
        if self.device is not None:
            return self.device
        if self.initramfs:
            return "rootfs"
        if self.magic == EXT4[1]:
            return "dm-0" if self.verity is not None else "vda"
        return self.name


EXT4_FS: Final = Filesystem(*EXT4)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimFile:
    """A file: content, owner, mode, security xattrs (read-only), its file system, its
    inode number and change counter (i_version), and its fs-verity state."""

    path: str
    content: bytes
    fs: Filesystem
    uid: int = 0
    gid: int = 0
    mode: int = 0o100755
    xattrs: Mapping[str, bytes] = field(default_factory=frozen_mapping)
    ino: int = 0
    i_version: int = 0
    fsverity: FsVerity | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.xattrs, MappingProxyType):
            object.__setattr__(self, "xattrs", frozen_mapping(self.xattrs))

    def with_content(self, content: bytes) -> SimFile:
        """The file after a write: new content, i_version + 1."""
        return replace(self, content=bytes(content), i_version=self.i_version + 1)

    def with_xattr(self, name: str, value: bytes | None) -> SimFile:
        """The file after setxattr (``value``) or removexattr (None); the content and
        its i_version are unchanged (IMA measures content, not xattrs)."""
        xattrs = dict(self.xattrs)
        if value is None:
            xattrs.pop(name, None)
        else:
            xattrs[name] = bytes(value)
        return replace(self, xattrs=frozen_mapping(xattrs))
