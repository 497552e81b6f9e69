"""replay_file's fused validate-and-replay pass, and replay_and_appraise_file.

The fused pass takes a fast path for runs of records of one shape and hands anything
else to the list scanner. Property tests: on any list, clean or corrupted, it gives what
parsing the whole list and replaying it gives (same PCRs, same bad digests), and the
same error (type, offset, field, message) when the input is invalid; appraising in the
same pass gives what appraise_list gives. Small chunks and scanner windows make every
boundary between the two paths occur within a few records.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import ReferenceValues, Verdict, appraise_list, replay_and_appraise_file
from imasim.errors import ParseError
from imasim.ima import (
    DigestWithAlgo,
    MeasurementEntry,
    MeasurementList,
    parse_measurement_list,
)
from imasim.ima.builders import (
    boot_aggregate_entry,
    file_entry,
    ima_buf_entry,
    ima_ng_entry,
    violation_entry,
)
from imasim.ima.replay import _Engine as _FusedReplay
from imasim.ima.replay import _replay_file, replay, replay_file
from imasim.limits import DEFAULT_LIMITS, Limits

PATHS = ["/usr/bin/a", "/usr/bin/b", "/usr/lib/libc.so.6", "/etc/x y", "/bin/\udcff",
         "/opt/é"]
CONTENTS = [b"a", b"b", b"c"]


@contextmanager
def window(size: int) -> Iterator[None]:
    old = _FusedReplay._WINDOW
    _FusedReplay._WINDOW = size
    try:
        yield
    finally:
        _FusedReplay._WINDOW = old


@st.composite
def entry(draw: st.DrawFn) -> MeasurementEntry:
    kind = draw(st.sampled_from(["ng", "ng", "ng", "ng", "ng1", "viol", "sig", "buf", "ima",
                                 "boot", "bad", "pcr", "ngv2"]))
    path = draw(st.sampled_from(PATHS))
    content = draw(st.sampled_from(CONTENTS))
    if kind in ("ng", "bad", "pcr"):
        e = ima_ng_entry(path, H.SHA256.hash(content), H.SHA256,
                         pcr=draw(st.sampled_from([11, 12])) if kind == "pcr" else 10)
        if kind == "bad":
            e = e._replace(template_digest=H.SHA1.hash(b"tampered"))
        return e
    if kind == "ng1":
        return ima_ng_entry(path, H.SHA1.hash(content), H.SHA1)
    if kind == "viol":
        return violation_entry("ima-ng", path)
    if kind == "sig":
        return file_entry("ima-sig", path, H.SHA256.hash(content), H.SHA256)
    if kind == "ngv2":  # two fields, but not ima-ng: appraised from entries
        e = file_entry("ima-ngv2", path, H.SHA256.hash(content), H.SHA256)
        return e if draw(st.booleans()) else e._replace(template_digest=bytes(20))
    if kind == "buf":
        return ima_buf_entry(draw(st.sampled_from(["kexec-cmdline", ".ima"])), content)
    if kind == "ima":
        return MeasurementEntry.create("ima", [H.SHA1.hash(content), path])
    return boot_aggregate_entry(DigestWithAlgo("sha256", H.SHA256.hash(content)))


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.sampled_from(["none", "none", "flip", "u32", "cut", "append"]))
    raw = bytearray(data)
    if how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= draw(st.sampled_from([1, 0x80, 0xFF]))
    elif how == "u32" and len(raw) >= 4:
        i = draw(st.integers(0, len(raw) - 4))
        v = draw(st.sampled_from([0, 1, 3, 6, 7, 40, 255, 256, len(raw), 0xFFFFFFFF,
                                  draw(st.integers(0, 0xFFFFFFFF))]))
        struct.pack_into("<I", raw, i, v)
    elif how == "cut" and raw:
        del raw[draw(st.integers(0, len(raw) - 1)):]
    elif how == "append":
        raw += draw(st.binary(min_size=1, max_size=40))
    return bytes(raw)


def outcome(fn):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn())
    except ParseError as exc:
        return ("error", type(exc), exc.offset, exc.field, str(exc))


BANKS = [(H.SHA1, H.SHA256), (H.SHA256, H.SHA1), (H.SHA1, H.SHA384)]


@settings(max_examples=400, deadline=None)
@given(st.lists(entry(), max_size=14), st.data(), st.sampled_from(BANKS),
       st.sampled_from([1, 5, 37, 200, 1 << 20]), st.sampled_from([1, 30, 64, 16384]),
       st.sampled_from([H.SHA1, H.SHA256]), st.sampled_from([None, 0, 3, 9]))
def test_fused_equals_parse_then_replay(items: list[MeasurementEntry], data: st.DataObject,
                                        banks: tuple[H, H], chunk: int, win: int,
                                        digest_alg: H, max_entries: int | None) -> None:
    lst = MeasurementList(items)
    if digest_alg is H.SHA256:
        lst = lst.for_bank(H.SHA256)
        banks = (banks[1], banks[0]) if banks[0] is H.SHA1 else banks
        if H.SHA256 not in banks:
            banks = (H.SHA256, H.SHA1)
    raw = data.draw(corrupted(lst.to_bytes()))
    limits = DEFAULT_LIMITS if max_entries is None else dataclasses.replace(
        DEFAULT_LIMITS, max_entries=max_entries)

    def reference() -> object:
        parsed = parse_measurement_list(raw, digest_alg=digest_alg, limits=limits)
        return replay(parsed, banks=banks, digest_alg=digest_alg)

    def fused() -> object:
        with window(win):
            return _replay_file(io.BytesIO(raw), banks, (), digest_alg, chunk, None, limits)

    want = outcome(reference)
    assert outcome(fused) == want
    if max_entries is None:
        got = outcome(lambda: replay_file(io.BytesIO(raw), banks=banks, digest_alg=digest_alg,
                                          chunk_size=chunk))
        assert got == want


REF = ReferenceValues(
    {"/usr/bin/a": frozenset({H.SHA256.hash(b"a").hex()}),
     "/usr/bin/b": frozenset({H.SHA256.hash(b"b").hex(), H.SHA1.hash(b"b").hex()}),
     "/bin/\udcff": frozenset({H.SHA256.hash(b"c").hex()}),
     "/opt/é": frozenset({H.SHA256.hash(b"a").hex()}),
     "/\udcc3\udca9": frozenset({H.SHA256.hash(b"a").hex()})},  # never a record's name
    excludes=("/usr/lib/.*",), ignored_keyrings=frozenset({".ima"}))


@settings(max_examples=300, deadline=None)
@given(st.lists(entry(), max_size=14), st.data(), st.sampled_from([1, 37, 1 << 20]),
       st.sampled_from([1, 64, 16384]), st.booleans())
def test_fused_appraisal_equals_appraise_list(items: list[MeasurementEntry],
                                             data: st.DataObject, chunk: int, win: int,
                                             allow_violations: bool) -> None:
    ref = dataclasses.replace(REF, allow_violations=allow_violations)
    raw = data.draw(corrupted(MeasurementList(items).to_bytes()))

    def reference() -> object:
        parsed = parse_measurement_list(raw)
        return replay(parsed), appraise_list(parsed, ref)

    def fused() -> object:
        with window(win):
            return replay_and_appraise_file(io.BytesIO(raw), ref, chunk_size=chunk)

    assert outcome(fused) == outcome(reference)


def test_replay_and_appraise_file_names_each_failure() -> None:
    good = [ima_ng_entry("/usr/bin/a", H.SHA256.hash(b"a"), H.SHA256) for _ in range(50)]
    items = [boot_aggregate_entry(DigestWithAlgo("sha256", bytes(32))), *good,
             ima_ng_entry("/usr/bin/unknown", H.SHA256.hash(b"a"), H.SHA256), *good,
             ima_ng_entry("/usr/bin/b", H.SHA256.hash(b"x"), H.SHA256),
             ima_ng_entry("/usr/lib/libz.so", H.SHA256.hash(b"z"), H.SHA256),  # excluded
             violation_entry("ima-ng", "/usr/bin/a"),
             ima_buf_entry(".ima", b"key"),  # an ignored keyring
             ima_ng_entry("/bin/\udcff", H.SHA256.hash(b"c"), H.SHA256), *good]
    items[20] = items[20]._replace(template_digest=bytes(range(20)))
    with window(64):
        result, failures = replay_and_appraise_file(io.BytesIO(MeasurementList(items).to_bytes()),
                                                    REF, chunk_size=1000)
    assert result == replay(items)
    assert result.bad_digests == (20,)
    assert [(f.index, f.path, f.verdict) for f in failures] == [
        (51, "/usr/bin/unknown", Verdict.UNKNOWN_PATH),
        (102, "/usr/bin/b", Verdict.DIGEST_MISMATCH),
        (104, "/usr/bin/a", Verdict.VIOLATION),
        (105, ".ima", Verdict.UNKNOWN_PATH),
    ]
    assert failures[1].detail == H.SHA256.hash(b"x").hex()


def test_replay_and_appraise_file_other_banks_and_errors() -> None:
    items = [ima_ng_entry("/usr/bin/x", bytes(32), H.SHA256),
             ima_ng_entry("/usr/bin/a", H.SHA256.hash(b"a"), H.SHA256)]
    data = MeasurementList(items).to_bytes()
    for banks, padded in [((H.SHA256,), ()), ((H.SHA1, H.SHA256, H.SHA384), ()),
                          ((H.SHA1, H.SHA384), (H.SHA384,))]:
        result, failures = replay_and_appraise_file(io.BytesIO(data), REF, banks=banks,
                                                    padded_banks=padded)
        assert result == replay(items, banks=banks, padded_banks=padded)
        assert [(f.index, f.verdict) for f in failures] == [(0, Verdict.UNKNOWN_PATH)]
    with pytest.raises(ParseError) as exc:
        replay_and_appraise_file(io.BytesIO(data[:-1]), REF)
    with pytest.raises(ParseError) as want:
        parse_measurement_list(data[:-1])
    assert (exc.value.offset, exc.value.field) == (want.value.offset, want.value.field)


def test_record_larger_than_the_window_and_the_chunk() -> None:
    big = ima_buf_entry("kexec-cmdline", bytes(range(256)) * 300)
    items = [ima_ng_entry("/usr/bin/a", bytes(32), H.SHA256), big,
             *[ima_ng_entry("/usr/bin/a", bytes(32), H.SHA256)] * 5, big]
    data = MeasurementList(items).to_bytes()
    with window(16):
        assert replay_file(io.BytesIO(data), chunk_size=100) == replay(items)


def test_entry_limit_is_enforced_at_the_same_record() -> None:
    items = [ima_ng_entry("/usr/bin/a", bytes(32), H.SHA256)] * 40
    data = MeasurementList(items).to_bytes()
    limits = Limits(max_entries=25)
    with pytest.raises(ParseError) as want:
        parse_measurement_list(data, limits=limits)
    for win in (1, 64, 16384):
        with window(win), pytest.raises(ParseError) as exc:
            _replay_file(io.BytesIO(data), (H.SHA1, H.SHA256), (), H.SHA1, 1 << 20, None, limits)
        assert (exc.value.offset, exc.value.field) == (want.value.offset, want.value.field)


@settings(max_examples=150, deadline=None)
@given(st.lists(entry(), min_size=1, max_size=6), st.data(), st.sampled_from([1, 3, 50]))
def test_scanner_errors_do_not_depend_on_where_a_scan_starts(
        items: list[MeasurementEntry], data: st.DataObject, chunk: int) -> None:
    # a record cut after its template name: the scanner used to say "data length
    # missing" when the name was the last record's, and "name and data length do not
    # fit" when it was checked afresh (at the start of a chunk or a window)
    from imasim.ima import iter_measurement_list

    raw = data.draw(corrupted(MeasurementList(items).to_bytes()))
    want = outcome(lambda: parse_measurement_list(raw))
    got = outcome(lambda: list(parse_measurement_list(b"".join(
        e.to_bytes() for e in iter_measurement_list(io.BytesIO(raw), chunk_size=chunk)))))
    if want[0] == "error":
        assert got == want
