"""Initial user space from archives: cpio ``newc`` (what the kernel unpacks into rootfs)
and POSIX tar with pax ``SCHILY.xattr`` records (what carries security.ima onto a disk).

The kernel's initramfs unpacker (``init/initramfs.c``) reads only the cpio ``newc``
format (magic ``070701``, or ``070702`` with a checksum), several archives back to back,
zero padding between them and compressed members; it has no way to set extended
attributes, so files from an initramfs never carry ``security.ima`` (patches adding an
xattr side file were proposed but are not in mainline). A tar archive made with
``tar --xattrs`` stores each attribute as a pax extended-header record
``SCHILY.xattr.<name>=<raw bytes>``, which is how signed files reach an ext4 root.

Both parsers are sans-I/O, read ``bytes``/``memoryview`` without trusting a length
field, and raise :class:`~imasim.errors.ParseError` with the absolute offset and field.

>>> members = (ArchiveMember("bin", mode=0o40755),
...            ArchiveMember("bin/sh", b"#!busybox\\n", xattrs=(("security.ima", b"\\x04\\x04"),)))
>>> [m.path for m in parse_cpio(write_cpio(members))]
['bin', 'bin/sh']
>>> parse_cpio(write_cpio(members))[1].xattrs    # cpio cannot carry them
()
>>> parse_tar(write_tar(members))[1].xattrs
(('security.ima', b'\\x04\\x04'),)
"""

from __future__ import annotations

import stat
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from .errors import LimitExceededError, ParseError, TruncatedError
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ArchiveMember",
    "parse_cpio",
    "parse_tar",
    "write_cpio",
    "write_tar",
]

_NEWC: Final = (b"070701", b"070702")
_CPIO_HEADER: Final = 110
_TRAILER: Final = "TRAILER!!!"
_BLOCK: Final = 512
_XATTR: Final = "SCHILY.xattr."


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    """One file, directory or symlink of an archive (``path`` without a leading ``/``;
    a symlink's target is its ``content``)."""

    path: str
    content: bytes = b""
    mode: int = 0o100644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


# -- cpio newc --------------------------------------------------------------------------
def _hex_field(buf: memoryview, off: int, name: str) -> int:
    raw = bytes(buf[off:off + 8])
    try:
        if len(raw) != 8 or not all(c in b"0123456789abcdefABCDEF" for c in raw):
            raise ValueError
        return int(raw, 16)
    except ValueError:
        raise ParseError("not 8 hexadecimal digits", offset=off, field=name,
                         actual=raw) from None


