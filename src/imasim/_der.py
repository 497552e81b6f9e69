"""A bounded DER/BER TLV walker that keeps offsets and original bytes, and a DER encoder.

The kernel verifies signatures over the bytes it received (signed attributes with the
first tag byte replaced, the contents octets of the encapsulated content), never over a
re-encoding, so parsing must know where every element lies. Every error is a
:class:`~imasim.errors.ParseError` with the absolute offset of the element.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from .errors import LimitExceededError, ParseError, TruncatedError
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["Tlv", "check_bounds", "decode_oid", "der", "der_int", "der_oid", "parse_tlv"]

SEQUENCE: Final = 0x30
SET: Final = 0x31
INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OID: Final = 0x06
MAX_DEPTH: Final = 32
MAX_OID_LENGTH: Final = 128  # bytes of one OBJECT IDENTIFIER's contents


@dataclass(frozen=True, slots=True)
class Tlv:
    """One element: its tag byte, where it starts, where its contents start and end."""

    tag: int
    start: int
    content_start: int
    end: int
    data: bytes  # the whole input (shared, not copied per element)
    depth: int = 0

    @property
    def raw(self) -> bytes:
        return self.data[self.start:self.end]

    @property
    def content(self) -> bytes:
        return self.data[self.content_start:self.end]

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> Iterator[Tlv]:
        if not self.constructed:
            raise ParseError("expected a constructed element", offset=self.start,
                             field="tag", actual=hex(self.tag))
        pos = self.content_start
        while pos < self.end:
            child = parse_tlv(self.data, pos, self.end, depth=self.depth + 1)
            yield child
            pos = child.end

    def items(self, n_min: int = 0, what: str = "element") -> list[Tlv]:
        out = list(self.children())
        if len(out) < n_min:
            raise ParseError(f"{what} has {len(out)} elements, expected at least {n_min}",
                             offset=self.start, field=what)
        return out

    def expect(self, tag: int, what: str) -> Tlv:
        if self.tag != tag:
            raise ParseError(f"{what}: unexpected tag", offset=self.start, field=what,
                             expected=hex(tag), actual=hex(self.tag))
        return self


def parse_tlv(data: bytes, pos: int = 0, end: int | None = None, *, depth: int = 0) -> Tlv:
    """The element at ``pos`` (definite lengths only), checked against ``end``."""
    end = len(data) if end is None else end
    if depth > MAX_DEPTH:
        raise LimitExceededError("ASN.1 nesting too deep", offset=pos, field="depth",
                                 expected=f"<= {MAX_DEPTH}")
    if end - pos < 2:
        raise TruncatedError("ASN.1 element truncated", offset=pos, field="tag")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ParseError("multi-byte ASN.1 tags are not supported", offset=pos, field="tag")
    first = data[pos + 1]
    p = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ParseError("indefinite length is not supported", offset=pos + 1, field="length")
    else:
        n = first & 0x7F
        if n > 4:
            raise LimitExceededError("ASN.1 length field too long", offset=pos + 1,
                                     field="length", actual=n)
        if end - p < n:
            raise TruncatedError("ASN.1 length truncated", offset=pos + 1, field="length")
        length = int.from_bytes(data[p:p + n], "big")
        p += n
    if length > end - p:
        raise TruncatedError(f"ASN.1 length {length} exceeds the {end - p} bytes left",
                             offset=pos + 1, field="length", expected=f"<= {end - p}",
                             actual=length)
    return Tlv(tag, pos, p, p + length, data, depth)


def check_bounds(data: bytes, limits: Limits = DEFAULT_LIMITS, *, what: str = "DER") -> int:
    """Walk the element at the start of ``data`` and every element inside it, without
    recursion and without building objects, and refuse it before anyone decodes it.

    Refused (:class:`~imasim.errors.LimitExceededError`): more than
    ``limits.max_asn1_elements`` elements in all, nesting deeper than
    ``limits.max_asn1_depth``, an element longer than ``limits.max_asn1_length``.
    Refused (:class:`~imasim.errors.ParseError`): what :func:`parse_tlv` refuses (indefinite
    lengths, multi-byte tags, a length beyond its parent). Returns the end of the element,
    so callers can ignore (or refuse) what follows. Cost: one pass over at most
    ``max_asn1_elements`` headers, no allocation that grows with the input.
    """
    max_elements, max_depth = limits.max_asn1_elements, limits.max_asn1_depth
    max_length = limits.max_asn1_length
    ends: list[int] = []  # the end of every open constructed element
    pos, limit, count, top_end = 0, len(data), 0, -1
    while True:
        while ends and pos == ends[-1]:
            ends.pop()
        if not ends and top_end >= 0:
            return top_end
        limit = ends[-1] if ends else len(data)
        if limit - pos < 2:
            raise TruncatedError(f"{what}: ASN.1 element truncated", offset=pos, field="tag")
        tag, first = data[pos], data[pos + 1]
        if tag & 0x1F == 0x1F:
            raise ParseError(f"{what}: multi-byte ASN.1 tags are not supported", offset=pos,
                             field="tag")
        p = pos + 2
        if first < 0x80:
            length = first
        elif first == 0x80:
            raise ParseError(f"{what}: indefinite length is not supported", offset=pos + 1,
                             field="length")
        else:
            n = first & 0x7F
            if n > 4:
                raise LimitExceededError(f"{what}: ASN.1 length field too long",
                                         offset=pos + 1, field="length", actual=n)
            if limit - p < n:
                raise TruncatedError(f"{what}: ASN.1 length truncated", offset=pos + 1,
                                     field="length")
            length = int.from_bytes(data[p:p + n], "big")
            p += n
        if length > limit - p:
            raise TruncatedError(f"{what}: ASN.1 length {length} exceeds the {limit - p} "
                                 "bytes left", offset=pos + 1, field="length",
                                 expected=f"<= {limit - p}", actual=length)
        if length > max_length:
            raise LimitExceededError(f"{what}: ASN.1 element too long", offset=pos,
                                     field="length", expected=f"<= {max_length}",
                                     actual=length)
        count += 1
        if count > max_elements:
            raise LimitExceededError(f"{what}: too many ASN.1 elements", offset=pos,
                                     field="elements", expected=f"<= {max_elements}")
        if top_end < 0:
            top_end = p + length
        if tag & 0x20:
            if len(ends) >= max_depth:
                raise LimitExceededError(f"{what}: ASN.1 nesting too deep", offset=pos,
                                         field="depth", expected=f"<= {max_depth}")
            ends.append(p + length)
            pos = p
        else:
            pos = p + length


def decode_oid(t: Tlv) -> str:
    t.expect(OID, "OBJECT IDENTIFIER")
    b = t.content
    if not b or b[-1] & 0x80:
        raise ParseError("malformed OBJECT IDENTIFIER", offset=t.start, field="oid")
    if len(b) > MAX_OID_LENGTH:
        # each arc would be a Python int growing by 7 bits a byte: quadratic without this
        raise LimitExceededError("OBJECT IDENTIFIER too long", offset=t.start, field="oid",
                                 expected=f"<= {MAX_OID_LENGTH} bytes", actual=len(b))
    arcs: list[int] = []
    val = 0
    for byte in b:
        val = (val << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(val)
            val = 0
    first = arcs[0]
    head = [0, first] if first < 40 else ([1, first - 40] if first < 80 else [2, first - 80])
    return ".".join(str(a) for a in head + arcs[1:])


# -- encoding ---------------------------------------------------------------------------
def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        head = bytes([tag, n])
    else:
        nb = (n.bit_length() + 7) // 8
        head = bytes([tag, 0x80 | nb]) + n.to_bytes(nb, "big")
    return head + content


def der_int(v: int) -> bytes:
    nb = v.bit_length() // 8 + 1
    return der(INTEGER, v.to_bytes(nb, "big", signed=True))


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for v in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        body += bytes(reversed(chunk))
    return der(OID, bytes(body))
