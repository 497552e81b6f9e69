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

import io
import re
import stat
import struct
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
_HEX: Final = b"0123456789abcdefABCDEF"
_CPIO_FIELDS: Final = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
                       "devminor", "rdevmajor", "rdevminor", "namesize", "check")
_CPIO_UNPACK: Final = struct.Struct(">13I").unpack


def _hex_field(raw: bytes, off: int, name: str) -> int:
    if len(raw) != 8 or raw.strip(_HEX):
        raise ParseError("not 8 hexadecimal digits", offset=off, field=name, actual=raw)
    return int(raw, 16)


_INFLATE_CHUNK: Final = 1 << 16  # compressed bytes fed to zlib at a time
_BIG_READ: Final = 1 << 20  # reads larger than this inflate straight into their buffer
_NONZERO: Final = re.compile(rb"[^\x00]")


class _Plain:
    """The uncompressed input: reads are slices of the caller's buffer."""

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos, self.base = buf, pos, 0

    def peek(self, n: int) -> bytes:
        return bytes(self.buf[self.pos:self.pos + n])

    def read(self, n: int, field: str) -> bytes:
        if n > len(self.buf) - self.pos:
            raise TruncatedError(f"cpio {field}", offset=self.pos, field=field, expected=n,
                                 actual=len(self.buf) - self.pos)
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos])

    def skip_zeros(self) -> None:
        while self.pos < len(self.buf) and self.buf[self.pos] == 0:
            chunk = bytes(self.buf[self.pos:self.pos + 65536])
            self.pos += len(chunk) - len(chunk.lstrip(b"\0"))


class _Budget:
    """The decompressed bytes left for the whole archive (every gzip member shares it)."""

    def __init__(self, limits: Limits) -> None:
        self.limit = self.left = limits.max_archive_size


class _Gunzip:
    """One gzip member, inflated as it is read: headers come out of a small look-ahead,
    file data of more than ``_BIG_READ`` bytes is inflated piecewise into one buffer
    (``BytesIO.getvalue`` hands that buffer over without a copy), so the peak is the
    members kept plus one chunk; every byte counts against the shared budget."""

    def __init__(self, buf: memoryview, offset: int, budget: _Budget) -> None:
        self.src, self.src_pos, self.base = buf, offset, offset
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.budget = budget
        self.ahead, self.off = b"", 0  # inflated; ahead[off:] not yet read
        self.pos = 0  # offset in the inflated stream of ahead[0]

    def _inflate(self, want: int) -> bytes:
        """Up to ``want`` more inflated bytes (b"" at the end of the member)."""
        d = self.d
        while True:
            if d.eof:
                return b""
            if d.unconsumed_tail:
                data: bytes | memoryview = d.unconsumed_tail
            else:
                if self.src_pos >= len(self.src):
                    raise TruncatedError("gzip stream ends early", offset=len(self.src),
                                         field="gzip")
                data = self.src[self.src_pos:self.src_pos + _INFLATE_CHUNK]
                self.src_pos += len(data)
            try:
                out = d.decompress(data, want)
            except zlib.error as exc:
                raise ParseError(f"bad gzip data: {exc}", offset=self.base,
                                 field="gzip") from None
            if out:
                self.budget.left -= len(out)
                if self.budget.left < 0:
                    raise LimitExceededError(
                        "decompressed archive too large", offset=self.base, field="gzip",
                        expected=f"<= {self.budget.limit} bytes in all members")
                return out

    def end(self) -> int:
        """The input offset after this member (the member must be at its end)."""
        return self.src_pos - len(self.d.unused_data)

    def at_end(self) -> bool:
        if self.off == len(self.ahead):
            self.ahead, self.off = self._inflate(_INFLATE_CHUNK), 0
        return not self.ahead

    def peek(self, n: int) -> bytes:
        while len(self.ahead) - self.off < n:
            more = self._inflate(max(n - len(self.ahead) + self.off, _INFLATE_CHUNK))
            if not more:
                break
            self.ahead, self.off = self.ahead[self.off:] + more, 0
        return self.ahead[self.off:self.off + n]

    def read(self, n: int, field: str) -> bytes:
        have = len(self.ahead) - self.off
        if n > self.budget.left + have:
            raise LimitExceededError("decompressed archive too large", offset=self.base,
                                     field=field, expected=f"<= {self.budget.limit} bytes "
                                     "in all members", actual=n)
        if n <= _BIG_READ:
            head = self.peek(n)
            if len(head) < n:
                raise TruncatedError(f"cpio {field}", offset=self.base, field=field,
                                     expected=n, actual=len(head))
            self.off += n  # an offset, not a slice: many small reads stay linear
            self.pos += n
            return head
        sink = io.BytesIO()
        sink.write(memoryview(self.ahead)[self.off:])
        got, self.ahead, self.off = have, b"", 0
        while got < n:
            more = self._inflate(min(n - got, _BIG_READ))
            if not more:
                raise TruncatedError(f"cpio {field}", offset=self.base, field=field,
                                     expected=n, actual=got)
            sink.write(more)
            got += len(more)
            del more
        self.pos += n
        return sink.getvalue()

    def skip_zeros(self) -> None:
        while self.peek(1) == b"\0":
            m = _NONZERO.search(self.ahead, self.off)
            zeros = (len(self.ahead) if m is None else m.start()) - self.off
            self.off += zeros
            self.pos += zeros


