"""The record index of the fused replay-and-appraise pass (imasim.attest._KnownRecords).

Once the fast check has met as many of a policy's known-good ima-ng records as the policy
allows, the policy keeps an index of those records as a list stores them from the
template digest on (digest, template name, data length, data), with their template
hashes; the replay then accepts a record found there without hashing or appraising it.
Nothing a verifier is told may change: these tests compare, on clean, corrupted and
forged lists and over every bank configuration, what the pass gives with the index and
what parsing, replaying and appraising the list entry by entry gives; and check when the
index is built and that it is used.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import (
    ReferenceValues,
    _KnownRecords,
    appraise_list,
    attest_file,
    replay_and_appraise_file,
)
from imasim.ima import (
    DigestWithAlgo,
    MeasurementEntry,
    MeasurementList,
    parse_measurement_list,
)
from imasim.ima import replay as replay_mod
from imasim.ima.builders import boot_aggregate_entry, ima_ng_entry, violation_entry
from imasim.ima.replay import boot_aggregate, replay

from .test_interop_evmctl import evmctl_verdict
from .test_replay_fused import REF, corrupted, entry, outcome, window

KNOWN = [ima_ng_entry(p, H.SHA256.hash(c), H.SHA256)
         for p, c in (("/usr/bin/a", b"a"), ("/usr/bin/b", b"b"), ("/bin/\udcff", b"c"),
                      ("/opt/é", b"a"))]


def fresh(ref: ReferenceValues = REF) -> ReferenceValues:
    """The same policy with its own digest table (so with no index yet)."""
    return ReferenceValues({p: frozenset(d) for p, d in ref.digests.items()},
                           excludes=ref.excludes, ignored_keyrings=ref.ignored_keyrings,
                           allow_violations=ref.allow_violations)


def indexes(ref: ReferenceValues) -> list[Any]:
    return [k for v in ref.digests_bytes._derived.values() if isinstance(v, _KnownRecords)
            for k in v.indexes]


def warmed(banks: tuple[H, ...], padded: tuple[H, ...], digest_alg: H,
           ref: ReferenceValues = REF) -> ReferenceValues:
    """A fresh policy whose index for this configuration is built."""
    ref = fresh(ref)
    lst = MeasurementList(KNOWN * 2)  # more known records than the index would hold
    raw = (lst.for_bank(H.SHA256) if digest_alg is H.SHA256 else lst).to_bytes()
    with window(1):
        replay_and_appraise_file(io.BytesIO(raw), ref, banks=banks, padded_banks=padded,
                                 digest_alg=digest_alg)
    assert indexes(ref), "the warm-up list builds the index"
    return ref


CONFIGS = [((H.SHA1,), (), H.SHA1), ((H.SHA1, H.SHA256), (), H.SHA1),
           ((H.SHA256,), (), H.SHA1), ((H.SHA1, H.SHA256, H.SHA384), (H.SHA384,), H.SHA1),
           ((H.SHA256, H.SHA1), (), H.SHA256), ((H.SHA384,), (H.SHA384,), H.SHA256)]


@settings(max_examples=300, deadline=None)
@given(st.lists(entry(), max_size=14), st.data(), st.sampled_from(CONFIGS),
       st.sampled_from([1, 37, 1 << 20]), st.sampled_from([1, 64, 16384]))
def test_indexed_pass_equals_parse_replay_appraise(
        items: list[MeasurementEntry], data: st.DataObject,
        config: tuple[tuple[H, ...], tuple[H, ...], H], chunk: int, win: int) -> None:
    banks, padded, digest_alg = config
    ref = warmed(banks, padded, digest_alg)
    lst = MeasurementList([*KNOWN, *items, *KNOWN])
    if digest_alg is H.SHA256:
        lst = lst.for_bank(H.SHA256)
    raw = data.draw(corrupted(lst.to_bytes()))

    def reference() -> object:
        parsed = parse_measurement_list(raw, digest_alg=digest_alg)
        return (replay(parsed, banks=banks, padded_banks=padded, digest_alg=digest_alg),
                appraise_list(parsed, ref))

    def fused() -> object:
        with window(win):
            return replay_and_appraise_file(io.BytesIO(raw), ref, banks=banks,
                                            padded_banks=padded, digest_alg=digest_alg,
                                            chunk_size=chunk)

    assert outcome(fused) == outcome(reference)


def test_index_is_built_once_it_pays_and_kept_with_the_policy(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ref = fresh()
    assert not ref.digests_bytes._derived  # nothing derived before the first list

    def run(entries: list[MeasurementEntry]) -> Any:
        with window(1):  # the scanner takes the first record, the fast path the rest
            return replay_and_appraise_file(io.BytesIO(MeasurementList(entries).to_bytes()),
                                            ref)

    run(KNOWN[:3])
    (known,) = ref.digests_bytes._derived.values()
    assert isinstance(known, _KnownRecords) and len(known.records) == 4
    seen = known.seen
    assert 0 < seen < 4 and not known.indexes  # hashing 3 records beats indexing 4
    # unknown paths and wrong digests are not known-good records: they do not count
    run([KNOWN[0], *[ima_ng_entry(f"/x{i}", H.SHA256.hash(b"x"), H.SHA256)
                     for i in range(20)],
         *[ima_ng_entry("/usr/bin/a", H.SHA256.hash(bytes([i])), H.SHA256)
           for i in range(20)]])
    assert known.seen == seen and not known.indexes
    run([KNOWN[0], *KNOWN])
    assert known.seen >= 4 and list(known.indexes) == [
        (b"\x06\0\0\0ima-ng", (H.SHA1, H.SHA256))]
    # the next list takes it from its first record and hashes only to extend
    calls: list[int] = []
    real = replay_mod._compile_loop

    def spy(*args: Any, **kw: Any) -> Any:
        calls.append(kw.get("indexed", False))
        return real(*args, **kw)

    monkeypatch.setattr(replay_mod, "_compile_loop", spy)
    r, failures = replay_and_appraise_file(io.BytesIO(MeasurementList(KNOWN).to_bytes()), ref)
    assert calls == [False, True] and r.count == 4 and failures == ()


def _attest(raw: bytes, ref: ReferenceValues, pcrs: dict[H, dict[int, bytes]]) -> Any:
    with window(1):  # the fast path (and the index) from the second record on
        return attest_file(io.BytesIO(raw), pcr_values=pcrs, reference=ref).to_dict()


def _pcrs_of(entries: list[MeasurementEntry]) -> dict[H, dict[int, bytes]]:
    """PCRs 0-10 of a machine whose firmware measured nothing and whose list is this."""
    r = replay(entries, banks=(H.SHA1, H.SHA256))
    return {a: {i: r.pcrs[a].get(i, a.zero) for i in range(11)} for a in (H.SHA1, H.SHA256)}


_AGG = boot_aggregate({a: dict.fromkeys(range(10), a.zero) for a in (H.SHA1, H.SHA256)})
AGGREGATE = boot_aggregate_entry(DigestWithAlgo(_AGG.alg.kernel_name, _AGG.digest))


def _flip(data: bytes) -> bytes:
    """One bit of a record's file digest flipped."""
    return data[:20] + bytes([data[20] ^ 1]) + data[21:]


