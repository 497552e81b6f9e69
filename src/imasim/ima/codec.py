"""security/integrity/ima/ima_fs.c: binary_runtime_measurements and ascii_runtime_measurements.

Binary record (ima_measurements_show)::

    u32 pcr | template digest (20 B, or the bank size in *_<alg> lists) | u32 name_len |
    name (no NUL) | u32 data_len | template data          (legacy 'ima': no data_len,
                                                          20 B digest, u32 len, name)

Integers are in the kernel's native order (little endian on x86; ``byte_order="big"``
for a big-endian kernel without ``ima_canonical_fmt``).

:func:`parse_measurement_list` validates every record (lengths, template names, the
field structure of the template data) in one pass and returns a :class:`MeasurementList`
that keeps the input bytes once and an offset per entry; entries are built on access.
:func:`iter_measurement_list` streams entries from bytes or a binary file in constant
memory. Only :class:`~imasim.errors.ParseError` escapes either.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, overload

from .._wire import decimal
from ..algorithms import HashAlgorithm
from ..errors import LimitExceededError, ParseError, TruncatedError, UnknownTemplateError
from ..limits import DEFAULT_LIMITS, Limits
from .entry import MeasurementEntry
from .fields import ByteOrder
from .templates import lookup_template

__all__ = [
    "ListKind",
    "MeasurementList",
    "detect_list_kind",
    "iter_measurement_list",
    "iter_record_chunks",
    "parse_ascii_measurement_list",
    "parse_measurement_list",
]

_U32: Final = {"little": struct.Struct("<I"), "big": struct.Struct(">I")}
_CHUNK: Final = 1 << 20


def _check_order(byte_order: str) -> ByteOrder:
    if byte_order not in ("little", "big"):
        raise ParseError("byte_order must be 'little' or 'big'", field="byte_order",
                         actual=byte_order)
    return "little" if byte_order == "little" else "big"


class _Scanner:
    """Finds and validates record boundaries in a buffer; shared by both readers."""

    __slots__ = ("dsize", "limits", "names", "order", "shapes", "unpack")

    def __init__(self, order: ByteOrder, dsize: int, limits: Limits) -> None:
        self.order: ByteOrder = order
        self.dsize = dsize
        self.limits = limits
        self.unpack = _U32[order].unpack_from
        self.names: dict[bytes, tuple[str, int]] = {}  # name bytes -> (name, nfields or -1)
        self.shapes: dict[int, struct.Struct] = {}  # first field length -> record shape

    def _template(self, raw: bytes, offset: int) -> tuple[str, int]:
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise UnknownTemplateError("template name is not ASCII", offset=offset,
                                       field="template_name") from None
        if name == "ima":
            found = (name, -1)
        else:
            try:
                found = (name, len(lookup_template(name).fields))
            except UnknownTemplateError as exc:
                raise UnknownTemplateError(exc.message, offset=offset,
                                           field="template_name", actual=name[:80]) from None
        if len(self.names) < 4096:
            self.names[raw] = found
        return found

    def scan(self, buf: bytes | bytearray | memoryview, pos: int, end: int, base: int,
             final: bool, offsets: array[int] | None, index: int
             ) -> tuple[int, list[MeasurementEntry] | None]:
        """Validate records from ``pos``; return the offset after the last complete one.

        With ``offsets`` given, record starts are appended there (no entries built);
        otherwise entries are built and returned. When ``final`` is false, an incomplete
        record at the end is left for the next chunk instead of raising.

        This is the hot path: the common record (complete, same template as the one
        before) costs a handful of ``unpack_from`` calls and no per-byte work.
        """
        unpack, dsize, limits = self.unpack, self.dsize, self.limits
        max_name, max_data = limits.max_template_name, limits.max_template_data
        max_entries = limits.max_entries
        order = self.order
        hdr = 8 + dsize
        nl_off = 4 + dsize
        out: list[MeasurementEntry] | None = None if offsets is not None else []
        append = offsets.append if offsets is not None else None
        is_mv = isinstance(buf, memoryview)
        new = tuple.__new__
        last_raw, last_len, name, nfields = b"", -1, "", 0
        last_f0, shape, shape_size = -1, None, 0
        while pos < end:
            start = pos
            if end - pos < hdr:
                if not final:
                    break
                raise TruncatedError(f"entry[{index}] header needs {hdr} bytes, "
                                     f"{end - pos} remain", offset=base + pos,
                                     field="entry_header")
            nlen = unpack(buf, pos + nl_off)[0]
            p = pos + hdr
            if nlen == last_len and (buf[p:p + nlen] == last_raw if is_mv
                                     else buf.startswith(last_raw, p)):  # type: ignore[union-attr]
                pass
            else:
                if nlen == 0 or nlen > max_name:
                    raise LimitExceededError(f"entry[{index}] template name length {nlen}",
                                             offset=base + p - 4, field="template_name_len",
                                             expected=f"1..{max_name}", actual=nlen)
                if end - p < nlen + 4:
                    if not final:
                        break
                    raise self._name_cut(index, nlen, base + p - 4)
                last_raw = bytes(buf[p:p + nlen])
                last_len = nlen
                found = self.names.get(last_raw)
                if found is None:
                    found = self._template(last_raw, base + p)
                name, nfields = found
            p += nlen
            if nfields < 0:  # legacy 'ima': 20-byte digest, u32 len, name
                if end - p < 24:
                    if not final:
                        break
                    if end - p < 4:  # as when the name is checked (not the last one's)
                        raise self._name_cut(index, nlen, base + p - nlen - 4)
                    raise TruncatedError(f"entry[{index}] 'ima' record truncated",
                                         offset=base + p, field="ima_digest")
                flen = unpack(buf, p + 20)[0]
                if flen > max_name:
                    raise LimitExceededError(f"entry[{index}] 'ima' file name length {flen}",
                                             offset=base + p + 20, field="ima_name_len",
                                             expected="<= 255", actual=flen)
                dstart, dend = p, p + 24 + flen
                if dend > end:
                    if not final:
                        break
                    raise TruncatedError(f"entry[{index}] 'ima' file name truncated",
                                         offset=base + p + 20, field="ima_name_len")
            else:
                if shape is not None and nfields == 2 and end - p >= shape_size:
                    # same shape as the last two-field record (ima-ng with one digest
                    # algorithm): data length, both field lengths in one call
                    dlen, f0, f1 = shape(buf, p)
                    dstart = p + 4
                    dend = dstart + dlen
                    if (f0 == last_f0 and dlen == 8 + f0 + f1 and dlen <= max_data
                            and dend <= end):
                        if index >= max_entries:
                            raise LimitExceededError("too many entries", offset=base + start,
                                                     field="entry", expected=max_entries)
                        if append is not None:
                            append(start)
                        else:
                            assert out is not None
                            out.append(new(MeasurementEntry, (
                                unpack(buf, start)[0], name, bytes(buf[start + 4:start + nl_off]),
                                bytes(buf[dstart:dend]), order)))
                        pos = dend
                        index += 1
                        continue
                if end - p < 4:  # only when the name was the last one's: the same error
                    if not final:
                        break
                    raise self._name_cut(index, nlen, base + p - nlen - 4)
                dlen = unpack(buf, p)[0]
                dstart = p + 4
                dend = dstart + dlen
                if dend > end or dlen > max_data:
                    if dlen > max_data:
                        raise LimitExceededError(
                            f"entry[{index}] template data length {dlen}", offset=base + p,
                            field="template_data_len", expected=f"<= {max_data}", actual=dlen)
                    if not final:
                        break
                    raise TruncatedError(f"entry[{index}] template data length {dlen} exceeds "
                                         f"the remaining {end - dstart} bytes",
                                         offset=base + p, field="template_data_len")
                q = dstart
                for _ in range(nfields):
                    if q + 4 > dend:
                        break
                    q += 4 + unpack(buf, q)[0]
                if q != dend:
                    self._check_fields(buf, dstart, dend, nfields, base, index)
                if nfields == 2 and dlen >= 4:
                    f0 = unpack(buf, dstart)[0]
                    if f0 != last_f0:
                        last_f0 = f0
                        shape_struct = self._shape(f0)
                        shape, shape_size = shape_struct.unpack_from, shape_struct.size
            if index >= max_entries:
                raise LimitExceededError("too many entries", offset=base + start,
                                         field="entry", expected=max_entries)
            if append is not None:
                append(start)
            else:
                assert out is not None
                out.append(new(MeasurementEntry, (unpack(buf, start)[0], name,
                                                  bytes(buf[start + 4:start + nl_off]),
                                                  bytes(buf[dstart:dend]), order)))
            pos = dend
            index += 1
        return pos, out

    @staticmethod
    def _name_cut(index: int, nlen: int, offset: int) -> TruncatedError:
        """The error for a record that ends before its template name and data length.

        Raised whether or not the name is the one of the record before, so that an error
        does not depend on where a scan started (a chunk, a window).
        """
        return TruncatedError(f"entry[{index}] template name of {nlen} bytes and data "
                              "length do not fit", offset=offset, field="template_name_len")

    def _shape(self, f0: int) -> struct.Struct:
        """``u32 data_len | u32 f0_len | f0 | u32 f1_len`` for a first field of ``f0`` bytes."""
        found = self.shapes.get(f0)
        if found is None:
            found = struct.Struct(f"{'<' if self.order == 'little' else '>'}II{f0}xI")
            if len(self.shapes) < 64:
                self.shapes[f0] = found
        return found

    def _check_fields(self, buf: bytes | bytearray | memoryview, pos: int, end: int,
                      nfields: int, base: int, index: int) -> None:
        unpack = self.unpack
        for i in range(nfields):
            if end - pos < 4:
                raise ParseError(f"entry[{index}] template data ends before field {i}",
                                 offset=base + pos, field="field_len", expected=nfields,
                                 actual=i)
            (n,) = unpack(buf, pos)
            if n > end - pos - 4:
                raise ParseError(f"entry[{index}] field {i} length {n} exceeds the template "
                                 f"data ({end - pos - 4} bytes left)", offset=base + pos,
                                 field="field_len")
            pos += 4 + n
        if pos != end:
            raise ParseError(f"entry[{index}] {end - pos} bytes after the last field",
                             offset=base + pos, field="template_data")


class MeasurementList(Sequence[MeasurementEntry]):
    """An immutable measurement list: the serialised records once, plus an offset index.

    ``digest_alg`` is the algorithm of the stored template digests (SHA-1 for the
    classic list and the kexec buffer; the bank's for ``*_<alg>`` lists).
    """

    __slots__ = ("_buf", "_dsize", "_offsets", "byte_order", "digest_alg")

    def __init__(self, entries: Iterable[MeasurementEntry] = (), *,
                 digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
                 byte_order: ByteOrder = "little") -> None:
        self.digest_alg = digest_alg
        self.byte_order: ByteOrder = _check_order(byte_order)
        self._dsize = digest_alg.digest_size
        parts: list[bytes] = []
        offsets = array("Q")
        pos = 0
        for e in entries:
            if len(e.template_digest) != self._dsize:
                raise ParseError("template digest size does not match the list's algorithm",
                                 field="template_digest", expected=self._dsize,
                                 actual=len(e.template_digest))
            rec = e.to_bytes(byte_order=byte_order)
            offsets.append(pos)
            parts.append(rec)
            pos += len(rec)
        self._buf = b"".join(parts)
        self._offsets = offsets

    @classmethod
    def _from_parsed(cls, buf: bytes, offsets: array[int], digest_alg: HashAlgorithm,
                     byte_order: ByteOrder) -> MeasurementList:
        self = cls.__new__(cls)
        self.digest_alg = digest_alg
        self.byte_order = byte_order
        self._dsize = digest_alg.digest_size
        self._buf = buf
        self._offsets = offsets
        return self

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> MeasurementEntry: ...
    @overload
    def __getitem__(self, i: slice) -> MeasurementList: ...

    def __getitem__(self, i: int | slice) -> MeasurementEntry | MeasurementList:
        if isinstance(i, slice):
            return MeasurementList(
                (self[k] for k in range(*i.indices(len(self)))),
                digest_alg=self.digest_alg, byte_order=self.byte_order)
        n = len(self._offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("measurement list index out of range")
        return self._entry_at(self._offsets[i])

    def _entry_at(self, start: int) -> MeasurementEntry:
        buf, dsize = self._buf, self._dsize
        unpack = _U32[self.byte_order].unpack_from
        (pcr,) = unpack(buf, start)
        (nlen,) = unpack(buf, start + 4 + dsize)
        p = start + 8 + dsize
        name = buf[p:p + nlen].decode("ascii")
        p += nlen
        if name == "ima":
            (flen,) = unpack(buf, p + 20)
            data = buf[p:p + 24 + flen]
        else:
            (dlen,) = unpack(buf, p)
            data = buf[p + 4:p + 4 + dlen]
        return MeasurementEntry(pcr, name, buf[start + 4:start + 4 + dsize], data,
                                self.byte_order)

    def __iter__(self) -> Iterator[MeasurementEntry]:
        buf, dsize, order = self._buf, self._dsize, self.byte_order
        unpack = _U32[order].unpack_from
        head = struct.Struct(f"{'<' if order == 'little' else '>'}I{dsize}sI").unpack_from
        hdr = 8 + dsize
        new = tuple.__new__
        cls = MeasurementEntry
        last_raw, last_len, name, legacy = b"", -1, "", False
        for start in self._offsets:  # records were validated by the parser
            pcr, digest, nlen = head(buf, start)
            p = start + hdr
            if nlen != last_len or not buf.startswith(last_raw, p):
                last_raw, last_len = buf[p:p + nlen], nlen
                name = last_raw.decode("ascii")
                legacy = name == "ima"
            p += nlen
            if legacy:
                data = buf[p:p + 24 + unpack(buf, p + 20)[0]]
            else:
                data = buf[p + 4:p + 4 + unpack(buf, p)[0]]
            yield new(cls, (pcr, name, digest, data, order))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MeasurementList):
            return NotImplemented
        return (self._buf == other._buf and self.digest_alg == other.digest_alg
                and self.byte_order == other.byte_order)

    def __hash__(self) -> int:
        return hash((self._buf, self.digest_alg, self.byte_order))

    def __repr__(self) -> str:
        return (f"<MeasurementList {len(self)} entries, {self.digest_alg.kernel_name} "
                f"template digests, {self.byte_order} endian>")

    # -- conversions ------------------------------------------------------------------
    def to_bytes(self, *, byte_order: ByteOrder | None = None) -> bytes:
        """The binary list; the original bytes when parsed and the order is unchanged."""
        if byte_order is None or byte_order == self.byte_order:
            return self._buf
        return b"".join(e.to_bytes(byte_order=byte_order) for e in self)

    def to_ascii(self) -> str:
        """The text of ascii_runtime_measurements (or its ``_<alg>`` variant)."""
        return "".join(e.ascii_line() for e in self)

    def for_bank(self, alg: HashAlgorithm) -> MeasurementList:
        """The per-bank list ``binary_runtime_measurements_<alg>`` of a 6.10+ kernel."""
        return MeasurementList((e.with_digest_for(alg) for e in self), digest_alg=alg,
                               byte_order=self.byte_order)

    def __add__(self, other: MeasurementList) -> MeasurementList:
        if not isinstance(other, MeasurementList):
            return NotImplemented
        if (other.digest_alg, other.byte_order) != (self.digest_alg, self.byte_order):
            raise ParseError("cannot join lists of different digest algorithms or orders")
        shift = len(self._buf)
        offsets = array("Q", self._offsets)
        offsets.extend(o + shift for o in other._offsets)
        return MeasurementList._from_parsed(self._buf + other._buf, offsets, self.digest_alg,
                                            self.byte_order)

    def _repr_html_(self) -> str:
        """A table for notebooks: the first and last rows of a long list."""
        from .._html import measurement_list

        return measurement_list(self, digest_alg=self.digest_alg, byte_order=self.byte_order)


def parse_measurement_list(
    data: bytes | bytearray | memoryview,
    *,
    byte_order: str = "little",
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    limits: Limits = DEFAULT_LIMITS,
) -> MeasurementList:
    """Parse a binary measurement list (binary_runtime_measurements[_<alg>]).

    ``digest_alg`` is the algorithm of the stored template digests: SHA-1 for the
    classic file, the bank's for a per-bank file. Only :class:`ParseError` escapes.

    >>> from imasim.ima import MeasurementEntry, DigestWithAlgo
    >>> e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha1", bytes(20)), "/x"])
    >>> lst = parse_measurement_list(e.to_bytes())
    >>> len(lst), lst[0] == e, lst.to_bytes() == e.to_bytes()
    (1, True, True)
    """
    order = _check_order(byte_order)
    buf = bytes(data)
    offsets = array("Q")
    _Scanner(order, digest_alg.digest_size, limits).scan(buf, 0, len(buf), 0, True, offsets, 0)
    return MeasurementList._from_parsed(buf, offsets, digest_alg, order)


def iter_measurement_list(
    source: bytes | bytearray | memoryview | BinaryIO,
    *,
    byte_order: str = "little",
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    limits: Limits = DEFAULT_LIMITS,
    chunk_size: int = _CHUNK,
) -> Iterator[MeasurementEntry]:
    """Stream entries from bytes (no copy of the input) or a binary file (constant memory).

    Errors carry absolute offsets in the stream. The memory held at any time is one
    chunk plus one record (records larger than ``limits.max_template_data`` are refused).
    """
    order = _check_order(byte_order)
    scanner = _Scanner(order, digest_alg.digest_size, limits)
    if isinstance(source, bytes | bytearray | memoryview):
        mv = memoryview(source).cast("B") if isinstance(source, memoryview) else source
        pos, index, total = 0, 0, len(mv)
        while pos < total:
            # scan a window at a time so entries are produced lazily
            end = min(total, pos + chunk_size)
            new_pos, entries = scanner.scan(mv, pos, end, 0, end == total, None, index)
            if new_pos == pos:  # one record larger than the window: widen it
                new_pos, entries = scanner.scan(mv, pos, total, 0, True, None, index)
            assert entries is not None
            yield from entries
            index += len(entries)
            pos = new_pos
        return
    for chunk in iter_record_chunks(source, byte_order=order, digest_alg=digest_alg,
                                    limits=limits, chunk_size=chunk_size):
        yield from chunk


def iter_record_chunks(
    source: BinaryIO,
    *,
    byte_order: str = "little",
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    limits: Limits = DEFAULT_LIMITS,
    chunk_size: int = 1 << 20,
) -> Iterator[MeasurementList]:
    """Read a binary list from a file as a series of validated :class:`MeasurementList`
    chunks of whole records (bounded memory; errors carry absolute offsets)."""
    order = _check_order(byte_order)
    scanner = _Scanner(order, digest_alg.digest_size, limits)
    reader = _ChunkReader(source, chunk_size, limits)
    index = 0
    while reader.fill():
        buf = reader.buf
        offsets = array("Q")
        pos, _ = scanner.scan(buf, 0, len(buf), reader.base, reader.eof, offsets, index)
        if offsets:
            yield MeasurementList._from_parsed(buf[:pos] if pos < len(buf) else buf, offsets,
                                               digest_alg, order)
        index += len(offsets)
        reader.consume(pos)


class _ChunkReader:
    """A binary list read a chunk at a time: ``buf`` (the bytes left over from the last
    chunk, then the new ones) starts at absolute offset ``base``; ``eof`` when the
    source is exhausted. Memory stays bounded: a record larger than the template data
    limit is refused."""

    __slots__ = ("base", "buf", "chunk_size", "eof", "limits", "source")

    def __init__(self, source: BinaryIO, chunk_size: int, limits: Limits) -> None:
        self.source = source
        self.chunk_size = chunk_size
        self.limits = limits
        self.buf = b""
        self.base = 0
        self.eof = False

    def fill(self) -> bool:
        """Read the next chunk; False when nothing is left."""
        if not self.eof:
            chunk = self.source.read(self.chunk_size)
            self.eof = not chunk
            # chunks of 1 MiB: reused by the allocator (larger ones are fresh pages per read)
            self.buf = self.buf + chunk if self.buf else chunk
        return bool(self.buf)

    def consume(self, pos: int) -> None:
        """The first ``pos`` bytes of ``buf`` were whole records; keep the rest."""
        self.buf = buf = self.buf[pos:]
        self.base += pos
        if self.eof and buf:  # pragma: no cover - scan raises on a final incomplete record
            raise TruncatedError("incomplete record at the end", offset=self.base,
                                 field="entry")
        if not self.eof and len(buf) > self.limits.max_template_data + self.chunk_size + 4096:
            raise LimitExceededError("a record is larger than the template data limit",
                                     offset=self.base, field="entry")


def parse_ascii_measurement_list(
    text: str,
    *,
    byte_order: str = "little",
    digest_alg: HashAlgorithm | None = None,
) -> MeasurementList:
    """Parse ascii_runtime_measurements back into entries.

    The ASCII form carries everything for the built-in templates (names never contain
    spaces: the kernel stores them as ``_``), so the result serialises to the binary
    list the kernel wrote beside it. ``digest_alg`` defaults to the one whose size
    matches the template-digest column. Errors carry ``line`` (1-based).
    """
    order = _check_order(byte_order)
    entries: list[MeasurementEntry] = []
    dsize: int | None = None
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        tokens = line.split(" ")
        if len(tokens) < 3:
            raise ParseError("expected 'PCR DIGEST TEMPLATE ...'", line=lineno)
        # "%2d " pads single-digit PCRs with a leading space
        if tokens[0] == "" and len(tokens) > 3:
            tokens = tokens[1:]
        pcr_text, digest_text, name = tokens[0], tokens[1], tokens[2]
        pcr_value = decimal(pcr_text, 0xFFFFFFFF)
        if pcr_value is None:
            raise ParseError("PCR is not a 32-bit decimal number", line=lineno,
                             field="pcr", actual=pcr_text[:20])
        pcr = pcr_value
        try:
            digest = bytes.fromhex(digest_text)
        except ValueError:
            raise ParseError("bad PCR or template digest", line=lineno,
                             actual=line[:80]) from None
        if dsize is None:
            dsize = len(digest)
        elif len(digest) != dsize:
            raise ParseError("template digest size changes", line=lineno, expected=dsize,
                             actual=len(digest))
        try:
            desc = lookup_template(name)
        except UnknownTemplateError as exc:
            raise UnknownTemplateError(exc.message, line=lineno, field="template_name",
                                       actual=name[:80]) from None
        values = tokens[3:]
        if len(values) != len(desc.fields):
            raise ParseError(f"template {name} has {len(desc.fields)} fields, the line "
                             f"{len(values)}", line=lineno)
        try:
            raws = [spec.from_ascii(v, order) for spec, v in zip(desc.fields, values, strict=True)]
        except ParseError as exc:
            raise ParseError(exc.message, line=lineno, field=exc.field,
                             actual=exc.actual) from None
        u32 = _U32[order].pack
        if desc.is_legacy_ima:
            d, n = raws
            data = d + u32(max(len(n) - 1, 0)) + n[:-1]
        else:
            data = b"".join(u32(len(r)) + r for r in raws)
        entries.append(MeasurementEntry(pcr, name, digest, data, order))
    if digest_alg is None:
        by_size = {20: HashAlgorithm.SHA1, 32: HashAlgorithm.SHA256, 48: HashAlgorithm.SHA384,
                   64: HashAlgorithm.SHA512}
        digest_alg = by_size.get(dsize or 20, HashAlgorithm.SHA1)
    return MeasurementList(entries, digest_alg=digest_alg, byte_order=order)




# -- what kind of list is this? -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ListKind:
    """The digest algorithm of a binary list's stored template digests and its byte order.

    The classic ``binary_runtime_measurements`` (and the kexec buffer) store SHA-1 digests;
    the per-bank ``binary_runtime_measurements_<alg>`` lists of 6.10+ store the bank's;
    a big-endian kernel without ``ima_canonical_fmt`` writes big-endian integers.
    """

    digest_alg: HashAlgorithm
    byte_order: ByteOrder

    @property
    def per_bank(self) -> bool:
        """A per-bank list of a bank other than SHA-1 (a SHA-1 one is the classic list)."""
        return self.digest_alg is not HashAlgorithm.SHA1


_BY_SIZE: Final = {20: (HashAlgorithm.SHA1,), 32: (HashAlgorithm.SHA256, HashAlgorithm.SM3_256),
                   48: (HashAlgorithm.SHA384,), 64: (HashAlgorithm.SHA512,)}
#: PCR indices a record may name (a TPM has 24; a selection bitmap can say 32)
_MAX_RECORD_PCR: Final = 32


def detect_list_kind(head: bytes | bytearray | memoryview, *,
                     digest_alg: HashAlgorithm | None = None, byte_order: str | None = None,
                     hint: HashAlgorithm | None = None) -> ListKind:
    """The kind of a binary list, from its first bytes (the first record or more).

    A candidate (byte order x template-digest size) must read the first records as the
    parser would (a PCR below 32, a known template, fields that fit); among those left,
    the one whose first non-violation record's stored digest is the hash of its template
    data wins, which also tells sha256 from sm3. ``digest_alg`` / ``byte_order`` fix what
    is known; ``hint`` (e.g. from a file name) only breaks a tie that the content leaves
    (a list of violations alone). With nothing readable, the classic kind (SHA-1, little
    endian, or what was given) is returned and parsing reports the error.

    >>> from imasim.ima import ima_ng_entry
    >>> e = ima_ng_entry("/bin/sh", bytes(32), HashAlgorithm.SHA256)
    >>> k = detect_list_kind(e.with_digest_for(HashAlgorithm.SHA384).to_bytes(byte_order="big"))
    >>> k.digest_alg.kernel_name, k.byte_order, k.per_bank
    ('sha384', 'big', True)
    """
    orders: tuple[ByteOrder, ...] = ((_check_order(byte_order),) if byte_order is not None
                                     else ("little", "big"))
    algs: tuple[HashAlgorithm, ...]
    if digest_alg is not None:
        algs = (digest_alg,)
    else:
        algs = tuple(a for size in (20, 32, 48, 64) for a in _BY_SIZE[size])
    default = ListKind(digest_alg or (hint if hint in algs else None) or algs[0], orders[0])
    buf = bytes(head[:1 << 16])
    if not buf:
        return default
    readable: list[tuple[ListKind, MeasurementEntry | None]] = []
    for order in orders:
        for size in sorted({a.digest_size for a in algs}):
            first = _first_entries(buf, order, size)
            if first is None:
                continue
            entry = next((e for e in first if e.template_digest.strip(b"\0")), None)
            for alg in (a for a in algs if a.digest_size == size):
                readable.append((ListKind(alg, order), entry))
    if not readable:
        return default
    for kind, entry in readable:
        if entry is not None and kind.digest_alg.available and \
                entry.template_hash(kind.digest_alg) == entry.template_digest:
            return kind
    for kind, _ in readable:
        if kind.digest_alg is hint or kind.digest_alg is digest_alg:
            return kind
    return readable[0][0]


def _first_entries(buf: bytes, order: ByteOrder, dsize: int
                   ) -> list[MeasurementEntry] | None:
    """Up to the first 8 records of ``buf`` read as (order, dsize), or None when the
    first one does not read (a record cut at the end of ``buf`` reads by its header)."""
    unpack = _U32[order].unpack_from
    if len(buf) < 8 + dsize or unpack(buf, 0)[0] >= _MAX_RECORD_PCR:
        return None
    scanner = _Scanner(order, dsize, DEFAULT_LIMITS)
    end = min(len(buf), 8192)
    try:
        _, entries = scanner.scan(buf, 0, end, 0, False, None, 0)
    except ParseError as exc:
        # the records before a bad one still tell the kind
        if not exc.offset:
            return None
        try:
            _, entries = scanner.scan(buf, 0, exc.offset, 0, False, None, 0)
        except ParseError:
            return None
    assert entries is not None
    if entries:
        if any(e.pcr >= _MAX_RECORD_PCR for e in entries[:8]):
            return None
        return entries[:8]
    # the first record does not fit in buf: its name must be a known template
    (nlen,) = unpack(buf, 4 + dsize)
    raw = buf[8 + dsize:8 + dsize + nlen]
    if nlen == 0 or nlen > 255 or len(raw) < nlen:
        return None
    try:
        scanner._template(raw, 0)
    except ParseError:
        return None
    return []