def _gunzip(data: memoryview, offset: int, limits: Limits) -> tuple[bytes, int]:
    """Decompress one gzip member; (data, bytes consumed). Bounded by max_archive_size."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data[offset:], limits.max_archive_size + 1)
    except zlib.error as exc:
        raise ParseError(f"bad gzip data: {exc}", offset=offset, field="gzip") from None
    if len(out) > limits.max_archive_size or d.unconsumed_tail:
        raise LimitExceededError("decompressed archive too large", offset=offset,
                                 field="gzip", expected=f"<= {limits.max_archive_size}")
    if not d.eof:
        raise TruncatedError("gzip stream ends early", offset=len(data), field="gzip")
    return out, len(data) - offset - len(d.unused_data)


def parse_cpio(data: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS
               ) -> tuple[ArchiveMember, ...]:
    """Unpack an initramfs as ``unpack_to_rootfs`` does: cpio newc archives back to back,
    zero padding between them, gzip-compressed ones; later members replace earlier ones
    with the same path. Hard links and device nodes are refused (ParseError)."""
    buf = memoryview(data).cast("B")
    members: dict[str, ArchiveMember] = {}
    _parse_cpio_into(buf, 0, members, limits, depth=0)
    return tuple(members.values())


def _parse_cpio_into(buf: memoryview, base: int, members: dict[str, ArchiveMember],
                     limits: Limits, depth: int) -> None:
    pos, end = 0, len(buf)
    while pos < end:
        if buf[pos] == 0:  # padding between archives, skipped a chunk at a time
            chunk = bytes(buf[pos:pos + 65536])
            pos += len(chunk) - len(chunk.lstrip(b"\0"))
            continue
        if bytes(buf[pos:pos + 2]) == b"\x1f\x8b":
            if depth:
                raise ParseError("nested compression", offset=base + pos, field="gzip")
            inner, used = _gunzip(buf, pos, limits)
            _parse_cpio_into(memoryview(inner), base + pos, members, limits, depth + 1)
            pos += used
            continue
        if pos & 3:
            # unpack_to_rootfs takes '0' as a cpio header only at a 4-byte aligned offset
            raise ParseError("archive does not start on a 4-byte boundary",
                             offset=base + pos, field="magic")
        pos = _parse_one_cpio(buf, pos, base, members, limits)


def _parse_one_cpio(buf: memoryview, pos: int, base: int, members: dict[str, ArchiveMember],
                    limits: Limits) -> int:
    """One archive up to and including its trailer; the position after it."""
    end = len(buf)
    while True:
        if end - pos < _CPIO_HEADER:
            raise TruncatedError("cpio header", offset=base + pos, field="header",
                                 expected=_CPIO_HEADER, actual=end - pos)
        magic = bytes(buf[pos:pos + 6])
        if magic not in _NEWC:
            raise ParseError("no cpio magic", offset=base + pos, field="magic",
                             expected="070701 or 070702", actual=magic)
        f = [_hex_field(buf, pos + 6 + 8 * i, n) for i, n in enumerate(
            ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
             "devminor", "rdevmajor", "rdevminor", "namesize", "check"))]
        mode, uid, gid, nlink, mtime, size, namesize = f[1], f[2], f[3], f[4], f[5], f[6], f[11]
        name_off = pos + _CPIO_HEADER
        if namesize == 0 or namesize > 4096 or name_off + namesize > end:
            raise ParseError("bad name size", offset=base + pos + 6 + 88, field="namesize",
                             actual=namesize)
        raw_name = bytes(buf[name_off:name_off + namesize])
        if raw_name[-1] != 0:
            raise ParseError("name is not NUL-terminated", offset=base + name_off,
                             field="name")
        try:
            name = raw_name[:-1].decode()
        except UnicodeDecodeError:
            raise ParseError("name is not UTF-8", offset=base + name_off,
                             field="name") from None
        data_off = (name_off + namesize + 3) & ~3
        if data_off + size > end:
            raise TruncatedError("cpio file data", offset=base + data_off, field="filesize",
                                 expected=size, actual=max(0, end - data_off))
        if magic == b"070702" and sum(buf[data_off:data_off + size]) & 0xFFFFFFFF != f[12]:
            raise ParseError("bad data checksum", offset=base + pos + 6 + 96, field="check")
        pos = (data_off + size + 3) & ~3
        if name == _TRAILER:
            return pos
        path = name.lstrip("/").removeprefix("./")
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            raise ParseError("device nodes, fifos and sockets are not simulated",
                             offset=base + pos, field="mode", actual=oct(mode))
        if kind == stat.S_IFREG and nlink > 1 and size == 0:
            raise ParseError("hard links are not simulated", offset=base + pos,
                             field="nlink", actual=nlink)
        if path in ("", "."):
            continue
        if len(members) >= limits.max_archive_members and path not in members:
            raise LimitExceededError("too many archive members", offset=base + pos,
                                     field="members", expected=limits.max_archive_members)
        members[path] = ArchiveMember(path, bytes(buf[data_off:data_off + size]), mode, uid,
                                      gid, mtime)


def write_cpio(members: Iterable[ArchiveMember]) -> bytes:
    """A cpio newc archive as ``cpio -o -H newc`` and the kernel's gen_init_cpio write it
    (inode numbers from 721, directories with nlink 2); xattrs cannot be stored."""
    out = bytearray()

    def entry(ino: int, name: str, mode: int, uid: int, gid: int, nlink: int, mtime: int,
              body: bytes) -> None:
        raw = name.encode() + b"\0"
        fields = (ino, mode, uid, gid, nlink, mtime, len(body), 0, 0, 0, 0, len(raw), 0)
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + raw)
        out.extend(bytes(-len(out) % 4))
        out.extend(body)
        out.extend(bytes(-len(out) % 4))

    for ino, m in enumerate(members, start=721):
        entry(ino, m.path.lstrip("/"), m.mode, m.uid, m.gid, 2 if m.is_dir else 1, m.mtime,
              m.content)
    entry(0, _TRAILER, 0, 0, 0, 1, 0, b"")
    return bytes(out)


# -- tar with pax headers ---------------------------------------------------------------
def _octal(block: memoryview, start: int, length: int, base: int, name: str) -> int:
    raw = bytes(block[start:start + length])
    if raw and raw[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        if not all(48 <= c <= 55 for c in text):
            raise ValueError
        return int(text, 8)
    except ValueError:
        raise ParseError("not an octal number", offset=base + start, field=name,
                         actual=raw) from None


def _cstr(block: memoryview, start: int, length: int) -> bytes:
    return bytes(block[start:start + length]).split(b"\0", 1)[0]


def _pax_records(data: bytes, base: int) -> dict[str, bytes]:
    """``"%d %s=%s\\n"`` records; the length counts the whole record."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos, pos + 20)
        if sp < 0 or not data[pos:sp].isdigit():
            raise ParseError("bad pax record length", offset=base + pos, field="pax")
        n = int(data[pos:sp])
        rec = data[sp + 1:pos + n]
        if n <= sp - pos + 1 or pos + n > len(data) or not rec.endswith(b"\n") or \
                b"=" not in rec:
            raise ParseError("bad pax record", offset=base + pos, field="pax", actual=n)
        key, _, value = rec[:-1].partition(b"=")
        try:
            out[key.decode()] = value
        except UnicodeDecodeError:
            raise ParseError("pax keyword is not UTF-8", offset=base + pos,
                             field="pax") from None
        pos += n
    return out


