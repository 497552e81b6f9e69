"""cpio newc and pax tar: round trips, the real cpio and GNU tar, bad input."""

from __future__ import annotations

import gzip
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.archive import ArchiveMember, parse_cpio, parse_tar, write_cpio, write_tar
from imasim.errors import LimitExceededError, ParseError, TruncatedError
from imasim.limits import Limits
from tools import need

SIG = b"\x03\x02\x04\x11\x22\x33\x44\x00\x04" + bytes(range(4))
MEMBERS = (
    ArchiveMember("etc", mode=0o40755),
    ArchiveMember("etc/init", b"#!/bin/sh\nexec /sbin/run\n", 0o100755, 0, 0, 1700000000,
                  (("security.ima", SIG),)),
    ArchiveMember("etc/link", b"init", 0o120777),
    ArchiveMember("etc/" + "deep/" * 30 + "long-name", b"long", 0o100600, 1000, 1000),
)


def _tree(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc/init").write_bytes(b"#!/bin/sh\n")
    (root / "etc/data").write_bytes(bytes(range(256)) * 9)
    (root / "etc/link").symlink_to("init")


def _set_xattr(path: Path) -> str:
    """security.ima when the machine lets root set it, else a user.* name (the pax
    encoding is the same)."""
    for name in ("security.ima", "user.imasim"):
        try:
            os.setxattr(path, name, SIG)
            return name
        except OSError:
            continue
    pytest.fail("cannot set any xattr here")


def test_round_trips() -> None:
    tar = parse_tar(write_tar(MEMBERS))
    assert tar == MEMBERS
    cpio = parse_cpio(write_cpio(MEMBERS))
    assert [(m.path, m.content, m.mode) for m in cpio] == \
        [(m.path, m.content, m.mode) for m in MEMBERS]
    assert all(m.xattrs == () for m in cpio)


def test_python_tarfile_reads_the_pax_xattrs(tmp_path: Path) -> None:
    with tarfile.open(fileobj=__import__("io").BytesIO(write_tar(MEMBERS))) as tf:
        init = tf.getmember("etc/init")
        assert init.pax_headers["SCHILY.xattr.security.ima"].encode(
            "utf-8", "surrogateescape") == SIG
        assert tf.getmember("etc/" + "deep/" * 30 + "long-name").uid == 1000


@pytest.mark.interop
def test_gnu_cpio_archives_parse_and_ours_extract(tmp_path: Path) -> None:
    cpio = need("cpio")
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    names = "etc\netc/init\netc/data\netc/link\n"
    made = subprocess.run([cpio, "-o", "-H", "newc"], input=names.encode(), cwd=src,
                          capture_output=True, check=True).stdout
    got = {m.path: m for m in parse_cpio(made)}
    assert got["etc/data"].content == (src / "etc/data").read_bytes()
    assert got["etc/link"].is_symlink and got["etc/link"].content == b"init"
    assert got["etc"].is_dir
    # ours, extracted by cpio -i
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([cpio, "-idm", "--quiet"], input=write_cpio(MEMBERS[:3]), cwd=out,
                   check=True, capture_output=True)
    assert (out / "etc/init").read_bytes() == MEMBERS[1].content
    assert os.readlink(out / "etc/link") == "init"


@pytest.mark.interop
def test_gnu_tar_xattrs_both_ways(tmp_path: Path) -> None:
    tar = need("tar")
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    name = _set_xattr(src / "etc/init")
    archive = tmp_path / "a.tar"
    subprocess.run([tar, "--xattrs", "--xattrs-include=*", "--format=pax", "-cf",
                    str(archive), "etc"], cwd=src, check=True)
    got = {m.path: m for m in parse_tar(archive.read_bytes())}
    assert dict(got["etc/init"].xattrs)[name] == SIG
    assert got["etc/data"].content == (src / "etc/data").read_bytes()
    # ours, extracted by GNU tar with the xattr restored
    member = ArchiveMember("etc/init", b"#!/bin/sh\n", 0o100755, xattrs=((name, SIG),))
    (tmp_path / "b.tar").write_bytes(write_tar([ArchiveMember("etc", mode=0o40755), member]))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([tar, "--xattrs", "--xattrs-include=*", "-xf", str(tmp_path / "b.tar")],
                   cwd=out, check=True)
    assert os.getxattr(out / "etc/init", name) == SIG


def test_initramfs_concatenation_padding_and_gzip() -> None:
    early = write_cpio([ArchiveMember("kernel/x86/microcode/GenuineIntel.bin", b"ucode")])
    main = write_cpio([ArchiveMember("init", b"v1", 0o100755)])
    again = write_cpio([ArchiveMember("init", b"v2", 0o100755)])
    packed = early + bytes(512) + gzip.compress(main, mtime=0)
    blob = packed + bytes(-len(packed) % 4) + again
    got = {m.path: m.content for m in parse_cpio(blob)}
    assert got == {"kernel/x86/microcode/GenuineIntel.bin": b"ucode", "init": b"v2"}
    if len(packed) % 4:  # the kernel only sees a cpio header at an aligned offset
        with pytest.raises(ParseError, match="4-byte"):
            parse_cpio(packed + again)


def test_crc_variant_is_checked() -> None:
    good = bytearray(write_cpio([ArchiveMember("init", b"abc", 0o100755)]))
    good[0:6] = b"070702"
    good[6 + 96:6 + 104] = b"%08X" % sum(b"abc")
    assert parse_cpio(bytes(good))[0].content == b"abc"
    good[6 + 96:6 + 104] = b"%08X" % 1
    with pytest.raises(ParseError, match="checksum"):
        parse_cpio(bytes(good))


def test_bad_input_has_offsets() -> None:
    data = write_cpio(MEMBERS[:2])
    with pytest.raises(ParseError) as e:
        parse_cpio(b"070707" + data[6:])
    assert e.value.field == "magic" and e.value.offset == 0
    with pytest.raises(TruncatedError):
        parse_cpio(data[:150])
    huge = bytearray(data)
    huge[6 + 48:6 + 56] = b"7FFFFFFF"  # filesize of the first member
    with pytest.raises(TruncatedError) as t:
        parse_cpio(bytes(huge))
    assert t.value.field == "filesize"
    tar = bytearray(write_tar(MEMBERS[:2]))
    tar[0] ^= 1
    with pytest.raises(ParseError) as e:
        parse_tar(bytes(tar))
    assert e.value.field == "chksum"
    with pytest.raises(TruncatedError):
        parse_tar(write_tar(MEMBERS[:2])[:700])
    with pytest.raises(LimitExceededError):
        parse_cpio(write_cpio(MEMBERS), limits=Limits(max_archive_members=2))
    bomb = gzip.compress(bytes(4 << 20))
    with pytest.raises(LimitExceededError):
        parse_cpio(bomb, limits=Limits(max_archive_size=1 << 20))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.integers(0, 4000), st.binary(min_size=1, max_size=8))
def test_corrupt_archives_raise_only_parse_errors(noise: bytes, at: int, patch: bytes) -> None:
    for parse, data in ((parse_cpio, write_cpio(MEMBERS)), (parse_tar, write_tar(MEMBERS))):
        mutated = bytearray(data)
        i = at % len(mutated)
        mutated[i:i + len(patch)] = patch
        for blob in (bytes(mutated), noise, data[:at % len(data)]):
            try:
                parse(blob)
            except ParseError:
                pass