def parse_cpio(data: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS
               ) -> tuple[ArchiveMember, ...]:
    """Unpack an initramfs as ``unpack_to_rootfs`` does: cpio newc archives back to back,
    zero padding between them, gzip-compressed ones; later members replace earlier ones
    with the same path. Hard links and device nodes are refused (ParseError).

    Bounds: the decompressed bytes of all gzip members together are at most
    ``limits.max_archive_size`` (one budget, checked before a file's data is inflated),
    members are inflated as they are read (no copy of a decompressed member is kept
    besides the files), at most ``limits.max_archive_members`` paths.
    """
    buf = memoryview(data).cast("B")
    members: dict[str, ArchiveMember] = {}
    budget = _Budget(limits)
    plain = _Plain(buf, 0)
    while plain.pos < len(buf):
        if buf[plain.pos] == 0:  # padding between archives
            plain.skip_zeros()
            continue
        if plain.peek(2) == b"\x1f\x8b":
            gz = _Gunzip(buf, plain.pos, budget)
            while not gz.at_end():
                if gz.peek(1) == b"\0":
                    gz.skip_zeros()
                    continue
                if gz.peek(2) == b"\x1f\x8b":
                    raise ParseError("nested compression", offset=gz.base, field="gzip")
                _parse_one_cpio(gz, members, limits)
            plain.pos = gz.end()
            continue
        _parse_one_cpio(plain, members, limits)
    return tuple(members.values())


def _parse_one_cpio(src: _Plain | _Gunzip, members: dict[str, ArchiveMember],
                    limits: Limits) -> None:
    """One archive up to and including its trailer."""
    if src.pos & 3:
        # unpack_to_rootfs takes '0' as a cpio header only at a 4-byte aligned offset
        raise ParseError("archive does not start on a 4-byte boundary",
                         offset=src.base + src.pos, field="magic")
    while True:
        pos = src.pos
        header = src.read(_CPIO_HEADER, "header")
        magic = header[:6]
        if magic not in _NEWC:
            raise ParseError("no cpio magic", offset=src.base + pos, field="magic",
                             expected="070701 or 070702", actual=magic)
        digits = header[6:]
        if digits.strip(_HEX):  # a non-hex digit: say which field
            for i, n in enumerate(_CPIO_FIELDS):
                _hex_field(digits[8 * i:8 * i + 8], src.base + pos + 6 + 8 * i, n)
        f = _CPIO_UNPACK(bytes.fromhex(digits.decode("ascii")))
        mode, uid, gid, nlink, mtime, size, namesize = f[1], f[2], f[3], f[4], f[5], f[6], f[11]
        name_off = src.pos
        if namesize == 0 or namesize > 4096:
            raise ParseError("bad name size", offset=src.base + pos + 6 + 88,
                             field="namesize", actual=namesize)
        raw_name = src.read(namesize, "name")
        if raw_name[-1] != 0:
            raise ParseError("name is not NUL-terminated", offset=src.base + name_off,
                             field="name")
        try:
            name = raw_name[:-1].decode()
        except UnicodeDecodeError:
            raise ParseError("name is not UTF-8", offset=src.base + name_off,
                             field="name") from None
        src.read(-src.pos & 3, "padding")
        data_off = src.pos
        body = src.read(size, "filesize")
        if magic == b"070702" and sum(body) & 0xFFFFFFFF != f[12]:
            raise ParseError("bad data checksum", offset=src.base + pos + 6 + 96,
                             field="check")
        src.read(-src.pos & 3, "padding")
        if name == _TRAILER:
            return
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            raise ParseError("device nodes, fifos and sockets are not simulated",
                             offset=src.base + data_off, field="mode", actual=oct(mode))
        if kind == stat.S_IFREG and nlink > 1 and size == 0:
            raise ParseError("hard links are not simulated", offset=src.base + data_off,
                             field="nlink", actual=nlink)
        resolved = _initramfs_path(name, members, src.base + name_off)
        if resolved is None:
            continue
        path = resolved
        if len(members) >= limits.max_archive_members and path not in members:
            raise LimitExceededError("too many archive members", offset=src.base + data_off,
                                     field="members", expected=limits.max_archive_members)
        members[path] = ArchiveMember(path, body, mode, uid, gid, mtime)


def _initramfs_path(name: str, members: dict[str, ArchiveMember], offset: int
                    ) -> str | None:
    """Where the kernel's unpacker puts ``name``, or None when it puts nothing there.

    init/initramfs.c hands the name as it is to the VFS (``filp_open``, ``init_mkdir``,
    ``init_symlink`` relative to the root): empty and ``.`` components are nothing,
    ``..`` goes up one directory and stays at ``/`` at the root, and a component before
    ``..`` must be a directory unpacked earlier, else the lookup fails (-ENOENT,
    -ENOTDIR) and the kernel skips the member silently. A symlink before ``..`` would be
    followed; that is refused (ParseError) rather than guessed. The root itself is
    nothing to create.
    """
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp != "..":
            parts.append(comp)
            continue
        if parts:
            here = members.get("/".join(parts))
            if here is not None and here.is_symlink:
                raise ParseError("'..' after a symlink is not simulated", offset=offset,
                                 field="name", actual=name)
            if here is None or not here.is_dir:
                return None
            parts.pop()
    return "/".join(parts) or None


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


