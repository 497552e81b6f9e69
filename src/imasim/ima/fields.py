"""security/integrity/ima/ima_template_lib.c: the template fields, their bytes and their ASCII.

Each field id of ``supported_fields[]`` (ima_template.c) maps to a :class:`FieldSpec`
that knows the field's data format (``enum data_formats``), how to decode the stored
bytes into a typed value, how to encode a value back into the exact stored bytes, and
how ``ima_show_template_data_ascii`` prints it.

>>> spec = FIELDS["d-ng"]
>>> raw = spec.encode(DigestWithAlgo("sha256", bytes(32)))
>>> raw[:8]
b'sha256:\\x00'
>>> spec.ascii(raw, "little")[:12]
'sha256:00000'
>>> FIELDS["imode"].ascii(FIELDS["imode"].encode(0o100755, "little"), "little")
'33261'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import ParseError, UsageError

__all__ = [
    "FIELDS",
    "DataFormat",
    "DigestWithAlgo",
    "FieldSpec",
    "FieldValue",
]

ByteOrder = Literal["little", "big"]


class DataFormat(enum.Enum):
    """``enum data_formats`` in ima_template_lib.h."""

    DIGEST = "digest"  # d: raw digest
    DIGEST_WITH_ALGO = "digest_with_algo"  # d-ng, d-modsig: "<alg>:" NUL digest
    DIGEST_WITH_TYPE_AND_ALGO = "digest_with_type_and_algo"  # d-ngv2: "<type>:<alg>:" NUL digest
    STRING = "string"  # n, n-ng, xattrnames: bytes + NUL, printed with %s
    HEX = "hex"  # sig, buf, modsig, evmsig, xattrlengths, xattrvalues
    UINT = "uint"  # iuid, igid, imode: decimal


@dataclass(frozen=True, slots=True)
class DigestWithAlgo:
    """A ``d-ng``/``d-modsig``/``d-ngv2`` value: algorithm name, optional type, digest.

    ``digest_type`` is ``None`` for d-ng and d-modsig, ``"ima"`` or ``"verity"`` for d-ngv2.
    """

    algo: str
    digest: bytes
    digest_type: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.digest_type}:" if self.digest_type is not None else ""
        return f"{prefix}{self.algo}:{self.digest.hex()}"


FieldValue = bytes | str | int | DigestWithAlgo | tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One template field: id, data format, and (for UINT) the stored width in bytes."""

    id: str
    fmt: DataFormat
    width: int = 0
    description: str = ""

    # -- decode ----------------------------------------------------------------------
    def decode(self, raw: bytes, order: ByteOrder = "little", *, offset: int = 0) -> FieldValue:
        """The typed value of the stored bytes ``raw`` (``None`` for an empty field).

        ``offset`` is the absolute offset of ``raw`` in the caller's input, for errors.
        """
        if not raw:
            return None
        fmt = self.fmt
        if fmt is DataFormat.DIGEST:
            return bytes(raw)
        if fmt is DataFormat.HEX:
            if self.id == "xattrlengths":
                if len(raw) % 4:
                    raise ParseError("length is not a multiple of 4", offset=offset,
                                     field=self.id, actual=len(raw))
                return tuple(int.from_bytes(raw[i:i + 4], order) for i in range(0, len(raw), 4))
            return bytes(raw)
        if fmt is DataFormat.UINT:
            if len(raw) not in (1, 2, 4, 8):
                raise ParseError("integer field of unusual width", offset=offset, field=self.id,
                                 expected="1, 2, 4 or 8 bytes", actual=len(raw))
            return int.from_bytes(raw, order)
        if fmt is DataFormat.STRING:
            nul = raw.find(b"\0")
            text = raw if nul < 0 else raw[:nul]
            return text.decode("utf-8", "surrogateescape")
        # digest with algorithm (and type)
        nul = raw.find(b"\0")
        if nul < 0:
            raise ParseError("digest prefix has no NUL terminator", offset=offset, field=self.id)
        prefix = raw[:nul].decode("ascii", "surrogateescape")
        if not prefix.endswith(":"):
            raise ParseError("digest prefix does not end with ':'", offset=offset,
                             field=self.id, actual=prefix)
        digest = bytes(raw[nul + 1:])
        parts = prefix[:-1].split(":")
        if fmt is DataFormat.DIGEST_WITH_TYPE_AND_ALGO:
            if len(parts) != 2:
                raise ParseError("expected '<type>:<algo>:'", offset=offset, field=self.id,
                                 actual=prefix)
            return DigestWithAlgo(parts[1], digest, parts[0])
        return DigestWithAlgo(prefix[:-1], digest)

    # -- encode ----------------------------------------------------------------------
    def encode(self, value: FieldValue, order: ByteOrder = "little") -> bytes:
        """The exact bytes the kernel stores for ``value`` (``None`` -> empty field)."""
        if value is None:
            return b""
        fmt = self.fmt
        if fmt is DataFormat.DIGEST or (fmt is DataFormat.HEX and self.id != "xattrlengths"):
            if not isinstance(value, bytes | bytearray | memoryview):
                raise UsageError(f"field {self.id} takes bytes, not {type(value).__name__}")
            return bytes(value)
        if fmt is DataFormat.HEX:  # xattrlengths
            if not isinstance(value, tuple):
                raise UsageError("field xattrlengths takes a tuple of ints")
            return b"".join(int(v).to_bytes(4, order) for v in value)
        if fmt is DataFormat.UINT:
            if not isinstance(value, int):
                raise UsageError(f"field {self.id} takes an int")
            return value.to_bytes(self.width, order)
        if fmt is DataFormat.STRING:
            if isinstance(value, bytes):
                text = value
            elif isinstance(value, str):
                text = value.encode("utf-8", "surrogateescape")
            else:
                raise UsageError(f"field {self.id} takes a str")
            # ima_write_template_field_data: spaces become '_', a NUL is appended
            return text.replace(b" ", b"_") + b"\0"
        if not isinstance(value, DigestWithAlgo):
            raise UsageError(f"field {self.id} takes a DigestWithAlgo")
        if fmt is DataFormat.DIGEST_WITH_TYPE_AND_ALGO:
            prefix = f"{value.digest_type or 'ima'}:{value.algo}:"
        else:
            prefix = f"{value.algo}:"
        return prefix.encode("ascii") + b"\0" + bytes(value.digest)

    # -- ASCII -----------------------------------------------------------------------
    def ascii(self, raw: bytes, order: ByteOrder = "little") -> str:
        """``ima_show_template_data_ascii``: the text after the field's leading space."""
        if not raw:
            return ""
        fmt = self.fmt
        if fmt is DataFormat.DIGEST or fmt is DataFormat.HEX:
            return raw.hex()
        if fmt is DataFormat.UINT:
            return str(int.from_bytes(raw, order))
        if fmt is DataFormat.STRING:
            nul = raw.find(b"\0")
            return (raw if nul < 0 else raw[:nul]).decode("utf-8", "surrogateescape")
        # digest with algo: print up to the NUL, skip the last ':' + NUL, then hex
        nul = raw.find(b"\0")
        end = len(raw) if nul < 0 else nul
        colon = raw.rfind(b":", 0, end)
        if colon < 0:
            return raw.hex()
        return raw[:colon + 1].decode("ascii", "surrogateescape") + raw[colon + 2:].hex()

    def from_ascii(self, text: str, order: ByteOrder = "little") -> bytes:
        """The stored bytes for the ASCII rendering ``text`` (inverse of :meth:`ascii`)."""
        if text == "":
            return b""
        fmt = self.fmt
        try:
            if fmt is DataFormat.DIGEST or fmt is DataFormat.HEX:
                return bytes.fromhex(text)
            if fmt is DataFormat.UINT:
                return int(text, 10).to_bytes(self.width, order)
            if fmt is DataFormat.STRING:
                return text.encode("utf-8", "surrogateescape") + b"\0"
            colon = text.rfind(":")
            if colon < 0:
                raise ParseError("digest without '<algo>:' prefix", field=self.id, actual=text)
            return (text[:colon + 1].encode("ascii") + b"\0" + bytes.fromhex(text[colon + 1:]))
        except (ValueError, OverflowError, UnicodeEncodeError) as exc:
            if isinstance(exc, ParseError):
                raise
            raise ParseError(f"bad ASCII value: {exc}", field=self.id, actual=text[:80]) from None


