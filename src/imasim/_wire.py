"""Offset-tracking cursor over bytes, and a matching writer.

Every parser in imasim reads through :class:`Reader`, so that a truncated or oversized
field raises :class:`~imasim.errors.ParseError` (never ``struct.error`` or
``IndexError``) carrying the absolute offset, and so that no length field read from
untrusted input is ever used to size an allocation before it is checked against the
bytes that are really there.
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import LimitExceededError, ParseError, TrailingDataError, TruncatedError

__all__ = ["Reader", "Writer", "decimal"]

_U16: Final = {"<": struct.Struct("<H"), ">": struct.Struct(">H")}
_U32: Final = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
_U64: Final = {"<": struct.Struct("<Q"), ">": struct.Struct(">Q")}


def decimal(text: str | bytes, max_value: int) -> int | None:
    """ASCII decimal digits (leading zeros allowed) as an int, or None when ``text`` is
    not that or the value is above ``max_value``.

    The digits are counted before ``int()`` sees them: Python refuses more than 4,300
    digits with a ValueError, and converting fewer is still quadratic in their number.
    """
    if isinstance(text, str):
        if not (text.isascii() and text.isdigit()):
            return None
        digits: str | bytes = text.lstrip("0")
    else:
        if not text.isdigit():
            return None
        digits = text.lstrip(b"0")
    if len(digits) > len(str(max_value)):
        return None
    value = int(digits or b"0")
    return value if value <= max_value else None


class Reader:
    """Read fields from ``data`` starting at ``offset``; ``base`` is added to reported offsets.

    ``order`` is ``"<"`` (little endian) or ``">"`` (big endian). Slices returned by
    :meth:`view` share memory with the input (no copy); :meth:`take` returns ``bytes``.
    """

    __slots__ = ("_data", "_end", "base", "order", "path", "pos")

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        *,
        order: str = "<",
        offset: int = 0,
        end: int | None = None,
        base: int = 0,
        path: tuple[str, ...] = (),
    ) -> None:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        self._data = mv
        self._end = len(mv) if end is None else end
        self.pos = offset
        self.order = order
        self.base = base
        self.path = path

    # -- state ------------------------------------------------------------------------
    @property
    def offset(self) -> int:
        """The absolute offset of the next byte, as reported in errors."""
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self._end

    def error(self, message: str, *, field: str | None = None, offset: int | None = None,
              expected: object = None, actual: object = None) -> ParseError:
        return ParseError(message, offset=self.offset if offset is None else offset,
                          field=field, path=self.path, expected=expected, actual=actual)

    def _need(self, n: int, field: str) -> None:
        if n > self._end - self.pos:
            raise TruncatedError(
                f"needs {n} bytes, {self._end - self.pos} remain",
                offset=self.offset,
                field=field,
                path=self.path,
                expected=n,
                actual=self._end - self.pos,
            )

    # -- fixed-size integers ----------------------------------------------------------
    def u8(self, field: str) -> int:
        self._need(1, field)
        v = self._data[self.pos]
        self.pos += 1
        return v

    def u16(self, field: str) -> int:
        self._need(2, field)
        (v,) = _U16[self.order].unpack_from(self._data, self.pos)
        self.pos += 2
        return int(v)

    def u32(self, field: str) -> int:
        self._need(4, field)
        (v,) = _U32[self.order].unpack_from(self._data, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, field: str) -> int:
        self._need(8, field)
        (v,) = _U64[self.order].unpack_from(self._data, self.pos)
        self.pos += 8
        return int(v)

    # -- byte strings -----------------------------------------------------------------
    def view(self, n: int, field: str) -> memoryview:
        """``n`` bytes as a zero-copy view; ``n`` is checked against what remains first."""
        if n < 0:
            raise self.error(f"negative length {n}", field=field)
        self._need(n, field)
        v = self._data[self.pos : self.pos + n]
        self.pos += n
        return v

    def take(self, n: int, field: str) -> bytes:
        return bytes(self.view(n, field))

    def sized(self, length_field: str, field: str, *, width: int = 4,
              limit: int | None = None) -> memoryview:
        """A length-prefixed byte string: ``u16``/``u32`` length then that many bytes.

        ``limit`` caps the length (LimitExceededError); the length is also checked against
        the bytes that remain before anything is sliced.
        """
        start = self.offset
        n = self.u16(length_field) if width == 2 else self.u32(length_field)
        if limit is not None and n > limit:
            raise LimitExceededError(
                f"length {n} exceeds the limit {limit}",
                offset=start, field=length_field, path=self.path, expected=f"<= {limit}",
                actual=n,
            )
        if n > self._end - self.pos:
            raise TruncatedError(
                f"length {n} exceeds the remaining {self._end - self.pos} bytes",
                offset=start, field=length_field, path=self.path,
                expected=f"<= {self._end - self.pos}", actual=n,
            )
        return self.view(n, field)

    def rest(self) -> memoryview:
        v = self._data[self.pos : self._end]
        self.pos = self._end
        return v

    def expect_end(self, what: str = "structure") -> None:
        if self.pos != self._end:
            raise TrailingDataError(
                f"{self._end - self.pos} trailing bytes after the {what}",
                offset=self.offset, path=self.path, expected=0, actual=self._end - self.pos,
            )

    def sub(self, n: int, field: str, *, path: tuple[str, ...] | None = None) -> Reader:
        """A reader over the next ``n`` bytes (checked), advancing this one past them."""
        self._need(n, field)
        r = Reader(self._data, order=self.order, offset=self.pos, end=self.pos + n,
                   base=self.base, path=self.path if path is None else path)
        self.pos += n
        return r


class Writer:
    """Append fields to a growing buffer; ``getvalue()`` returns ``bytes``."""

    __slots__ = ("_buf", "order")

    def __init__(self, *, order: str = "<") -> None:
        self._buf = bytearray()
        self.order = order

    def u8(self, v: int) -> Writer:
        self._buf.append(v)
        return self

    def u16(self, v: int) -> Writer:
        self._buf += _U16[self.order].pack(v)
        return self

    def u32(self, v: int) -> Writer:
        self._buf += _U32[self.order].pack(v)
        return self

    def u64(self, v: int) -> Writer:
        self._buf += _U64[self.order].pack(v)
        return self

    def raw(self, b: bytes | bytearray | memoryview) -> Writer:
        self._buf += b
        return self

    def sized(self, b: bytes | bytearray | memoryview, *, width: int = 4) -> Writer:
        (self.u16 if width == 2 else self.u32)(len(b))
        self._buf += b
        return self

    def __len__(self) -> int:
        return len(self._buf)

    def getvalue(self) -> bytes:
        return bytes(self._buf)