FORGERIES = {
    # (the scanner validates the first records; the forgeries come after them, where the
    # fast path and its index read the list)
    # the data of one known record under the stored digest of another
    "data-swapped": lambda e: [*e[:5], e[5]._replace(template_data=e[6].template_data),
                               *e[6:]],
    # a known record's digest with one bit of its file digest flipped
    "data-flipped": lambda e: [*e[:5], e[5]._replace(template_data=_flip(e[5].template_data)),
                               *e[6:]],
    # a known record in a PCR the values do not cover (the PCR is outside the span)
    "uncovered-pcr": lambda e: [*e[:5], e[5]._replace(pcr=11), *e[6:]],
    # a known record under a violation's zero digest
    "zero-digest": lambda e: [*e[:5], e[5]._replace(template_digest=bytes(20)), *e[6:]],
    "violation": lambda e: [*e[:5], violation_entry("ima-ng", "/usr/bin/a"), *e[5:]],
    "unknown-path": lambda e: [*e[:5], ima_ng_entry("/usr/bin/z", H.SHA256.hash(b"a"),
                                                    H.SHA256), *e[5:]],
    "dropped": lambda e: [*e[:5], *e[6:]],
    "reordered": lambda e: [*e[:5], e[6], e[5], *e[7:]],
    "appended": lambda e: [*e, KNOWN[0]],
}


MEASURED = ("unknown-path", "violation")


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_lists_get_the_same_report_with_the_index(forgery: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    honest = [AGGREGATE, *KNOWN, *KNOWN[::-1], *KNOWN]
    forged = FORGERIES[forgery](list(honest))
    raw = MeasurementList(forged).to_bytes()
    # what the machine's TPM holds: the honest list's values, unless the kernel really
    # measured the unknown file or the violation
    quoted = _pcrs_of(forged if forgery in MEASURED else honest)
    warm = warmed((H.SHA1, H.SHA256), (), H.SHA1)
    calls: list[bool] = []
    real = replay_mod._compile_loop
    monkeypatch.setattr(replay_mod, "_compile_loop", lambda *a, **kw: calls.append(
        kw.get("indexed", False)) or real(*a, **kw))
    with_index = _attest(raw, warm, quoted)
    assert True in calls  # the index read this list
    monkeypatch.undo()
    monkeypatch.setattr(_KnownRecords, "index_after", lambda *a: None)
    without = _attest(raw, fresh(), quoted)
    assert with_index == without
    if forgery == "appended":  # the list grew after the quote: only its prefix is verified
        assert with_index["verified_entries"] == len(honest) < with_index["entries"]
    else:
        assert with_index["status"] != "consistent", forgery
    # and an honest list still passes with the index
    monkeypatch.undo()
    assert _attest(MeasurementList(honest).to_bytes(), warm, _pcrs_of(honest)
                   )["status"] == "consistent"


def test_a_pickled_policy_leaves_its_index_behind() -> None:
    """A policy sent to a worker (Dask scatters it) carries its digests, not what was
    derived from them: the worker builds its own index when its lists pay for it."""
    import pickle

    warm = warmed((H.SHA1,), (), H.SHA1)
    copy = pickle.loads(pickle.dumps(warm))
    assert copy == warm and copy.digests_bytes == warm.digests_bytes
    assert indexes(warm) and not copy.digests_bytes._derived


@pytest.mark.interop
@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_lists_replay_verdict_with_the_index_is_evmctls(forgery: str,
                                                               tmp_path: Path) -> None:
    """With the index, whether the list replays to the quoted PCRs is what evmctl
    ima_measurement says of the same list and values."""
    honest = [AGGREGATE, *KNOWN, *KNOWN[::-1], *KNOWN]
    forged = FORGERIES[forgery](list(honest))
    raw = MeasurementList(forged).to_bytes()
    quoted = _pcrs_of(forged if forgery in MEASURED else honest)
    report = _attest(raw, warmed((H.SHA1, H.SHA256), (), H.SHA1), quoted)
    assert report["replay"]["matched"] == evmctl_verdict(tmp_path, raw, quoted), forgery