_SPECS: Final = (
    FieldSpec("d", DataFormat.DIGEST, description="event digest (SHA-1/MD5, no prefix)"),
    FieldSpec("n", DataFormat.STRING, description="event name, at most 255 characters"),
    FieldSpec("d-ng", DataFormat.DIGEST_WITH_ALGO, description="event digest with algorithm"),
    FieldSpec("d-ngv2", DataFormat.DIGEST_WITH_TYPE_AND_ALGO,
              description="event digest with type (ima/verity) and algorithm"),
    FieldSpec("n-ng", DataFormat.STRING, description="event name, no length limit"),
    FieldSpec("sig", DataFormat.HEX, description="security.ima signature (or EVM portable sig)"),
    FieldSpec("buf", DataFormat.HEX, description="buffer of a buffer measurement"),
    FieldSpec("d-modsig", DataFormat.DIGEST_WITH_ALGO,
              description="digest of the file without its appended signature"),
    FieldSpec("modsig", DataFormat.HEX, description="appended PKCS#7 signature"),
    FieldSpec("evmsig", DataFormat.HEX, description="security.evm portable signature"),
    FieldSpec("iuid", DataFormat.UINT, 4, "inode uid"),
    FieldSpec("igid", DataFormat.UINT, 4, "inode gid"),
    FieldSpec("imode", DataFormat.UINT, 2, "inode mode"),
    FieldSpec("xattrnames", DataFormat.STRING, description="EVM-protected xattr names, '|'-joined"),
    FieldSpec("xattrlengths", DataFormat.HEX, description="u32 length of each xattr value"),
    FieldSpec("xattrvalues", DataFormat.HEX, description="the xattr values, concatenated"),
)

#: ``supported_fields[]``: field id -> spec.
FIELDS: Final[dict[str, FieldSpec]] = {s.id: s for s in _SPECS}
