"""A measurement list as JSON, and back, byte for byte.

``imasim log show --json`` and ``imasim log convert --to json`` print this document; a
program reads the decoded ``fields`` of each entry, and ``imasim log convert`` turns the
document back into the binary list it came from, because every entry also carries its
raw ``template_data``::

    {"format": "imasim-measurement-list/1", "template_digest_alg": "sha1",
     "byte_order": "little",
     "entries": [{"pcr": 10, "template_name": "ima-ng", "template_digest": "<hex>",
                  "violation": false, "fields": {"d-ng": "sha256:<hex>", "n-ng": "/init"},
                  "template_data": "<hex>"}, ...]}

Reading it back trusts nothing the document says beyond what the binary list would: the
records are serialised and parsed again by :func:`~imasim.ima.parse_measurement_list`,
with its checks and limits; ``fields`` and ``violation`` are ignored (they are derived).

>>> from imasim.ima import MeasurementList, DigestWithAlgo, MeasurementEntry
>>> e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/x"])
>>> lst = MeasurementList([e])
>>> text = measurement_list_to_json(lst)
>>> parse_json_measurement_list(text) == lst
True
"""

from __future__ import annotations

import json
from typing import Any

from ..algorithms import HashAlgorithm
from ..errors import ParseError, UnsupportedAlgorithmError
from .codec import MeasurementList, parse_measurement_list
from .entry import MeasurementEntry

__all__ = ["FORMAT", "entry_to_dict", "measurement_list_from_json", "measurement_list_to_dict",
           "measurement_list_to_json", "parse_json_measurement_list"]

#: The ``format`` member of the document (its version after the slash).
FORMAT = "imasim-measurement-list/1"


def _field_json(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, int | str):
        return value
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def entry_to_dict(e: MeasurementEntry) -> dict[str, Any]:
    """One entry: PCR, template, digest, decoded fields and the raw template data."""
    try:
        fields: dict[str, object] | None = {k: _field_json(v) for k, v in e.fields.items()}
        problem = None
    except ParseError as exc:
        fields, problem = None, str(exc)
    out: dict[str, Any] = {"pcr": e.pcr, "template_name": e.template_name,
                           "template_digest": e.template_digest.hex(),
                           "violation": e.is_violation, "fields": fields}
    if problem is not None:
        out["malformed"] = problem
    out["template_data"] = e.template_data.hex()
    return out


def measurement_list_to_dict(lst: MeasurementList) -> dict[str, Any]:
    """The JSON document of ``lst`` as Python objects (see the module docstring)."""
    return {"format": FORMAT, "template_digest_alg": lst.digest_alg.kernel_name,
            "byte_order": lst.byte_order, "entries": [entry_to_dict(e) for e in lst]}


def measurement_list_to_json(lst: MeasurementList) -> str:
    """The JSON text of ``lst``, indented by one space as every imasim JSON output is."""
    return json.dumps(measurement_list_to_dict(lst), indent=1)


def _get(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ParseError(f"{where}: {key!r} must be a {kind.__name__}", field=key,
                         path=(where,))
    return value


def measurement_list_from_json(doc: object) -> MeasurementList:
    """The list a document (already decoded from JSON) describes; :class:`ParseError`
    for anything that is not such a document or whose records do not parse."""
    if isinstance(doc, list):
        raise ParseError("a JSON array of entries without template data (an older imasim's "
                         "output): it cannot be converted back", field="format")
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith(
            "imasim-measurement-list/"):
        raise ParseError(f"not a JSON measurement list (expected \"format\": \"{FORMAT}\")",
                         field="format")
    if doc["format"] != FORMAT:
        raise ParseError(f"unknown version {doc['format']!r}", field="format",
                         expected=FORMAT)
    try:
        alg = HashAlgorithm.from_name(_get(doc, "template_digest_alg", str, "list"))
    except UnsupportedAlgorithmError as exc:
        raise ParseError(str(exc), field="template_digest_alg") from None
    order = _get(doc, "byte_order", str, "list")
    if order not in ("little", "big"):
        raise ParseError("byte_order is little or big", field="byte_order", actual=order)
    records: list[bytes] = []
    for i, item in enumerate(_get(doc, "entries", list, "list")):
        where = f"entries[{i}]"
        if not isinstance(item, dict):
            raise ParseError(f"{where} is not an object", path=(where,))
        pcr = _get(item, "pcr", int, where)
        name = _get(item, "template_name", str, where)
        try:
            digest = bytes.fromhex(_get(item, "template_digest", str, where))
            data = bytes.fromhex(_get(item, "template_data", str, where))
        except ValueError:
            raise ParseError(f"{where}: template_digest and template_data are hex",
                             path=(where,)) from None
        if not 0 <= pcr <= 0xFFFFFFFF or not name.isascii() or not 0 < len(name) <= 255:
            raise ParseError(f"{where}: PCR or template name out of range", path=(where,))
        if len(digest) != alg.digest_size:
            raise ParseError(f"{where}: template digest size", path=(where,),
                             expected=alg.digest_size, actual=len(digest))
        records.append(MeasurementEntry(pcr, name, digest, data, order).to_bytes(
            byte_order=order))
    return parse_measurement_list(b"".join(records), byte_order=order, digest_alg=alg)


def parse_json_measurement_list(text: str | bytes) -> MeasurementList:
    """Parse the JSON text :func:`measurement_list_to_json` writes."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"not JSON: {exc or 'nested too deeply'}", field="json") from None
    return measurement_list_from_json(doc)
