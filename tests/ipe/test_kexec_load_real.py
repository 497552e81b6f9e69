"""IPE on the classic kexec_load(2), against Debian's 6.12 (tests/vectors/realkernel/
k612-ipe-kexec-load, notes.md there): the same policy, the same requests, the same 1420
records as the kernel wrote them (audit timestamps and pids aside)."""

from __future__ import annotations

import re
from pathlib import Path

from imasim.archive import ArchiveMember, write_cpio
from imasim.machine import Machine
from imasim.vfs import TMPFS

REAL = Path(__file__).parent.parent / "vectors" / "realkernel" / "k612-ipe-kexec-load"
_RECORD = re.compile(r"audit: type=(14\d\d) audit\([^)]*\): ?(.*)$")


def _real() -> dict[str, list[str]]:
    """dmesg's IPE records (1404, 1420) after each ``@@mark <step>``, pid set to 1."""
    steps: dict[str, list[str]] = {}
    current = None
    for line in (REAL / "stage1" / "dmesg.txt").read_text().splitlines():
        if "@@mark " in line:
            current = line.split("@@mark ", 1)[1].strip()
            steps[current] = []
        elif current is not None and (m := _RECORD.search(line)) and m.group(1) != "1422":
            text = re.sub(r"pid=\d+", "pid=1", m.group(2))
            steps[current].append(f"type={m.group(1)} {text}".rstrip())
    return steps


def test_imasim_writes_the_records_the_kernel_wrote() -> None:
    policy = (REAL / "ipe-policies" / "rk_test-v1.policy").read_text()
    m = Machine.create(preset="debian12-6.12")
    m.enable_ipe(policy)
    m.boot()
    kernel = b"the next kernel"
    m.unpack_initramfs(write_cpio([ArchiveMember("kexec/vmlinuz", kernel, 0o100644)]))
    m.add_file("/mnt/tmpfs/vmlinuz", kernel, fs=TMPFS)
    ipe = m.ipe
    assert ipe is not None
    ours: dict[str, list[str]] = {}

    def step(name: str, allowed: bool, path: str | None, syscall: str) -> None:
        n = len(ipe.audit)
        assert m.kexec_load(path, syscall=syscall).allowed is allowed, name
        ours[name] = [str(a) for a in ipe.audit[n:]]

    step("classic-initramfs", False, "/kexec/vmlinuz", "kexec_load")
    step("classic-unload", False, None, "kexec_load")
    step("file-initramfs", True, "/kexec/vmlinuz", "kexec_file_load")
    step("file-unload", True, None, "kexec_file_load")
    step("file-tmpfs", False, "/mnt/tmpfs/vmlinuz", "kexec_file_load")
    n = len(ipe.audit)
    ipe.set_enforce(False)
    toggle = [str(a) for a in ipe.audit[n:]]
    step("classic-permissive", True, "/kexec/vmlinuz", "kexec_load")
    real = _real()
    assert ours["classic-initramfs"] == real["classic-initramfs"]
    assert ours["file-initramfs"] == real["file-initramfs"] == []
    # the tmpfs copy: ino=2 on the real tmpfs, its own inode number here; then the
    # enforce switch's two 1404 records (the full one, then the empty one)
    assert [re.sub(r"ino=\d+", "ino=N", r) for r in ours["file-tmpfs"] + toggle] == \
        [re.sub(r"ino=\d+", "ino=N", r) for r in real["file-tmpfs"]]
    assert ours["classic-permissive"] == real["classic-permissive"]
    # the classic unload is refused the same way (kexec_load_check with no segments),
    # the file unload asks nobody
    assert ours["classic-unload"] == real["classic-unload"] == real["classic-initramfs"]
    assert ours["file-unload"] == real["file-unload"] == []
