"""The IMA measurement list: templates, fields, entries, binary and ASCII codecs.

The codecs do not verify anything: an entry says what the bytes said. Trust an entry
only after :mod:`imasim.ima.replay` matched it against a verified quote.
"""

from __future__ import annotations

from .builders import (
    boot_aggregate_entry,
    file_entry,
    ima_buf_entry,
    ima_ng_entry,
    violation_entry,
)
from .codec import (
    MeasurementList,
    iter_measurement_list,
    parse_ascii_measurement_list,
    parse_measurement_list,
)
from .entry import MeasurementEntry
from .fields import FIELDS, DataFormat, DigestWithAlgo, FieldSpec
from .templates import BUILTIN_TEMPLATES, TemplateDescriptor, lookup_template

__all__ = [
    "BUILTIN_TEMPLATES",
    "FIELDS",
    "DataFormat",
    "DigestWithAlgo",
    "FieldSpec",
    "MeasurementEntry",
    "MeasurementList",
    "TemplateDescriptor",
    "boot_aggregate_entry",
    "file_entry",
    "ima_buf_entry",
    "ima_ng_entry",
    "iter_measurement_list",
    "lookup_template",
    "parse_ascii_measurement_list",
    "parse_measurement_list",
    "violation_entry",
]
