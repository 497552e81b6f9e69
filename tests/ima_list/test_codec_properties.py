"""Round trips of random entries of every template, and bounded failure on bad input."""

from __future__ import annotations

import io
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm
from imasim.errors import ImasimError, LimitExceededError, ParseError, TruncatedError
from imasim.ima import (
    BUILTIN_TEMPLATES,
    DigestWithAlgo,
    MeasurementEntry,
    iter_measurement_list,
    parse_ascii_measurement_list,
    parse_measurement_list,
)
from imasim.ima.fields import DataFormat, FieldSpec

names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)


def value_for(spec: FieldSpec) -> st.SearchStrategy[object]:
    if spec.fmt is DataFormat.DIGEST:
        return st.binary(min_size=20, max_size=20)
    if spec.fmt in (DataFormat.DIGEST_WITH_ALGO, DataFormat.DIGEST_WITH_TYPE_AND_ALGO):
        algs = st.sampled_from([HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA512])
        typ = st.sampled_from(["ima", "verity"]) if spec.fmt is \
            DataFormat.DIGEST_WITH_TYPE_AND_ALGO else st.none()
        return st.builds(lambda a, t, seed: DigestWithAlgo(
            a.kernel_name, a.hash(seed), t), algs, typ, st.binary(max_size=8))
    if spec.fmt is DataFormat.STRING:
        return names
    if spec.fmt is DataFormat.UINT:
        return st.integers(0, 2 ** (8 * spec.width) - 1)
    if spec.id == "xattrlengths":
        return st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple)
    return st.one_of(st.none(), st.binary(min_size=1, max_size=40))


@st.composite
def entries(draw: st.DrawFn, order: str = "little") -> MeasurementEntry:
    name = draw(st.sampled_from([*sorted(BUILTIN_TEMPLATES), "d-ng|n-ng|iuid|imode"]))
    from imasim.ima import lookup_template

    desc = lookup_template(name)
    values = [draw(value_for(f)) for f in desc.fields]
    if name == "ima":
        values[1] = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                                 min_size=1, max_size=255))
    return MeasurementEntry.create(desc, values, pcr=draw(st.integers(0, 23)),
                                   violation=draw(st.booleans()),
                                   byte_order=order)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["little", "big"]).flatmap(
    lambda o: st.tuples(st.just(o), st.lists(entries(o), max_size=6))))
def test_binary_and_ascii_roundtrip(case: tuple[str, list[MeasurementEntry]]) -> None:
    from imasim.ima import MeasurementList

    order, items = case
    lst = MeasurementList(items, byte_order=order)  # type: ignore[arg-type]
    data = lst.to_bytes()
    again = parse_measurement_list(data, byte_order=order)
    assert again == lst and again.to_bytes() == data
    assert list(iter_measurement_list(io.BytesIO(data), byte_order=order, chunk_size=3)) == \
        list(lst)
    assert parse_ascii_measurement_list(lst.to_ascii(), byte_order=order).to_bytes() == data


@settings(max_examples=60, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=3))
def test_every_truncation_raises_parse_error(items: list[MeasurementEntry]) -> None:
    data = b"".join(e.to_bytes() for e in items)
    for cut in range(1, len(data)):
        prefix = data[:cut]
        try:
            lst = parse_measurement_list(prefix)
        except ParseError as exc:
            assert exc.offset is not None and 0 <= exc.offset <= cut
            continue
        # a cut on a record boundary is a valid shorter list
        assert lst.to_bytes() == prefix


@settings(max_examples=40, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=3), st.data())
def test_corrupted_length_fields(items: list[MeasurementEntry], data: st.DataObject) -> None:
    raw = bytearray(b"".join(e.to_bytes() for e in items))
    # offsets of the name-length and data-length fields of the first record
    nlen_off = 24
    (nlen,) = struct.unpack_from("<I", raw, nlen_off)
    targets = [nlen_off]
    if items[0].template_name != "ima":
        targets.append(nlen_off + 4 + nlen)
    off = data.draw(st.sampled_from(targets))
    value = data.draw(st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, len(raw) + 1, 0]))
    struct.pack_into("<I", raw, off, value)
    with pytest.raises(ParseError):
        parse_measurement_list(bytes(raw))


def test_huge_length_does_not_allocate() -> None:
    e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha1", bytes(20)), "/x"])
    raw = bytearray(e.to_bytes())
    struct.pack_into("<I", raw, 24 + 4 + 6, 0xFFFFFFF0)  # template data length ~4 GiB
    tracemalloc.start()
    with pytest.raises((LimitExceededError, TruncatedError)) as exc:
        parse_measurement_list(bytes(raw))
    with pytest.raises(ParseError):
        list(iter_measurement_list(io.BytesIO(bytes(raw))))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert exc.value.offset == 34 and exc.value.field == "template_data_len"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_imasim_errors(data: bytes) -> None:
    try:
        for e in parse_measurement_list(data):
            e.fields  # noqa: B018 - decoding must not raise anything else either
            e.ascii_line()
    except ImasimError:
        pass


