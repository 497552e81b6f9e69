"""Codec edge cases: SHA-1 format logs, bounded parsing at every cut, the kernel's rules."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog.el_support import norm, read_tpm2_yaml
from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ImasimError, ParseError, TruncatedError
from imasim.eventlog import EventLog, EventType, LogFormat
from imasim.eventlog.events import describe_log
from imasim.eventlog.replay import replay, startup_locality, verify_eventlog
from imasim.eventlog.simulate import seabios_log
from imasim.tpm.pcrs import PcrBanks
from tools import need


def sha1_log() -> bytes:
    out = b""
    for pcr, etype, data in [(0, EventType.EV_S_CRTM_VERSION, b"1.0\x00"),
                             (4, EventType.EV_IPL, b"grub_cmd: linux /vmlinuz\x00"),
                             (5, EventType.EV_ACTION, b"Calling INT 19h"),
                             (7, EventType.EV_SEPARATOR, bytes(4))]:
        out += struct.pack("<II20sI", pcr, etype, H.SHA1.hash(data), len(data)) + data
    return out


def test_sha1_format_round_trip_and_replay() -> None:
    raw = sha1_log()
    log = EventLog.parse(raw)
    assert log.format is LogFormat.SHA1 and log.spec_id is None and log.encode() == raw
    assert log.banks == (H.SHA1,) and len(log.measurements) == 4
    r = replay(log)
    assert r.value(H.SHA1, 7) == H.SHA1.hash(bytes(20) + H.SHA1.hash(bytes(4)))
    assert r.value(H.SHA256, 7) is None
    assert verify_eventlog(log, PcrBanks.unauthenticated(r.values)).verified_pcrs >= {0, 4, 5, 7}


@pytest.mark.interop
def test_sha1_format_tpm2_eventlog(tmp_path: Path) -> None:
    tool = need("tpm2_eventlog")
    path = tmp_path / "sha1.log"
    path.write_bytes(sha1_log())
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True).stdout
    # tpm2_eventlog 5.4 prints a SHA-1 log's events without their "- " list markers (and
    # without EventNum): put the markers back so the document parses as a list
    assert "\n- " not in out.split("pcrs:")[0]
    out = out.replace("\n  PCRIndex:", "\n- PCRIndex:")
    assert read_tpm2_yaml(out) == norm(describe_log(EventLog.parse(path.read_bytes()),
                                                    version=1))


def test_every_cut_of_a_log_is_a_parse_error_or_a_prefix() -> None:
    raw = seabios_log([H.SHA1, H.SHA256]).encode()
    ends = set()
    offset = 0
    for ev in EventLog.parse(raw).events:
        offset += len(ev.encode())
        ends.add(offset)
    for cut in range(len(raw)):
        try:
            log = EventLog.parse(raw[:cut])
        except ParseError as exc:
            assert exc.offset is not None and 0 <= exc.offset <= cut
            continue
        assert cut in ends and log.encode() == raw[:cut]


def test_kernel_rules_refused_with_offsets() -> None:
    log = seabios_log([H.SHA256])
    raw = log.encode()
    hdr = len(log.events[0].encode())
    two = bytearray(raw)
    struct.pack_into("<I", two, hdr + 8, 2)  # two digests, one algorithm in the header
    with pytest.raises(ParseError) as ei:
        EventLog.parse(bytes(two))
    assert ei.value.offset == hdr + 8 and ei.value.field == "digests.count"
    sha1 = bytearray(raw)
    struct.pack_into("<H", sha1, hdr + 12, 0x0004)  # sha1 digest, header lists sha256 only
    with pytest.raises(ParseError) as ei:
        EventLog.parse(bytes(sha1))
    assert ei.value.offset == hdr + 12 and ei.value.field == "hashAlg"
    with pytest.raises(TruncatedError):
        EventLog.parse(raw[:40])


def test_startup_locality_sets_pcr0() -> None:
    log = EventLog.build([H.SHA256], [(0, EventType.EV_NO_ACTION, b"StartupLocality\x00\x03"),
                                      (0, EventType.EV_SEPARATOR, bytes(4))])
    assert startup_locality(log) == 3
    start = bytes(31) + b"\x03"
    assert replay(log).value(H.SHA256, 0) == H.SHA256.hash(start + H.SHA256.hash(bytes(4)))
    doc = describe_log(log)
    assert doc["events"][1]["Event"] == {"StartupLocality": "3"}


def test_an_event_without_a_bank_cannot_be_replayed_in_it() -> None:
    log = seabios_log([H.SHA1, H.SHA256])
    from dataclasses import replace

    ev = log.events[3]
    short = EventLog(log.format, log.spec_id,
                     (*log.events[:3], replace(ev, digests=ev.digests[:1]), *log.events[4:]))
    r = replay(short)
    assert r.missing[H.SHA256] == (3,) and r.value(H.SHA256, ev.pcr) is None
    full = replay(log)
    with pytest.raises(ImasimError):
        verify_eventlog(short, PcrBanks.unauthenticated({H.SHA256: dict(full.values[H.SHA256])}))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=300))
def test_garbage_after_a_valid_header_only_raises_imasim_errors(tail: bytes, cut: int) -> None:
    raw = seabios_log([H.SHA256]).encode()
    data = raw[:cut] + tail
    try:
        log = EventLog.parse(data)
    except ImasimError:
        return
    assert log.encode() == data
    describe_log(log)
