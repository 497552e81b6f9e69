"""cpio and tar: adversarial inputs of 1-4 MB within 1 s and 100 MB per MB, and one
decompressed-size budget shared by every gzip member of an initramfs."""

from __future__ import annotations

import gzip
import zlib

import pytest

from budget import MB, within_budget
from imasim.archive import (
    ArchiveMember,
    _header,
    _pad,
    _record,
    parse_cpio,
    parse_tar,
    write_cpio,
)
from imasim.errors import LimitExceededError
from imasim.limits import Limits


def _zero_file_member(name: str, size: int) -> bytes:
    """A gzip member holding a cpio archive of one ``size``-byte file of zeros."""
    fields = (721, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    head += bytes(-len(head) % 4)
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [c.compress(head)]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(c.compress(chunk))
    out.append(c.compress(bytes(size & ((1 << 20) - 1)) + bytes(-size % 4) + write_cpio([])))
    out.append(c.flush())
    return b"".join(out)


def test_one_budget_across_every_gzip_member() -> None:
    # 40 members of 16 MiB each: each alone fits a 64 MiB budget, together they do not
    member = _zero_file_member("f", 16 << 20)
    blob = b"".join(member.replace(b"f\0", bytes([0x61 + i % 26]) + b"\0", 0)
                    for i in range(40))
    limits = Limits(max_archive_size=64 << 20)
    spent = within_budget(lambda: parse_cpio(blob, limits=limits), 1 * MB,
                          mb_per_mb=(64 + 16 + 8))  # the budget, one file being read, slack
    assert isinstance(spent.error, LimitExceededError)
    assert spent.error.field == "filesize"  # refused before inflating the 5th file


def test_many_small_gzip_members() -> None:
    # 2 MB of gzip members of one tiny file each: linear, nothing kept per member
    one = gzip.compress(write_cpio([ArchiveMember("init", b"x" * 20, 0o100755)]), mtime=0)
    blob = one * (2 * MB // len(one))
    spent = within_budget(lambda: parse_cpio(blob), len(blob), memory=False)
    assert spent.error is None
    part = blob[:len(one) * 2000]  # tracemalloc makes the 26,000 members slow
    within_budget(lambda: parse_cpio(part), len(part), mb_per_mb=5)


def test_a_member_is_inflated_once_not_copied() -> None:
    # peak ~ the file itself (24 MiB), not the inflated stream plus a copy of the file
    blob = _zero_file_member("big", 24 << 20)
    spent = within_budget(lambda: parse_cpio(blob), 1 * MB, seconds_per_mb=5,
                          mb_per_mb=24 + 6)
    assert spent.error is None


def _one_file_after(records: bytes, kind: bytes = b"x") -> bytes:
    """A pax header of ``kind`` holding ``records``, then an empty file "f", then the end."""
    return (_header(b"PaxHeaders/f", 0o644, 0, 0, len(records), 0, kind) + _pad(records)
            + _header(b"f", 0o644, 0, 0, 0, 0, b"0") + bytes(1024))


def test_long_pax_record() -> None:
    blob = _one_file_after(_record("SCHILY.xattr.user.big", b"v" * (3 * MB)))
    spent = within_budget(lambda: parse_tar(blob), len(blob))
    assert spent.error is None


@pytest.mark.parametrize("kind", [b"x", b"g"])
def test_many_pax_records_are_refused(kind: bytes) -> None:
    recs = b"".join(_record(f"SCHILY.xattr.user.{i}", b"") for i in range(100_000))
    blob = _one_file_after(recs, kind)
    spent = within_budget(lambda: parse_tar(blob), len(blob))
    assert isinstance(spent.error, LimitExceededError) and spent.error.field == "pax"


def test_global_xattrs_times_many_members() -> None:
    # a global header with the most records, then 1 MB of members that each add one:
    # every member's xattrs are the merge, so this is the costliest shape
    n = Limits().max_pax_records - 1
    recs = b"".join(_record(f"SCHILY.xattr.user.k{i}", b"v") for i in range(n))
    glob = _header(b"g", 0o644, 0, 0, len(recs), 0, b"g") + _pad(recs)
    loc = _record("SCHILY.xattr.user.x", b"y")
    one = (_header(b"PaxHeaders/f", 0o644, 0, 0, len(loc), 0, b"x") + _pad(loc)
           + _header(b"f", 0o644, 0, 0, 0, 0, b"0"))
    blob = glob + one * (MB // len(one)) + bytes(1024)
    spent = within_budget(lambda: parse_tar(blob), len(blob))
    assert spent.error is None


def test_huge_pax_number_is_refused_quickly() -> None:
    blob = _one_file_after(_record("size", b"9" * (2 * MB)))
    spent = within_budget(lambda: parse_tar(blob), len(blob))
    assert isinstance(spent.error, LimitExceededError)