def parse_tar(data: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS
              ) -> tuple[ArchiveMember, ...]:
    """Read a ustar/pax (or GNU) tar archive: regular files, directories and symlinks,
    with pax ``path``, ``linkpath``, ``size``, ``uid``, ``gid``, ``mtime`` overrides, GNU
    long names, and every ``SCHILY.xattr.*`` record as an xattr. Checksums are verified."""
    buf = memoryview(data).cast("B")
    out: list[ArchiveMember] = []
    pos, end = 0, len(buf)
    pax: dict[str, bytes] = {}
    global_pax: dict[str, bytes] = {}
    long_name: bytes | None = None
    long_link: bytes | None = None
    while True:
        if end - pos < _BLOCK:
            raise TruncatedError("tar header", offset=pos, field="header", expected=_BLOCK,
                                 actual=end - pos)
        hdr = pos
        h = buf[pos:pos + _BLOCK]
        if not any(h):
            return tuple(out)  # end of archive (one zero block is enough to stop)
        want = _octal(h, 148, 8, hdr, "chksum")
        got = sum(h[:148]) + 8 * 32 + sum(h[156:])
        if want != got:
            raise ParseError("header checksum", offset=hdr + 148, field="chksum",
                             expected=want, actual=got)
        size = _octal(h, 124, 12, hdr, "size")
        kind = bytes(h[156:157])
        ext = {**global_pax, **pax}
        if kind in (b"0", b"\0", b"5", b"2") and "size" in ext:
            size = _pax_int(ext["size"], hdr, "size")
        body_off = pos + _BLOCK
        if size > end - body_off:
            raise TruncatedError("tar member data", offset=body_off, field="size",
                                 expected=size, actual=end - body_off)
        body = bytes(buf[body_off:body_off + size])
        pos = body_off + (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if kind == b"x":
            pax = _pax_records(body, body_off)
            continue
        if kind == b"g":
            global_pax.update(_pax_records(body, body_off))
            continue
        if kind == b"L":
            long_name = body.split(b"\0", 1)[0]
            continue
        if kind == b"K":
            long_link = body.split(b"\0", 1)[0]
            continue
        prefix = _cstr(h, 345, 155) if bytes(h[257:262]) == b"ustar" else b""
        raw_name = ext.get("path") or long_name or (
            prefix + b"/" + _cstr(h, 0, 100) if prefix else _cstr(h, 0, 100))
        link = ext.get("linkpath") or long_link or _cstr(h, 157, 100)
        pax, long_name, long_link = {}, None, None
        mode = _octal(h, 100, 8, hdr, "mode") & 0o7777
        if kind in (b"0", b"\0"):
            mode |= stat.S_IFREG
        elif kind == b"5":
            mode |= stat.S_IFDIR
        elif kind == b"2":
            mode |= stat.S_IFLNK
            body = link
        else:
            raise ParseError("only files, directories and symlinks are simulated",
                             offset=hdr + 156, field="typeflag", actual=kind)
        try:
            path = raw_name.decode().lstrip("/").removeprefix("./").rstrip("/")
        except UnicodeDecodeError:
            raise ParseError("name is not UTF-8", offset=hdr, field="name") from None
        if not path:
            continue
        if len(out) >= limits.max_archive_members:
            raise LimitExceededError("too many archive members", offset=body_off,
                                     field="members", expected=limits.max_archive_members)
        uid = _pax_int(ext["uid"], hdr, "uid") if "uid" in ext else _octal(h, 108, 8, hdr,
                                                                           "uid")
        gid = _pax_int(ext["gid"], hdr, "gid") if "gid" in ext else _octal(h, 116, 8, hdr,
                                                                           "gid")
        mtime = int(float(ext["mtime"])) if "mtime" in ext and _is_number(ext["mtime"]) \
            else _octal(h, 136, 12, hdr, "mtime")
        xattrs = tuple((k[len(_XATTR):], v) for k, v in ext.items() if k.startswith(_XATTR))
        out.append(ArchiveMember(path, body, mode, uid, gid, mtime, xattrs))


def _is_number(v: bytes) -> bool:
    return v.replace(b".", b"", 1).isdigit()


def _pax_int(v: bytes, offset: int, name: str) -> int:
    if not v.isdigit():
        raise ParseError("pax value is not a decimal number", offset=offset, field=name,
                         actual=v)
    return int(v)


def _record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
            kind: bytes, link: bytes = b"") -> bytes:
    h = bytearray(_BLOCK)
    h[0:len(name[:100])] = name[:100]
    h[100:108] = b"%07o\0" % (mode & 0o7777)
    h[108:116] = b"%07o\0" % min(uid, 0o7777777)
    h[116:124] = b"%07o\0" % min(gid, 0o7777777)
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % mtime
    h[156:157] = kind
    h[157:157 + len(link[:100])] = link[:100]
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % _BLOCK)


