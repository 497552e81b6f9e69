"""security/integrity/ima/ima_template.c: template descriptors, built-in and custom.

A descriptor is a name and a format ``"d-ng|n-ng|sig"``. ``ima_template_fmt=`` makes an
unnamed descriptor whose record name is the format string itself; :func:`lookup_template`
resolves either, as ``lookup_template_desc`` does, and validates custom formats with the
kernel's limits (``template_desc_init_fields``: at most 15 fields, ids of 1 to 16
characters, every id known).

>>> lookup_template("ima-sig").field_ids
('d-ng', 'n-ng', 'sig')
>>> lookup_template("d-ng|n-ng|iuid").name
'd-ng|n-ng|iuid'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import UnknownTemplateError
from .fields import FIELDS, FieldSpec

__all__ = [
    "BUILTIN_TEMPLATES",
    "IMA_TEMPLATE_FIELD_ID_MAX_LEN",
    "IMA_TEMPLATE_NUM_FIELDS_MAX",
    "TemplateDescriptor",
    "lookup_template",
]

IMA_TEMPLATE_FIELD_ID_MAX_LEN: Final = 16
IMA_TEMPLATE_NUM_FIELDS_MAX: Final = 15


@dataclass(frozen=True, slots=True)
class TemplateDescriptor:
    """``struct ima_template_desc``: ``name`` as written in the record, ``fmt``, field specs."""

    name: str
    fmt: str
    fields: tuple[FieldSpec, ...]

    @property
    def field_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.fields)

    @property
    def is_legacy_ima(self) -> bool:
        """The template named exactly ``ima``: special record layout and digest rule."""
        return self.name == "ima"


def _desc(name: str, fmt: str) -> TemplateDescriptor:
    return TemplateDescriptor(name, fmt, tuple(FIELDS[f] for f in fmt.split("|")))


#: ``builtin_templates[]``
BUILTIN_TEMPLATES: Final[dict[str, TemplateDescriptor]] = {
    d.name: d
    for d in (
        _desc("ima", "d|n"),
        _desc("ima-ng", "d-ng|n-ng"),
        _desc("ima-ngv2", "d-ngv2|n-ng"),
        _desc("ima-sig", "d-ng|n-ng|sig"),
        _desc("ima-sigv2", "d-ngv2|n-ng|sig"),
        _desc("ima-buf", "d-ng|n-ng|buf"),
        _desc("ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"),
        _desc("evm-sig",
              "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"),
    )
}

_CUSTOM_CACHE: dict[str, TemplateDescriptor] = {}


def lookup_template(name: str) -> TemplateDescriptor:
    """The descriptor for a built-in template name or a custom ``ima_template_fmt`` string.

    Raises :class:`~imasim.errors.UnknownTemplateError` for an unknown name or an invalid
    format (unknown field id, empty id, id longer than 16, more than 15 fields).
    """
    found = BUILTIN_TEMPLATES.get(name)
    if found is not None:
        return found
    found = _CUSTOM_CACHE.get(name)
    if found is not None:
        return found
    ids = name.split("|")
    if len(ids) > IMA_TEMPLATE_NUM_FIELDS_MAX:
        raise UnknownTemplateError(f"template format has {len(ids)} fields",
                                   field="template_name", expected="at most 15",
                                   actual=name[:80])
    for fid in ids:
        if not 0 < len(fid) <= IMA_TEMPLATE_FIELD_ID_MAX_LEN or fid not in FIELDS:
            raise UnknownTemplateError(f"unknown template or field {fid!r}",
                                       field="template_name", actual=name[:80])
    desc = TemplateDescriptor(name, name, tuple(FIELDS[f] for f in ids))
    if len(_CUSTOM_CACHE) < 256:  # a memo of pure values, bounded; not state
        _CUSTOM_CACHE[name] = desc
    return desc
