"""The replay engine against a reference written from the definitions, entry by entry.

The reference replays entry objects with ``MeasurementEntry.extend_value`` (the kernel's
rule: 0xff..ff for a violation, the legacy 'ima' rule, padded SHA-1), and defines the
verified prefix literally: the largest k such that after the first k entries every
compared bank holds the quoted value of PCR 10 (when quoted) and of every PCR those k
entries extended, none of them outside the quoted PCRs unless ignored. The engine
(generated loops, fast path for same-shape records, interval bookkeeping, padded retry,
parallel workers) must give the same answer on random lists of every template, with
violations, in both byte orders, classic and per-bank, with padded banks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import UsageError
from imasim.ima import DigestWithAlgo, MeasurementEntry, MeasurementList
from imasim.ima.builders import (
    boot_aggregate_entry,
    file_entry,
    ima_buf_entry,
    ima_ng_entry,
    violation_entry,
)
from imasim.ima.codec import detect_list_kind
from imasim.ima.replay import (
    MatchStatus,
    ReplayState,
    _Engine,
    match,
    match_file,
    replay,
    replay_file,
)
from imasim.tpm.pcrs import PcrBanks

PATHS = ["/usr/bin/a", "/usr/bin/b", "/etc/x y", "/opt/é"]


# -- the reference ------------------------------------------------------------------------
def ref_values(entries: Sequence[MeasurementEntry], banks: Sequence[H],
               padded: frozenset[H] = frozenset()) -> list[dict[H, dict[int, bytes]]]:
    """PCR values per bank after each prefix (index k: after k entries)."""
    cur = {a: {} for a in banks}  # type: dict[H, dict[int, bytes]]
    out = [{a: dict(v) for a, v in cur.items()}]
    for e in entries:
        for a in banks:
            if a in padded and not e.is_violation:
                ext = e.template_hash(H.SHA1).ljust(a.digest_size, b"\0")
            else:
                ext = e.extend_value(a)
            cur[a][e.pcr] = a.hash(cur[a].get(e.pcr, a.zero) + ext)
        out.append({a: dict(v) for a, v in cur.items()})
    return out


def ref_fine(entries: Sequence[MeasurementEntry], states: list[dict[H, dict[int, bytes]]],
             bank: H, quoted: dict[H, dict[int, bytes]], covered: set[int],
             ignore: set[int]) -> list[int]:
    """The entry counts k after which ``bank`` holds the quoted values."""
    fine = []
    for k, state in enumerate(states):
        touched = {e.pcr for e in entries[:k]} - ignore
        compared = touched | ({10} & covered) - ignore
        ok = True
        for p in compared:
            if p not in covered:
                ok = False
                break
            if state[bank].get(p, bank.zero) != quoted[bank][p]:
                ok = False
                break
        if ok:
            fine.append(k)
    return fine


def reference_match(entries: Sequence[MeasurementEntry], quoted: dict[H, dict[int, bytes]],
                    digest_alg: H, ignore: set[int]) -> dict[str, object]:
    banks = [a for a in quoted if quoted[a]]
    covered = set.intersection(*(set(quoted[a]) for a in banks))
    native = ref_values(entries, banks)
    fine: dict[H, list[int]] = {}
    padded: dict[H, bool] = {}
    for a in banks:
        fine[a] = ref_fine(entries, native, a, quoted, covered, ignore)
        padded[a] = False
        if not fine[a] and a is not H.SHA1:
            got = ref_fine(entries, ref_values(entries, [a], frozenset({a})), a, quoted,
                           covered, ignore)
            if got:
                fine[a], padded[a] = got, True
    common = set.intersection(*(set(f) for f in fine.values()))
    n = len(entries)
    k = max(common) if common else None
    if k == n:
        status = MatchStatus.MATCH
    elif k:
        status = MatchStatus.PREFIX
    else:
        status, k = MatchStatus.MISMATCH, 0
    bad = [i for i, e in enumerate(entries)
           if not e.is_violation and e.template_hash(digest_alg) != e.template_digest]
    first_uncovered: dict[int, int] = {}
    for i, e in enumerate(entries):
        if e.pcr not in covered and e.pcr not in ignore:
            first_uncovered.setdefault(e.pcr, i)
    return {"status": status, "verified": k,
            "banks": {a: (max(fine[a]) if fine[a] else None, padded[a]) for a in banks},
            "bad": tuple(bad), "violations": tuple(i for i, e in enumerate(entries)
                                                    if e.is_violation),
            "uncovered": sorted((i, p) for p, i in first_uncovered.items())}


def observed(m) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"status": m.status, "verified": m.verified_count,
            "banks": {b.bank: (b.matched_at, b.padded) for b in m.banks},
            "bad": m.bad_digests, "violations": m.violations,
            "uncovered": sorted((u.index, u.pcr) for u in m.uncovered)}


# -- random lists ---------------------------------------------------------------------------
@st.composite
def entries(draw: st.DrawFn) -> MeasurementEntry:
    kind = draw(st.sampled_from(["ng", "ng", "ng", "ng", "ng1", "viol", "sig", "buf", "ima",
                                 "boot", "bad", "ngv2", "violima"]))
    path = draw(st.sampled_from(PATHS))
    content = draw(st.binary(min_size=1, max_size=3))
    pcr = draw(st.sampled_from([10, 10, 10, 10, 11, 12]))
    if kind in ("ng", "bad"):
        e = ima_ng_entry(path, H.SHA256.hash(content), H.SHA256, pcr=pcr)
        return e._replace(template_digest=H.SHA1.hash(b"x")) if kind == "bad" else e
    if kind == "ng1":
        return ima_ng_entry(path, H.SHA1.hash(content), H.SHA1, pcr=pcr)
    if kind == "viol":
        return violation_entry("ima-ng", path, pcr=pcr)
    if kind == "violima":
        return violation_entry("ima", path, pcr=pcr)
    if kind == "sig":
        return file_entry("ima-sig", path, H.SHA256.hash(content), H.SHA256, pcr=pcr)
    if kind == "ngv2":
        return file_entry("ima-ngv2", path, H.SHA256.hash(content), H.SHA256, pcr=pcr)
    if kind == "buf":
        return ima_buf_entry(draw(st.sampled_from(["kexec-cmdline", ".ima"])), content)
    if kind == "ima":
        return MeasurementEntry.create("ima", [H.SHA1.hash(content), path])._replace(pcr=pcr)
    return boot_aggregate_entry(DigestWithAlgo("sha256", H.SHA256.hash(content)))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[MeasurementList, dict[H, dict[int, bytes]], set[int]]:
    items = draw(st.lists(entries(), max_size=12))
    order = draw(st.sampled_from(["little", "big"]))
    lst = MeasurementList(items, byte_order=order)
    per_bank = draw(st.sampled_from([None, None, H.SHA256, H.SHA384]))
    if per_bank is not None:
        lst = lst.for_bank(per_bank)
    banks = draw(st.sampled_from([(H.SHA1, H.SHA256), (H.SHA256,), (H.SHA1, H.SHA384),
                                  (H.SHA256, H.SHA1, H.SHA384), (H.SHA384,)]))
    # quoted: the values after some prefix (a quote taken while the list grew), a padded
    # sha384 bank sometimes, some PCRs left out of the quote, a value forged sometimes
    k0 = draw(st.integers(0, len(lst)))
    padded = frozenset({H.SHA384}) if draw(st.booleans()) else frozenset()
    state = ref_values(list(lst)[:k0], banks, padded)[-1]
    pcrs = draw(st.sampled_from([(10,), (10, 11), (10, 11, 12), tuple(range(24)), (11, 12)]))
    quoted = {a: {p: state[a].get(p, a.zero) for p in pcrs} for a in banks}
    if draw(st.booleans()) and quoted:
        a = draw(st.sampled_from(sorted(quoted, key=lambda x: x.kernel_name)))
        p = draw(st.sampled_from(sorted(quoted[a])))
        quoted[a][p] = a.hash(quoted[a][p])
    ignore = draw(st.sampled_from([set(), set(), {11}, {12}, {10}]))
    return lst, quoted, ignore


@settings(max_examples=300, deadline=None)
@given(scenario(), st.sampled_from([1, 7, 64, 1 << 20]))
def test_engine_equals_the_reference(case, chunk: int) -> None:  # type: ignore[no-untyped-def]
    lst, quoted, ignore = case
    items = list(lst)
    want = reference_match(items, quoted, lst.digest_alg, ignore)
    got = match(lst, quoted, ignore_pcrs=ignore)
    assert observed(got) == want
    # entry objects (not a parsed list), and streamed from a file in small chunks
    assert observed(match(items, quoted, ignore_pcrs=ignore, digest_alg=lst.digest_alg)) == want
    streamed = match_file(io.BytesIO(lst.to_bytes()), quoted, ignore_pcrs=ignore,
                          chunk_size=chunk, digest_alg=lst.digest_alg,
                          byte_order=lst.byte_order)
    assert observed(streamed) == want
    # the replayed values are the reference's after the whole list
    banks = tuple(quoted) or (H.SHA1,)
    final = ref_values(items, banks)[-1]
    r = replay(lst, banks=banks)
    assert {a: {p: v for p, v in b.items() if p in final[a] or p == 10}
            for a, b in r.pcrs.items()} == {a: {10: a.zero, **final[a]} for a in banks}
    assert r.bad_digests == want["bad"] and r.violations == want["violations"]
    rf = replay_file(io.BytesIO(lst.to_bytes()), banks=banks, chunk_size=chunk)
    assert rf.pcrs == r.pcrs and rf.bad_digests == r.bad_digests


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_padded_banks_and_the_kind_from_content(case) -> None:  # type: ignore[no-untyped-def]
    lst, _, _ = case
    items = list(lst)
    banks = (H.SHA1, H.SHA384, H.SHA512)
    want = ref_values(items, banks, frozenset({H.SHA384}))[-1]
    got = replay_file(io.BytesIO(lst.to_bytes()), banks=banks, padded_banks=[H.SHA384])
    assert {a: {p: v for p, v in b.items() if p != 10 or p in want[a]}
            for a, b in got.pcrs.items()} == want
    if items:
        kind = detect_list_kind(lst.to_bytes())
        assert kind.byte_order == lst.byte_order
        # a list of violations alone (zero digests) can not tell sha256 from sm3
        if any(not e.is_violation for e in items):
            assert kind.digest_alg is lst.digest_alg


# -- verified prefix, PCRs outside the quote -------------------------------------------------
def _list(n: int, pcrs: Sequence[int] = ()) -> list[MeasurementEntry]:
    out = [boot_aggregate_entry(DigestWithAlgo("sha256", H.SHA256.hash(b"agg")))]
    for i in range(1, n):
        pcr = pcrs[i] if i < len(pcrs) else 10
        out.append(ima_ng_entry(f"/bin/p{i}", H.SHA256.hash(b"%d" % i), H.SHA256, pcr=pcr))
    return out


def _quote(entries: Sequence[MeasurementEntry], k: int, pcrs: Sequence[int] = (10,),
           banks: Sequence[H] = (H.SHA1, H.SHA256)) -> PcrBanks:
    state = replay(entries[:k], banks=banks).pcrs
    return PcrBanks.unauthenticated({a: {p: state[a].get(p, a.zero) for p in pcrs}
                                     for a in banks})


def test_match_prefix_and_mismatch_are_told_apart() -> None:
    lst = _list(10)
    full = match(lst, _quote(lst, 10))
    assert (full.status, full.verified_count, full.matched) == (MatchStatus.MATCH, 10, True)
    grown = match(lst, _quote(lst, 6))
    assert (grown.status, grown.verified_count, grown.matched) == (MatchStatus.PREFIX, 6, True)
    assert grown.to_dict()["status"] == "prefix" and grown.to_dict()["verified_entries"] == 6
    assert "PREFIX: the first 6 of 10 entries verified" in grown.summary()
    assert {b.matched_at for b in grown.banks} == {6}
    forged = match(lst[:5] + lst[6:], _quote(lst, 10))
    assert (forged.status, forged.verified_count, forged.matched) == (
        MatchStatus.MISMATCH, 0, False)
    assert not grown.authenticated
    # a bad stored digest inside the verified prefix fails it; after it, it is unverified
    tampered = [*lst[:3], lst[3]._replace(template_digest=H.SHA1.hash(b"x")), *lst[4:]]
    assert not match(tampered, _quote(lst, 10)).matched
    assert match(tampered, _quote(lst, 3)).matched
    # a bank that matches at another count than the others: no common prefix
    mixed = {H.SHA1: _quote(lst, 4)[H.SHA1], H.SHA256: _quote(lst, 6)[H.SHA256]}
    assert match(lst, mixed).status is MatchStatus.MISMATCH


def test_an_entry_in_a_pcr_the_quote_does_not_cover_ends_the_verified_prefix() -> None:
    lst = _list(10, [10, 10, 10, 10, 10, 11])   # entry 5 is extended into PCR 11
    quoted = _quote(lst, 10, pcrs=range(11))     # the quote covers PCRs 0-10
    m = match(lst, quoted)
    assert m.status is MatchStatus.MISMATCH
    assert [(u.index, u.pcr) for u in m.uncovered] == [(5, 11)]
    assert "entry 5 extends PCR 11, which the quote does not cover" in m.summary()
    # a quote taken before entry 5 still verifies the first 5
    early = match(lst, _quote(lst, 5, pcrs=range(11)))
    assert (early.status, early.verified_count) == (MatchStatus.PREFIX, 5)
    # ignored: PCR 11's entries are replayed, never verified; the others are
    ign = match(lst, quoted, ignore_pcrs=[11])
    assert (ign.status, ign.verified_count, ign.uncovered) == (MatchStatus.MATCH, 10, ())
    assert not ign.is_verified(5, 11) and ign.is_verified(4, 10)
    # covered: the quote includes PCR 11
    both = match(lst, _quote(lst, 10, pcrs=(10, 11)))
    assert both.status is MatchStatus.MATCH and both.uncovered == ()
    # a PCR held by one bank only is not covered
    one = _quote(lst, 10, pcrs=(10, 11))
    partial = {H.SHA1: {10: one[H.SHA1][10]}, H.SHA256: dict(one[H.SHA256])}
    assert [(u.index, u.pcr) for u in match(lst, partial).uncovered] == [(5, 11)]


def test_pcr_values_from_a_quote_say_so_and_plain_mappings_do_not() -> None:
    from imasim.tpm.pcrs import PcrSource

    lst = _list(4)
    q = _quote(lst, 4)
    assert not match(lst, dict(q)).authenticated
    assert match(lst, PcrBanks(dict(q), source=PcrSource.QUOTE)).authenticated


def test_violations_replay_as_the_kernel_extends_them_and_are_counted() -> None:
    lst = _list(5)
    lst.insert(3, violation_entry("ima-ng", "/etc/shadow"))
    m = match(lst, _quote(lst, 6))
    assert m.status is MatchStatus.MATCH and m.violations == (3,)
    assert m.verified_violations == (3,) and match(lst, _quote(lst, 3)).verified_violations == ()


def test_padded_sha1_is_tried_only_for_a_bank_that_fails_natively() -> None:
    lst = _list(6)
    native = replay(lst, banks=(H.SHA1, H.SHA256)).pcrs
    padded = replay(lst, banks=(H.SHA384,), padded_banks=[H.SHA384]).pcrs
    quoted = {H.SHA1: {10: native[H.SHA1][10]}, H.SHA256: {10: native[H.SHA256][10]},
              H.SHA384: {10: padded[H.SHA384][10]}}
    m = match(lst, quoted)
    assert m.status is MatchStatus.MATCH
    assert {b.bank: b.padded for b in m.banks} == {H.SHA1: False, H.SHA256: False,
                                                   H.SHA384: True}
    assert m.replay.padded_banks == frozenset({H.SHA384})
    assert match(lst, quoted, padding="native").status is MatchStatus.MISMATCH
    assert match(lst, quoted, padding={H.SHA384: "padded"}).status is MatchStatus.MATCH


def test_parallel_workers_give_the_one_process_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lst = MeasurementList(_list(300, [10] * 150 + [11] * 3))
    path = tmp_path / "list"
    path.write_bytes(lst.to_bytes())
    quoted = _quote(list(lst), 200, pcrs=(10, 11), banks=(H.SHA1, H.SHA256, H.SHA384))
    with path.open("rb") as f:
        one = match_file(f, quoted)
    with path.open("rb") as f:
        two = match_file(f, quoted, jobs=2, chunk_size=1000)
    assert observed(one) == observed(two) and one.status is MatchStatus.PREFIX
    with path.open("rb") as f:
        r2 = replay_file(f, banks=(H.SHA1, H.SHA256), jobs=2)
    assert r2.pcrs == replay(lst).pcrs


def test_incremental_state_and_bad_usage() -> None:
    lst = _list(8)
    first = replay(lst[:3])
    rest = replay(lst[3:], start=ReplayState.from_dict(first.state.to_dict()))
    assert rest.pcrs == replay(lst).pcrs and rest.count == 8
    resumed = match(lst[3:], _quote(lst, 8), start=first.state)
    assert resumed.status is MatchStatus.MATCH and resumed.verified_count == 8
    with pytest.raises(UsageError):
        replay(lst, banks=())
    with pytest.raises(UsageError):
        replay(lst, banks=(H.SHA1, H.SHA1))
    with pytest.raises(UsageError):  # a 32-byte digest in a SHA-1 list
        replay([lst[0].with_digest_for(H.SHA256)], digest_alg=H.SHA1)


def test_the_generated_loops_are_shared() -> None:
    a = _Engine((H.SHA1, H.SHA256), (False, False), H.SHA1, "little")
    b = _Engine((H.SHA1, H.SHA256), (False, False), H.SHA1, "big")
    assert a.loop is b.loop


def test_generators_of_entries_and_unseekable_files() -> None:
    lst = _list(9000)  # more than one batch of serialised records
    want = replay(lst)
    got = replay(iter(lst))
    assert got.pcrs == want.pcrs and got.count == 9000
    assert match(iter(lst), _quote(lst, 9000)).status is MatchStatus.MATCH
    # a padded-SHA-1 retry reads a file twice: a pipe can not be rewound
    small = _list(4)
    padded = replay(small, banks=(H.SHA384,), padded_banks=[H.SHA384]).pcrs
    quoted = {H.SHA384: {10: padded[H.SHA384][10]}}

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            return self.inner.readinto(b)

        def tell(self) -> int:
            raise OSError("not seekable")

    data = MeasurementList(small).to_bytes()
    with pytest.raises(UsageError, match="seekable"):
        match_file(Pipe(data), quoted)  # type: ignore[arg-type]
    assert match_file(Pipe(data), quoted,  # type: ignore[arg-type]
                      padding="padded").status is MatchStatus.MATCH
    assert match_file(io.BytesIO(data), quoted).banks[0].padded


def test_parallel_workers_report_the_one_process_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from imasim.errors import ParseError

    lst = MeasurementList(_list(500))
    data = bytearray(lst.to_bytes())
    at = lst._offsets[300] + 4 + 20 + 4 + len("ima-ng")  # record 300's data length
    data[at:at + 4] = b"\xff\xff\xff\x0f"
    path = tmp_path / "list"
    path.write_bytes(bytes(data))
    errors = []
    for jobs in (1, 2):
        with path.open("rb") as f, pytest.raises(ParseError) as exc:
            replay_file(f, banks=(H.SHA1, H.SHA256), jobs=jobs, chunk_size=4096)
        errors.append((type(exc.value), exc.value.offset, exc.value.field, str(exc.value)))
    assert errors[0] == errors[1]
