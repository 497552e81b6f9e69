"""security/integrity/ima/ima.h: struct ima_template_entry, as an immutable value.

An entry is what one record of ``binary_runtime_measurements`` says, kept exactly as
given: the PCR, the template name, the stored template digest (SHA-1 in the classic
list, the bank's digest in a per-bank list) and the raw template data. Fields decode on
access. Nothing here is verified: a verifier trusts an entry only after replay.

The template data of the legacy ``ima`` template is kept in its record form
(20-byte digest, u32 name length, name without NUL), because that is what the list holds.

>>> from imasim.algorithms import HashAlgorithm
>>> e = MeasurementEntry.create("ima-ng", {"d-ng": DigestWithAlgo("sha256", bytes(32)),
...                                         "n-ng": "/usr/bin/true"})
>>> e.template_name, e.pcr, e.fields["n-ng"]
('ima-ng', 10, '/usr/bin/true')
>>> e.template_digest == HashAlgorithm.SHA1.hash(e.template_data)
True
>>> e.ascii_line()[:3]
'10 '
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from ..algorithms import HashAlgorithm
from ..errors import ParseError, UsageError
from .fields import ByteOrder, DigestWithAlgo, FieldValue
from .templates import TemplateDescriptor, lookup_template

__all__ = ["IMA_EVENT_NAME_LEN_MAX", "DigestWithAlgo", "MeasurementEntry"]

#: ima.h: the limit of the legacy ``n`` field, and its zero-padded size (+1) in the digest.
IMA_EVENT_NAME_LEN_MAX: Final = 255
_LEGACY_DIGEST_LEN: Final = 20
_U32 = {"little": struct.Struct("<I"), "big": struct.Struct(">I")}


class _EntryFields(NamedTuple):
    pcr: int
    template_name: str
    template_digest: bytes
    template_data: bytes
    byte_order: ByteOrder


class MeasurementEntry(_EntryFields):
    """One measurement-list record (immutable; a tuple underneath, for speed and size).

    ``byte_order`` is the order of the list the entry came from ("little" unless the
    kernel was big-endian without ``ima_canonical_fmt``); it governs the integers inside
    the template data (field lengths, iuid/igid/imode, xattrlengths).
    """

    __slots__ = ()

    def __new__(cls, pcr: int, template_name: str, template_digest: bytes,
                template_data: bytes, byte_order: ByteOrder = "little") -> MeasurementEntry:
        return tuple.__new__(cls, (pcr, template_name, template_digest, template_data,
                                   byte_order))

    # -- what the record says ---------------------------------------------------------
    @property
    def descriptor(self) -> TemplateDescriptor:
        return lookup_template(self.template_name)

    @property
    def is_violation(self) -> bool:
        """A violation is stored with an all-zero template digest (ima_add_violation)."""
        return not self.template_digest.strip(b"\0")

    def raw_fields(self) -> tuple[bytes, ...]:
        """The stored bytes of each field, in template order (no length prefixes)."""
        data = self.template_data
        if self.template_name == "ima":
            if len(data) < _LEGACY_DIGEST_LEN + 4:
                raise ParseError("legacy 'ima' record too short", field="template_data")
            return (data[:_LEGACY_DIGEST_LEN], data[_LEGACY_DIGEST_LEN + 4:] + b"\0")
        return split_template_data(data, len(self.descriptor.fields), self.byte_order)

    @property
    def fields(self) -> dict[str, FieldValue]:
        """Decoded field values by field id (``None`` for an empty field)."""
        desc = self.descriptor
        return {spec.id: spec.decode(raw, self.byte_order)
                for spec, raw in zip(desc.fields, self.raw_fields(), strict=True)}

    @property
    def event_name(self) -> str:
        """The ``n-ng`` (or ``n``) field: a path, ``boot_aggregate``, a keyring name..."""
        for key in ("n-ng", "n"):
            value = self.fields.get(key)
            if isinstance(value, str):
                return value
        return ""

    @property
    def file_digest(self) -> DigestWithAlgo | None:
        """The event digest (``d-ng``/``d-ngv2``; ``d`` as sha1) or ``None``."""
        fields = self.fields
        for key in ("d-ng", "d-ngv2"):
            value = fields.get(key)
            if isinstance(value, DigestWithAlgo):
                return value
        raw = fields.get("d")
        if isinstance(raw, bytes):
            return DigestWithAlgo("sha1" if len(raw) == 20 else "md5", raw)
        return None

    # -- digests ----------------------------------------------------------------------
    def template_hash(self, alg: HashAlgorithm) -> bytes:
        """ima_calc_field_array_hash: the bank hash over the template data.

        For every template but ``ima``, the hash of the template data exactly as stored
        (field length prefixes included). For ``ima``: H(d || n zero-padded to 256 bytes).
        """
        if self.template_name == "ima":
            d, n = self.raw_fields()
            return alg.hash(d + n.ljust(IMA_EVENT_NAME_LEN_MAX + 1, b"\0"))
        return alg.hash(self.template_data)

    def extend_value(self, alg: HashAlgorithm) -> bytes:
        """What the kernel extends into bank ``alg``: 0xff..ff for a violation."""
        if self.is_violation:
            return alg.ones
        return self.template_hash(alg)

    # -- serialisation ----------------------------------------------------------------
    def to_bytes(self, *, byte_order: ByteOrder | None = None) -> bytes:
        """The binary record (ima_measurements_show); in another ``byte_order``, the
        record :meth:`with_byte_order` gives."""
        if not 0 <= self.pcr <= 0xFFFFFFFF:
            raise UsageError(f"PCR index {self.pcr} does not fit the u32 of a record")
        if byte_order is not None and byte_order != self.byte_order:
            return self.with_byte_order(byte_order).to_bytes()
        u32 = _U32[self.byte_order].pack
        name = self.template_name.encode("ascii")
        head = u32(self.pcr) + self.template_digest + u32(len(name)) + name
        if self.template_name == "ima":
            return head + self.template_data
        return head + u32(len(self.template_data)) + self.template_data

    def ascii_line(self) -> str:
        """The line ima_ascii_measurements_show prints, with its newline."""
        parts = [f"{self.pcr:2d} {self.template_digest.hex()} {self.template_name}"]
        desc = self.descriptor
        for spec, raw in zip(desc.fields, self.raw_fields(), strict=True):
            parts.append(" " + spec.ascii(raw, self.byte_order))
        return "".join(parts) + "\n"

    # -- construction -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        template: str | TemplateDescriptor,
        fields: Mapping[str, FieldValue] | Sequence[FieldValue],
        *,
        pcr: int = 10,
        byte_order: ByteOrder = "little",
        digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
        violation: bool = False,
    ) -> MeasurementEntry:
        """Build an entry from decoded field values as the kernel would.

        Computes the template data (ima_write_template_field_data: string fields get
        spaces replaced by ``_`` and a NUL) and the stored template digest in
        ``digest_alg`` (SHA-1 for the classic list). ``violation=True`` stores a zero
        digest, as ima_add_violation does. Missing fields are empty.
        """
        desc = template if isinstance(template, TemplateDescriptor) else lookup_template(template)
        if isinstance(fields, Mapping):
            unknown = set(fields) - set(desc.field_ids)
            if unknown:
                raise UsageError(f"template {desc.name} has no field(s) {sorted(unknown)}")
            values = [fields.get(fid) for fid in desc.field_ids]
        else:
            values = list(fields)
            if len(values) != len(desc.fields):
                raise UsageError(f"template {desc.name} has {len(desc.fields)} fields")
        raws = [spec.encode(v, byte_order) for spec, v in zip(desc.fields, values, strict=True)]
        u32 = _U32[byte_order].pack
        if desc.is_legacy_ima:
            d, n = raws
            if len(n) - 1 > IMA_EVENT_NAME_LEN_MAX:
                raise UsageError("the 'n' field holds at most 255 characters")
            d = d.ljust(_LEGACY_DIGEST_LEN, b"\0")
            data = d + u32(len(n) - 1) + n[:-1]
        else:
            data = b"".join(u32(len(r)) + r for r in raws)
        entry = cls(pcr, desc.name, b"", data, byte_order)
        digest = digest_alg.zero if violation else entry.template_hash(digest_alg)
        return cls(pcr, desc.name, digest, data, byte_order)

    def with_byte_order(self, byte_order: ByteOrder) -> MeasurementEntry:
        """This measurement as a kernel of the other byte order records it.

        A big-endian kernel without ``ima_canonical_fmt`` writes the field lengths and
        the integer fields (iuid, igid, imode, xattrlengths; the ``ima`` template's name
        length) in its own order and hashes those bytes, so the template data is
        re-encoded and the template digest recomputed (in the algorithm the stored one
        is in). A violation keeps its zero digest; a digest that does not match its
        template data (a forged record) is kept as it is, so it stays detectable.
        """
        if byte_order == self.byte_order:
            return self
        desc = self.descriptor
        values = [spec.decode(raw, self.byte_order)
                  for spec, raw in zip(desc.fields, self.raw_fields(), strict=True)]
        again = MeasurementEntry.create(desc, values, pcr=self.pcr, byte_order=byte_order,
                                        violation=True)
        digest = self.template_digest
        if not self.is_violation:
            for alg in HashAlgorithm:
                if alg.digest_size == len(digest) and alg.available and \
                        self.template_hash(alg) == digest:
                    digest = again.template_hash(alg)
                    break
        return again._replace(template_digest=digest)

    def with_digest_for(self, alg: HashAlgorithm) -> MeasurementEntry:
        """This entry as the per-bank list of ``alg`` stores it (6.10+)."""
        digest = alg.zero if self.is_violation else self.template_hash(alg)
        return self._replace(template_digest=digest)

    def __repr__(self) -> str:
        return (f"MeasurementEntry(pcr={self.pcr}, template_name={self.template_name!r}, "
                f"template_digest={self.template_digest.hex()!r}, "
                f"event_name={self._safe_name()!r})")

    def _repr_html_(self) -> str:
        """The entry's header and every field, as the kernel prints it, for notebooks."""
        from .._html import measurement_entry

        return measurement_entry(self)

    def _safe_name(self) -> str:
        try:
            return self.event_name
        except ParseError:
            return "<malformed>"


def split_template_data(data: bytes, nfields: int, order: ByteOrder = "little",
                        *, base: int = 0) -> tuple[bytes, ...]:
    """Split template data into its fields (ima_parse_buf with ENFORCE_FIELDS|ENFORCE_BUFEND).

    ``base`` is the absolute offset of ``data`` in the caller's input, for errors.
    """
    unpack = _U32[order].unpack_from
    out: list[bytes] = []
    pos, end = 0, len(data)
    for i in range(nfields):
        if end - pos < 4:
            raise ParseError(f"template data ends before field {i}'s length",
                             offset=base + pos, field="field_len", expected=nfields,
                             actual=i)
        (n,) = unpack(data, pos)
        pos += 4
        if n > end - pos:
            raise ParseError(f"field {i} length {n} exceeds the remaining {end - pos} bytes",
                             offset=base + pos - 4, field="field_len")
        out.append(data[pos:pos + n])
        pos += n
    if pos != end:
        raise ParseError(f"{end - pos} bytes after the last of {nfields} fields",
                         offset=base + pos, field="template_data")
    return tuple(out)


