"""The kexec buffer: pack, restore with the kernel's checks, no partial restore of bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import ImasimError, ParseError
from imasim.ima import DigestWithAlgo, MeasurementEntry
from imasim.kexec import pack_kexec_buffer, restore_kexec_buffer
from realdata import stage


def test_real_kexec_capture_prefix() -> None:
    s1 = stage("custom-ima-kexec-carry", "stage1").entries()
    s2 = stage("custom-ima-kexec-carry", "stage2").entries()
    restored = restore_kexec_buffer(pack_kexec_buffer(s1))
    assert restored.stopped is None
    assert list(restored.entries) == list(s2)[: len(s1)]
    assert s2.to_bytes().startswith(restored.entries.to_bytes())


def test_header_layout() -> None:
    buf = pack_kexec_buffer(stage("boot-tcb-ima-ng-sha256").entries())
    version, r0, r1, size, count = struct.unpack_from("<HHIQQ", buf)
    assert (version, r0, r1, size, count) == (1, 0, 0, len(buf), 8)


def test_restored_digests_are_recomputed_and_zero_means_violation() -> None:
    e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/x"])
    forged = e._replace(template_digest=b"\x11" * 20)
    assert list(restore_kexec_buffer(pack_kexec_buffer([forged])).entries) == [e]
    zero = e._replace(template_digest=bytes(20))
    (got,) = restore_kexec_buffer(pack_kexec_buffer([zero])).entries
    assert got.is_violation


def test_legacy_ima_template_stops_the_restore_keeping_the_prefix() -> None:
    a = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/a"])
    legacy = MeasurementEntry.create("ima", [bytes(20), "/b"])
    res = restore_kexec_buffer(pack_kexec_buffer([a, legacy, a]))
    assert list(res.entries) == [a]
    assert res.stopped is not None and "ima" in res.stopped and res.stopped_at == 1


def test_bad_version_and_sizes() -> None:
    buf = bytearray(pack_kexec_buffer(stage("boot-tcb-ima-ng-sha256").entries()))
    bad = bytearray(buf)
    bad[0] = 2
    with pytest.raises(ParseError) as exc:
        restore_kexec_buffer(bytes(bad))
    assert exc.value.field == "version"
    bad = bytearray(buf)
    struct.pack_into("<Q", bad, 8, len(buf) + 1)
    with pytest.raises(ParseError):
        restore_kexec_buffer(bytes(bad))
    assert len(restore_kexec_buffer(buf[:20]).entries) == 0


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzzed_buffers_never_restore_partially(data: st.DataObject) -> None:
    entries = stage("boot-tcb-ima-ng-sha256").entries()
    buf = bytearray(pack_kexec_buffer(entries))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    try:
        res = restore_kexec_buffer(bytes(buf))
    except ImasimError:
        return
    # anything restored is a prefix of valid records of the (mutated) buffer, with digests
    # recomputed from its template data; an unknown template stops silently, as the kernel
    for e in res.entries:
        assert e.is_violation or e.template_digest == e.template_hash(H.SHA1)