def write_tar(members: Sequence[ArchiveMember]) -> bytes:
    """A POSIX pax archive as ``tar --xattrs --format=pax`` writes it: a pax header before
    each member with xattrs (or a name or id that ustar cannot hold)."""
    out = bytearray()
    for m in members:
        name = m.path.lstrip("/").encode() + (b"/" if m.is_dir else b"")
        link = m.content if m.is_symlink else b""
        records = [_record(_XATTR + k, v) for k, v in m.xattrs]
        if len(name) > 100:
            records.insert(0, _record("path", name))
        if len(link) > 100:
            records.append(_record("linkpath", link))
        for key, val in (("uid", m.uid), ("gid", m.gid)):
            if val > 0o7777777:
                records.append(_record(key, str(val).encode()))
        if records:
            pax = b"".join(records)
            out += _header(b"PaxHeaders/" + name[-80:], 0o644, 0, 0, len(pax), m.mtime, b"x")
            out += _pad(pax)
        body = b"" if (m.is_dir or m.is_symlink) else m.content
        kind = b"5" if m.is_dir else b"2" if m.is_symlink else b"0"
        out += _header(name, m.mode, m.uid, m.gid, len(body), m.mtime, kind, link)
        out += _pad(body)
    out += bytes(2 * _BLOCK)
    return bytes(out)