def test_unknown_template_name_is_reported_at_its_offset() -> None:
    rec = struct.pack("<I", 10) + bytes(20) + struct.pack("<I", 4) + b"nope" + struct.pack("<I", 0)
    with pytest.raises(ParseError) as exc:
        parse_measurement_list(rec)
    assert exc.value.offset == 28


def test_legacy_ima_template_digest_rule() -> None:
    e = MeasurementEntry.create("ima", [bytes(range(20)), "/bin/sh"])
    expect = HashAlgorithm.SHA1.hash(bytes(range(20)) + b"/bin/sh".ljust(256, b"\0"))
    assert e.template_digest == expect
    assert e.to_bytes()[28:31] == b"ima"
    assert e.ascii_line() == f"10 {expect.hex()} ima {bytes(range(20)).hex()} /bin/sh\n"


def test_ascii_of_empty_fields_keeps_the_spaces() -> None:
    e = MeasurementEntry.create("ima-sig", [DigestWithAlgo("sha256", bytes(32)), "/bin/ls", None])
    assert e.ascii_line().endswith(" /bin/ls \n")


def test_spaces_in_names_become_underscores() -> None:
    e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/a b"])
    assert e.event_name == "/a_b"


def _record_layout(e: MeasurementEntry, start: int) -> tuple[int, list[int]]:
    """(end, offsets of every length field) of the record ``e`` at ``start`` (20-byte digest)."""
    nlen_off = start + 24
    name_end = nlen_off + 4 + len(e.template_name)
    if e.template_name == "ima":
        return name_end + len(e.template_data), [nlen_off, name_end + 20]
    lengths = [nlen_off, name_end]
    q = name_end + 4
    for raw in e.raw_fields():
        lengths.append(q)
        q += 4 + len(raw)
    return q, lengths


same_shape = st.lists(
    st.tuples(st.sampled_from([HashAlgorithm.SHA1, HashAlgorithm.SHA256]), names),
    min_size=2, max_size=8,
).map(lambda items: [MeasurementEntry.create("ima-ng", [DigestWithAlgo(
    a.kernel_name, a.hash(n.encode())), n]) for a, n in items])


@settings(max_examples=150, deadline=None)
@given(same_shape, st.data())
def test_corrupted_length_in_any_record(items: list[MeasurementEntry],
                                        data: st.DataObject) -> None:
    """Later records take the parser's same-shape fast path: corrupting any of their
    length fields must still fail inside that record, exactly at a too-large length."""
    raw = bytearray(b"".join(e.to_bytes() for e in items))
    k = data.draw(st.integers(0, len(items) - 1))
    start = sum(len(e.to_bytes()) for e in items[:k])
    end, lengths = _record_layout(items[k], start)
    off = data.draw(st.sampled_from(lengths))
    (old,) = struct.unpack_from("<I", raw, off)
    value = data.draw(st.sampled_from([0xFFFFFFFF, 0x10000, len(raw), old + 1, old - 1, 0]))
    if value == old or value < 0:
        return
    struct.pack_into("<I", raw, off, value)
    for source in ("bytes", "stream"):
        with pytest.raises(ParseError) as exc:
            if source == "bytes":
                parse_measurement_list(bytes(raw))
            else:
                list(iter_measurement_list(io.BytesIO(bytes(raw)), chunk_size=7))
        assert exc.value.offset is not None and start <= exc.value.offset <= end
        if value > len(raw):
            assert exc.value.offset == off


@settings(max_examples=200, deadline=None)
@given(same_shape, st.data())
def test_accepted_mutations_are_well_formed(items: list[MeasurementEntry],
                                            data: st.DataObject) -> None:
    """Whatever the parser accepts splits into the template's fields (no lax fast path)."""
    raw = bytearray(b"".join(e.to_bytes() for e in items))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        lst = parse_measurement_list(bytes(raw))
    except ParseError:
        return
    assert lst.to_bytes() == bytes(raw)
    for e in lst:
        assert len(e.raw_fields()) == len(e.descriptor.fields)


@settings(max_examples=150, deadline=None)
@given(entries(), st.booleans())
def test_byte_order_conversion_round_trips(e: MeasurementEntry, violation: bool) -> None:
    if violation:
        e = e._replace(template_digest=bytes(len(e.template_digest)))
    big = e.with_byte_order("big")
    assert big.fields == e.fields
    # xattrlengths is printed as hex of its stored (native-order) u32s
    if "xattrlengths" not in e.fields:
        assert big.ascii_line().replace(big.template_digest.hex(), "") == \
            e.ascii_line().replace(e.template_digest.hex(), "")
    assert big.with_byte_order("little") == e
    assert parse_measurement_list(e.to_bytes(byte_order="big"), byte_order="big")[0] == big
    if not e.is_violation:
        assert big.template_digest == big.template_hash(HashAlgorithm.SHA1)
