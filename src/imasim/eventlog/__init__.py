"""The firmware's TCG event log (``binary_bios_measurements``): codec, decoding, replay.

See docs/eventlog.md.
"""

from __future__ import annotations

from .codec import (
    SPEC_ID_SIGNATURE,
    Digest,
    Event,
    EventLog,
    EventSpec,
    EventType,
    LogFormat,
    SpecIdEvent,
    parse_eventlog,
)

__all__ = [
    "SPEC_ID_SIGNATURE",
    "Digest",
    "Event",
    "EventLog",
    "EventSpec",
    "EventType",
    "LogFormat",
    "SpecIdEvent",
    "parse_eventlog",
]
