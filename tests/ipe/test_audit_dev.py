"""IPE's 1420 record names the file's superblock (``dev=``), as the real kernel does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imasim.machine import Machine
from imasim.vfs import EXT4, TMPFS

REAL = Path(__file__).parent.parent / "vectors" / "realkernel" / "k612-ipe" / "stage1"
BOOT = ("policy_name=boot policy_version=0.0.1\nDEFAULT action=ALLOW\n"
        "DEFAULT op=EXECUTE action=DENY\n")


def _dev(record: str) -> str:
    m = re.search(r'dev="([^"]*)"', record)
    assert m is not None, record
    return m.group(1)


@pytest.mark.parametrize("fs, dev", [(TMPFS, "tmpfs"), (EXT4, "vda")])
def test_1420_names_the_superblock(fs: tuple[str, int], dev: str) -> None:
    m = Machine.create(preset="debian12-6.12")
    m.enable_ipe(BOOT)
    m.boot()
    m.add_file("/mnt/x/hello.sh", b"#!/bin/sh\n", fs=fs)
    assert not m.exec("/mnt/x/hello.sh").allowed
    assert m.ipe is not None
    assert _dev(str(m.ipe.audit[-1])) == dev


def test_the_real_kernel_wrote_tmpfs_for_a_tmpfs_file() -> None:
    real = [line for line in (REAL / "dmesg.txt").read_text().splitlines()
            if "type=1420" in line]
    assert real and {_dev(r) for r in real} == {"tmpfs"}
    assert all('path="/mnt/tmpfs/' in r for r in real)


def test_files_of_the_initramfs_and_of_dm_verity() -> None:
    m = Machine.create(preset="debian12-6.12")
    m.enable_ipe("policy_name=p policy_version=0.0.1\nDEFAULT action=DENY\n")
    m.boot()
    from imasim.archive import ArchiveMember, write_cpio

    m.unpack_initramfs(write_cpio([ArchiveMember("init", b"#!/bin/sh\n", 0o100755, 0, 0, 0,
                                                 ())]))
    m.mount_dm_verity({"/usr/bin/app": b"app"})
    for path, dev in (("/init", "rootfs"), ("/usr/bin/app", "dm-0")):
        assert not m.exec(path).allowed
        assert m.ipe is not None
        assert _dev(str(m.ipe.audit[-1])) == dev
