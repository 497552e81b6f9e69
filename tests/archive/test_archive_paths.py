"""Member names with '.', '..' and empty components: where the kernel's initramfs
unpacker and GNU tar put them (or refuse them)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from imasim.archive import ArchiveMember, parse_cpio, parse_tar, write_cpio
from imasim.errors import LimitExceededError, ParseError

DIR = 0o40755
LINK = 0o120777


def _cpio(*members: ArchiveMember) -> dict[str, bytes]:
    return {m.path: m.content for m in parse_cpio(write_cpio(members))}


def test_initramfs_resolves_dot_dot_like_the_vfs() -> None:
    # usr exists, so usr/../bin/sh is /bin/sh (not a file named "usr/../bin/sh")
    got = _cpio(ArchiveMember("usr", mode=DIR), ArchiveMember("bin", mode=DIR),
                ArchiveMember("usr/../bin/sh", b"sh"), ArchiveMember("./etc//./x", b"x"),
                ArchiveMember("../../../top", b"t"))
    assert got == {"usr": b"", "bin": b"", "bin/sh": b"sh", "etc/x": b"x", "top": b"t"}


def test_initramfs_skips_what_the_vfs_cannot_reach() -> None:
    # the lookup of missing/.. or file/.. fails (-ENOENT, -ENOTDIR): nothing is created
    got = _cpio(ArchiveMember("f", b"file"), ArchiveMember("missing/../a", b"a"),
                ArchiveMember("f/../b", b"b"), ArchiveMember("..", mode=DIR))
    assert got == {"f": b"file"}


def test_initramfs_later_member_through_dot_dot_replaces_the_earlier() -> None:
    got = _cpio(ArchiveMember("etc", mode=DIR), ArchiveMember("init", b"v1"),
                ArchiveMember("etc/../init", b"v2"))
    assert got["init"] == b"v2" and "etc/../init" not in got


def test_dot_dot_after_a_symlink_is_refused_not_guessed() -> None:
    with pytest.raises(ParseError) as info:
        _cpio(ArchiveMember("lib", b"usr/lib", LINK), ArchiveMember("lib/../x", b"x"))
    assert info.value.field == "name"


def _tar(names: list[str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in names:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(name)
                t.addfile(info, io.BytesIO(name.encode()))
    return out.getvalue()


@pytest.mark.parametrize("name", ["usr/../bin/sh", "../../evil", "a/..", "x/../"])
def test_tar_refuses_dot_dot_as_gnu_tar_does(name: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_tar(_tar(["usr/", name]))
    assert info.value.field == "name"


def test_tar_drops_dot_and_empty_components() -> None:
    got = [m.path for m in parse_tar(_tar(["./c/./d", "e//f", "./"]))]
    assert got == ["c/d", "e/f"]


@pytest.mark.interop
def test_gnu_tar_agrees(tmp_path: Path) -> None:
    from tools import need

    tar = need("tar")
    for names, refused in ((["usr/", "usr/../bin/sh"], True), (["./c/./d", "e//f"], False)):
        (tmp_path / "a.tar").write_bytes(_tar(names))
        out = tmp_path / "out"
        out.mkdir()
        run = subprocess.run([tar, "-xf", str(tmp_path / "a.tar"), "-C", str(out)],
                             capture_output=True, text=True, check=False)
        extracted = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        if refused:
            assert run.returncode == 2 and "contains '..'" in run.stderr
            assert extracted == []  # the member with '..' is not extracted
            with pytest.raises(ParseError):
                parse_tar(_tar(names))
        else:
            assert run.returncode == 0
            assert extracted == sorted(m.path for m in parse_tar(_tar(names)) if m.is_file)
        subprocess.run(["rm", "-rf", str(out)], check=True)


@pytest.mark.parametrize("key, value, error", [
    ("uid", "9" * 5000, LimitExceededError), ("gid", "1" * 21, LimitExceededError),
    ("size", "7" * 5000, LimitExceededError), ("mtime", "9" * 400, LimitExceededError),
    ("mtime", "1" * 400 + ".5", LimitExceededError), ("mtime", "1e400", ParseError),
    ("uid", "-1", ParseError), ("mtime", "12.x", ParseError),
])
def test_huge_or_odd_pax_numbers_are_parse_errors(key: str, value: str, error: type) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("f")
        info.pax_headers = {key: value}
        t.addfile(info, io.BytesIO(b""))
    with pytest.raises(error) as info_:
        parse_tar(out.getvalue())
    assert info_.value.field == key


def test_pax_numbers_in_range_are_read() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"uid": str(2**64 - 1), "mtime": "-12.75"}
        t.addfile(info, io.BytesIO(b""))
    m = parse_tar(out.getvalue())[0]
    assert (m.uid, m.mtime) == (2**64 - 1, -12)