def _pax_records(data: bytes, base: int, limits: Limits, into: dict[str, bytes] | None = None
                 ) -> dict[str, bytes]:
    """``"%d %s=%s\\n"`` records; the length counts the whole record. At most
    ``limits.max_pax_records`` keywords (in ``into`` and the new ones together)."""
    out: dict[str, bytes] = {} if into is None else into
    pos = 0
    while pos < len(data):
        if len(out) >= limits.max_pax_records:
            raise LimitExceededError("too many pax records", offset=base + pos, field="pax",
                                     expected=f"<= {limits.max_pax_records}")
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
    long names, and every ``SCHILY.xattr.*`` record as an xattr. Checksums are verified.

    Names are what GNU tar 1.34 extracts: empty and ``.`` components dropped, a name with
    a ``..`` component refused (ParseError; GNU tar skips it with "Member name contains
    '..'" and exits 2). Bounds: pax numbers of at most 20 digits, at most
    ``limits.max_pax_records`` keywords a header, ``limits.max_archive_members`` members;
    time and memory linear in the input."""
    buf = memoryview(data).cast("B")
    out: list[ArchiveMember] = []
    pos, end = 0, len(buf)
    pax: dict[str, bytes] = {}
    global_pax: dict[str, bytes] = {}
    global_xattrs: tuple[tuple[str, bytes], ...] | None = None
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
        ext = {**global_pax, **pax} if pax else global_pax  # <= 2 * max_pax_records
        if kind in (b"0", b"\0", b"5", b"2") and "size" in ext:
            size = _pax_int(ext["size"], hdr, "size")
        body_off = pos + _BLOCK
        if size > end - body_off:
            raise TruncatedError("tar member data", offset=body_off, field="size",
                                 expected=size, actual=end - body_off)
        body = bytes(buf[body_off:body_off + size])
        pos = body_off + (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if kind == b"x":
            pax = _pax_records(body, body_off, limits)
            continue
        if kind == b"g":
            _pax_records(body, body_off, limits, global_pax)
            global_xattrs = None
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
            comps = raw_name.decode().split("/")
        except UnicodeDecodeError:
            raise ParseError("name is not UTF-8", offset=hdr, field="name") from None
        if ".." in comps:
            # GNU tar 1.34 without --absolute-names: "Member name contains '..'", the
            # member is not extracted and tar exits 2
            raise ParseError("member name contains '..' (GNU tar refuses it)", offset=hdr,
                             field="name", actual=raw_name)
        path = "/".join(c for c in comps if c not in ("", "."))  # what tar extracts
        if not path:
            continue
        if len(out) >= limits.max_archive_members:
            raise LimitExceededError("too many archive members", offset=body_off,
                                     field="members", expected=limits.max_archive_members)
        uid = _pax_int(ext["uid"], hdr, "uid") if "uid" in ext else _octal(h, 108, 8, hdr,
                                                                           "uid")
        gid = _pax_int(ext["gid"], hdr, "gid") if "gid" in ext else _octal(h, 116, 8, hdr,
                                                                           "gid")
        mtime = _pax_int(ext["mtime"], hdr, "mtime", fraction=True) if "mtime" in ext \
            else _octal(h, 136, 12, hdr, "mtime")
        if ext is not global_pax:
            xattrs = _xattrs(ext)
        else:  # members without a pax header of their own share one tuple
            global_xattrs = _xattrs(ext) if global_xattrs is None else global_xattrs
            xattrs = global_xattrs
        out.append(ArchiveMember(path, body, mode, uid, gid, mtime, xattrs))


def _xattrs(ext: dict[str, bytes]) -> tuple[tuple[str, bytes], ...]:
    return tuple((k[len(_XATTR):], v) for k, v in ext.items() if k.startswith(_XATTR))


_PAX_DIGITS: Final = 20  # a uint64 has 20 decimal digits


def _pax_int(v: bytes, offset: int, name: str, *, fraction: bool = False) -> int:
    """A pax decimal value (``mtime`` may have a fraction, which is dropped), at most
    20 digits: GNU tar refuses values out of range the same way ("out of range")."""
    sign = -1 if fraction and v.startswith(b"-") else 1  # mtime may be negative
    whole, dot, frac = v[sign < 0:].partition(b".") if fraction else (v, b"", b"")
    if not whole.isdigit() or (dot and not frac.isdigit()):
        raise ParseError("pax value is not a decimal number", offset=offset, field=name,
                         actual=v[:40])
    if len(whole) > _PAX_DIGITS:
        raise LimitExceededError("pax value out of range", offset=offset, field=name,
                                 expected=f"<= {_PAX_DIGITS} digits", actual=len(whole))
    return sign * int(whole)


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
