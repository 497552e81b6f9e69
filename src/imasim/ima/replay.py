"""Replay a measurement list into PCR banks and match it against quoted values.

The kernel extends every allocated bank with that bank's hash over the template data
(ima_calc_field_array_hash, ima_pcr_extend), 0xff..ff for a violation, and, for a bank
whose hash it could not allocate at IMA init, the SHA-1 template digest zero-padded to
the bank size ("padded SHA-1"; Debian 12's 6.1 kernel does this for sha384).

One engine does it all (:func:`replay`, :func:`replay_file`, :func:`match`,
:func:`match_file`, ``imasim log replay|check`` and :mod:`imasim.attest`): it validates
each record as the list parser does and replays it in the same pass, hashing the template
data once per bank (the stored template digest is checked against the hash of the list's
digest algorithm, reused from the bank of that algorithm), with no entry objects.

Matching returns the *verified prefix*: the largest k such that every compared bank holds,
after the first k entries, exactly the quoted values, in every PCR the quote covers that
those entries extend (and PCR 10). An entry extended into a PCR the quote does not cover
can not be verified: it ends the verified prefix, and when no prefix remains the match
fails naming it (``ignore_pcrs`` lists PCRs whose entries are left unverified instead).

>>> from imasim.algorithms import HashAlgorithm as H
>>> from imasim.ima import MeasurementEntry, DigestWithAlgo
>>> e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/bin/sh"])
>>> r = replay([e], banks=(H.SHA1, H.SHA256))
>>> r.pcrs[H.SHA256][10] == H.SHA256.hash(bytes(32) + e.template_hash(H.SHA256))
True
>>> r.bad_digests
()
>>> m = match([e, e], {H.SHA256: {10: r.pcrs[H.SHA256][10]}})
>>> m.status.value, m.verified_count, m.entries
('prefix', 1, 2)
"""

from __future__ import annotations

import bisect
import enum
import itertools
import os
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

from ..algorithms import HashAlgorithm
from ..errors import ParseError, UnsupportedAlgorithmError, UsageError
from ..limits import DEFAULT_LIMITS, Limits
from .codec import MeasurementList, _ChunkReader, _Scanner, detect_list_kind
from .entry import MeasurementEntry
from .fields import ByteOrder, DigestWithAlgo

__all__ = [
    "BankMatch",
    "BootAggregate",
    "MatchResult",
    "MatchStatus",
    "PcrMismatch",
    "ReplayResult",
    "ReplayState",
    "UncoveredEntry",
    "boot_aggregate",
    "check_boot_aggregate",
    "match",
    "match_file",
    "replay",
    "replay_file",
]

if TYPE_CHECKING:
    from ..tpm.pcrs import PcrBanks

PcrValues = Mapping[HashAlgorithm, Mapping[int, bytes]]
Padding = Literal["native", "padded", "auto"]

#: IMA_EVENT_NAME_LEN_MAX + 1: the legacy 'ima' template hashes its name zero-padded to it
_IMA_NAME_FIELD = 256


@dataclass(frozen=True, slots=True)
class ReplayState:
    """PCR values after ``count`` entries; save it and resume with :func:`replay`."""

    count: int
    pcrs: Mapping[HashAlgorithm, Mapping[int, bytes]]

    def __repr__(self) -> str:
        from .._repr import pcr10

        return f"<ReplayState after {self.count} entries: {pcr10(self.pcrs)}>"

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count,
                "pcrs": {a.kernel_name: {str(i): v.hex() for i, v in sorted(b.items())}
                         for a, b in self.pcrs.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReplayState:
        try:
            return cls(int(d["count"]), {
                HashAlgorithm.from_name(a): {int(i): bytes.fromhex(v) for i, v in b.items()}
                for a, b in d["pcrs"].items()})
        except (KeyError, ValueError, TypeError, AttributeError, UnsupportedAlgorithmError
                ) as exc:
            raise ParseError(f"bad replay state: {exc!r}", field="replay_state") from None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Computed PCR values per bank (only the PCRs the list touched, plus 10)."""

    state: ReplayState
    #: indices of entries whose stored template digest is not the hash of their data
    bad_digests: tuple[int, ...]
    padded_banks: frozenset[HashAlgorithm]
    #: indices of violation entries (zero template digest, extended as 0xff..ff)
    violations: tuple[int, ...] = ()

    @property
    def pcrs(self) -> Mapping[HashAlgorithm, Mapping[int, bytes]]:
        return self.state.pcrs

    @property
    def count(self) -> int:
        return self.state.count

    def to_dict(self) -> dict[str, dict[str, str]]:
        """``{"sha256": {"10": "<hex>"}, ...}`` as ``imasim log replay --json`` prints."""
        return {a.kernel_name: {str(i): v.hex() for i, v in sorted(b.items())}
                for a, b in self.state.pcrs.items()}

    def __repr__(self) -> str:
        from .._repr import pcr10

        bad = f", {len(self.bad_digests)} bad template digests" if self.bad_digests else ""
        return f"<ReplayResult {self.count} entries: {pcr10(self.pcrs)}{bad}>"

    def _repr_html_(self) -> str:
        """The replayed PCR values per bank, for notebooks."""
        from .._html import replay_result

        return replay_result(self)


#: appraise a record from (index, PCR, stored template digest, template data)
_RawAppraisal = Callable[[int, int, bytes, bytes], None]


class _Appraiser(Protocol):
    """What the fused replay calls to appraise entries (see imasim.attest.appraise_file)."""

    def fast_set(self, prefix: bytes, f0: int, /
                 ) -> tuple[AbstractSet[bytes], _RawAppraisal]:
        """For ima-ng records whose d-ng field has ``prefix`` ("sha256:" NUL) and ``f0``
        bytes: the template data known good, and the appraisal of other such records
        (index, PCR, stored digest, template data) that are not violations."""

    def record_index(self, prefix: bytes, f0: int, name: bytes,
                     algs: tuple[HashAlgorithm, ...], entries: int, /
                     ) -> AbstractSet[bytes] | Mapping[bytes, Any] | None:
        """After ``entries`` more records of that shape (``name``: their template-name
        field as stored, length and name) went through the fast check: the known-good
        records as the list stores them from the template digest on (the digest in
        ``algs[0]``, the list's; ``name``; the data length; the data), once building it
        has paid for itself, else None. With more than one algorithm, a mapping to their
        template hashes in ``algs[1:]`` (one bytes, or a tuple of them)."""

    def __call__(self, index: int, entry: MeasurementEntry, /) -> None:
        """Appraise one entry the fast check did not accept."""


#: the record index of a shape that has none (every lookup misses)
_NO_INDEX: Mapping[bytes, Any] = MappingProxyType({})


def _no_appraisal(index: int, pcr: int, stored: bytes, data: bytes) -> None:
    """The appraisal callbacks of the fast path when nothing is appraised (never called)."""


# -- the engine ---------------------------------------------------------------------------
#
# The extend rule, written once. The loops below are generated per configuration (the
# number of banks, which are padded, whether the stored digest is checked, whether an
# appraiser is called) so that the hot loop holds one local per bank and no per-bank
# Python loop: for the usual sha1+sha256 banks of a classic list it hashes 4 times per
# entry (two template hashes, the SHA-1 one doubling as the stored-digest check, and two
# extends) and does one bytes comparison per bank to notice a quoted value.

_STEP = """\
{hash}
if {chk} != dig:
    if dig == zero:
        {viol}
        viol_append(index)
        {on_viol}
    else:
        bad_append(index)
        {on_bad}
{on_good}
"""

_EXTEND = """\
{extend}
if {hit_test}:
    armed = E._hit(pcr, index + 1, ({values},))
"""

# a known-good record: the bytes from its stored digest to its end (digest, template
# name, data length, data) are those of a record the appraiser knows good, whose
# template hashes it computed from that data: no hashing, no appraisal, no other check
_KNOWN = """\
pcr, dig, dlen = known_head(buf, pos)
dend = pos + dhead + dlen
if {lookup}:
    {known}
{switch}
{extend}
    pos = dend
    index += 1
    continue
"""

_SWITCH = """\
if pcr != pcr_now:
    cur[pcr_now] = ({values}, {targets}, armed)
    pcr_now = pcr
    st = cur.get(pcr)
    if st is None:
        st = E._new_pcr(pcr, index)
    {values}, {targets}, armed = st
if armed:
    E._end(pcr, index)
    armed = False
"""

_LOOP = """\
def _chunk(E, buf, base, final):
    end = len(buf)
    hdr = 8 + E.dsize
    max_data = E.limits.max_template_data
    # the fast path checks neither the entry limit nor the data limit: a chunk that could
    # reach either goes through the scanner
    fast_ok = E.index + end // (hdr + 5) <= E.limits.max_entries and end <= max_data
    {ctor_setup}
    zero = E.zero
    cur = E.cur
    bad_append = E.bad.append
    viol_append = E.violations.append
    appraiser = E.appraiser
    head = E.head
    u32 = E.u32
    legacy = E._legacy_input
    entry_at = E._entry
    index = E.index
    pcr_now = E.pcr_now
    {values}, {targets}, armed = cur[pcr_now]
    pos = 0
    while pos < end:
        if E.loop is not _chunk:  # the record index arrived: its loop takes the rest
            break
        shape = E.shape
        if shape is not None and fast_ok:
            (unpack, ssize, key, f0_len, skip, fast_set, raw_appraise, entry_appraise,
             known_head, known, known_get) = shape
            lim = end - ssize
            dhead = skip + 4
            two = 8 + f0_len
            first = index
            while pos <= lim:
{known_prelude}
                pcr, dig, hn, dlen, f0, f1 = unpack(buf, pos)
                dstart = pos + dhead
                dend = dstart + dlen
                if hn != key or f0 != f0_len or dlen != two + f1 or dend > end:
                    break
                data = buf[dstart:dend]
{fast_switch}
{fast_step}
                pos = dend
                index += 1
            E.fast += index - first
            if pos >= end:
                break
        # anything else: the scanner validates a window of records from here
        E.index = index
        starts, pos = E._scan(buf, pos, end, base, final)
        if not starts:
            break
        for start in starts:
            pcr, dig, nlen = head(buf, start)
            p = start + hdr + nlen
            if nlen == 3 and buf[p - 3:p] == b"ima":
                data = legacy(buf, p)
            else:
                data = buf[p + 4:p + 4 + u32(buf, p)[0]]
{slow_switch}
{slow_step}
            if appraiser is not None:
                appraiser(index, entry_at(buf, start))
            index += 1
    E.index = index
    E.pcr_now = pcr_now
    cur[pcr_now] = ({values}, {targets}, armed)
    return pos
"""


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())


_LOOPS: dict[tuple[Any, ...], Callable[..., int]] = {}


def _template_algs(banks: Sequence[HashAlgorithm], padded: Sequence[bool],
                   digest_alg: HashAlgorithm, check: bool) -> list[HashAlgorithm]:
    """The template hashes a configuration needs, one per algorithm: native banks,
    SHA-1 for padded banks, the list's digest algorithm for the check."""
    algs: list[HashAlgorithm] = []
    for a, p in zip(banks, padded, strict=True):
        want = HashAlgorithm.SHA1 if p else a
        if want not in algs:
            algs.append(want)
    if check and digest_alg not in algs:
        algs.append(digest_alg)
    return algs


def _compile_loop(banks: tuple[HashAlgorithm, ...], padded: tuple[bool, ...],
                  digest_alg: HashAlgorithm, check: bool, appraise: bool, matching: bool,
                  indexed: bool = False) -> Callable[..., int]:
    """The chunk loop for one configuration, generated from _STEP/_EXTEND/_SWITCH/_LOOP
    (without ``matching``, no quoted values are looked for; with ``indexed``, the fast
    path first looks a record up in the appraiser's record index: _KNOWN)."""
    key = (banks, padded, digest_alg, check, appraise, matching, indexed)
    found = _LOOPS.get(key)
    if found is not None:
        return found
    nb = len(banks)
    algs = _template_algs(banks, padded, digest_alg, check)
    th = {a: f"th{j}" for j, a in enumerate(algs)}
    ext = [f"p{i}" if p else th[a] for i, (a, p) in enumerate(zip(banks, padded, strict=True))]
    values = ", ".join(f"v{i}" for i in range(nb))
    targets = ", ".join(f"t{i}" for i in range(nb))
    setup = [f"tc{j} = E.tctors[{j}]" for j in range(len(algs))]
    setup += [f"c{i} = E.ctors[{i}]" for i in range(nb)]
    setup += [f"o{i} = E.ones[{i}]" for i in range(nb)]
    setup += [f"pad{i} = E.pads[{i}]" for i in range(nb) if padded[i]]
    pad_lines = [f"p{i} = {th[HashAlgorithm.SHA1]} + pad{i}" for i in range(nb) if padded[i]]
    hash_lines = [f"{th[a]} = tc{j}(data).digest()" for j, a in enumerate(algs)] + pad_lines
    viol = "; ".join(f"{ext[i]} = o{i}" for i in range(nb))
    extend = "\n".join(f"v{i} = c{i}(v{i} + {ext[i]}).digest()" for i in range(nb))
    hit_test = " or ".join(f"v{i} == t{i}" for i in range(nb))
    chk = th[digest_alg] if check else "dig"

    extension = (_EXTEND if matching else "{extend}\n").format(
        extend=extend, hit_test=hit_test, values=values)

    def step(fast: bool) -> str:
        if appraise and fast:
            # with an appraiser the shape always holds a set (empty when nothing is known)
            on_viol = "entry_appraise(index, pcr, dig, data)"
            on_bad = "if data not in fast_set: raw_appraise(index, pcr, dig, data)"
            on_good = ("elif data not in fast_set:\n"
                       "    raw_appraise(index, pcr, dig, data)")
        else:
            on_viol = on_bad = "pass"
            on_good = ""
        body = _STEP
        if not check:  # only violations are looked for: dig == zero
            body = body.replace("if {chk} != dig:\n    if dig == zero:", "if True:\n"
                                 "    if dig == zero:")
            body = body.replace("    else:\n        bad_append(index)\n        {on_bad}\n", "")
            body = body.replace("{on_good}\n", "")
        return body.format(hash="\n".join(hash_lines), chk=chk, viol=viol, on_viol=on_viol,
                           on_bad=on_bad, on_good=on_good) + extension

    switch = _SWITCH.format(values=values, targets=targets)
    if not matching:
        switch = switch.replace("if armed:\n    E._end(pcr, index)\n    armed = False\n", "")
    prelude = ""
    if indexed:
        # the index's key is the list's digest; its values the other template hashes
        others = [a for a in algs if a is not digest_alg]
        known = [f"{th[digest_alg]} = dig"]
        if not others:
            lookup = "buf[pos + 4:dend] in known"
        else:
            lookup = "(hit := known_get(buf[pos + 4:dend])) is not None"
            known += [f"{th[others[0]]} = hit"] if len(others) == 1 else \
                [f"{', '.join(th[a] for a in others)}, = hit"]
        prelude = _KNOWN.format(lookup=lookup, known="\n    ".join(known + pad_lines),
                                switch=_indent(switch, 4), extend=_indent(extension, 4))
    src = _LOOP.format(ctor_setup="\n    ".join(setup), values=values, targets=targets,
                       known_prelude=_indent(prelude, 16),
                       fast_switch=_indent(switch, 16), fast_step=_indent(step(True), 16),
                       slow_switch=_indent(switch, 12), slow_step=_indent(step(False), 12))
    namespace: dict[str, Any] = {}
    exec(compile(src, f"<imasim replay loop {len(banks)} banks>", "exec"), namespace)
    fn: Callable[..., int] = namespace["_chunk"]
    if len(_LOOPS) < 256:
        _LOOPS[key] = fn
    return fn


#: a bank's matching intervals per PCR: [first count, last count] (None: still open)
_Intervals = dict[int, list[list[Any]]]


@dataclass(slots=True)
class _Outcome:
    """What one run of the engine found, per bank (merged across parallel workers)."""

    banks: tuple[HashAlgorithm, ...]
    padded: tuple[bool, ...]
    start: int
    count: int
    values: list[dict[int, bytes]]
    intervals: list[_Intervals]
    touched: set[int]
    bad: list[int]
    violations: list[int]
    uncovered: list[tuple[int, int]]

    def bank(self, alg: HashAlgorithm) -> int:
        return self.banks.index(alg)


class _Engine:
    """Validate and replay a binary list in one pass over each chunk.

    A run of records of the same shape as the last one validated (same template of two
    fields, same first-field length: an ima-ng list with one file-hash algorithm) is
    validated with one ``unpack_from`` and a few comparisons per record, which accept a
    record only when the scanner of :mod:`imasim.ima.codec` would accept it with the same
    boundaries; any other record goes to that scanner (over a small window from it), so
    errors, their offsets and fields are exactly the scanner's. Template data is hashed
    from slices of the chunk; no entry objects are built except for entries the
    appraiser's fast check does not accept.

    With ``targets`` (bank -> PCR -> quoted value), it records for every bank and PCR the
    intervals of entry counts over which the replayed value equals the quoted one (a hash
    chain reaches a value at most once): :meth:`outcome` then tells after which counts
    every bank matches.
    """

    _WINDOW = 16384

    def __init__(self, banks: Sequence[HashAlgorithm], padded: Sequence[bool],
                 digest_alg: HashAlgorithm, byte_order: ByteOrder, *,
                 limits: Limits = DEFAULT_LIMITS, appraiser: _Appraiser | None = None,
                 start: ReplayState | None = None,
                 targets: Mapping[HashAlgorithm, Mapping[int, bytes]] | None = None,
                 covered: AbstractSet[int] = frozenset(), ignore: AbstractSet[int] = frozenset(),
                 check: bool = True) -> None:
        if not banks:
            raise UsageError("replay needs at least one bank")
        if len(set(banks)) != len(banks):
            raise UsageError("a bank is listed twice")
        self.banks = tuple(banks)
        self.padded = tuple(padded)
        for a in self.banks:
            a.constructor()  # UnsupportedAlgorithmError when OpenSSL lacks it
        self.digest_alg = digest_alg
        self.order: ByteOrder = byte_order
        self.limits = limits
        self.appraiser = appraiser
        self.dsize = digest_alg.digest_size
        self.zero = digest_alg.zero
        pfx = "<" if byte_order == "little" else ">"
        self.u32 = struct.Struct(pfx + "I").unpack_from
        self.head = struct.Struct(f"{pfx}I{self.dsize}sI").unpack_from
        self.scanner = _Scanner(byte_order, self.dsize, limits)
        self.names: dict[bytes, tuple[str, int]] = {}
        self.fast_sets: dict[tuple[bytes, int], tuple[AbstractSet[bytes], _RawAppraisal]] = {}
        self.shape: tuple[Any, ...] | None = None
        self.offsets: array[int] | None = None
        tctor_algs = _template_algs(self.banks, self.padded, digest_alg, check)
        self.tctors = [a.constructor() for a in tctor_algs]
        # the record index (see _rent): keyed by the list's digest, then the other hashes
        self.index_algs: tuple[HashAlgorithm, ...] | None = (
            digest_alg, *(a for a in tctor_algs if a is not digest_alg)
        ) if check and appraiser is not None else None
        self.indexes: dict[tuple[bytes, int], AbstractSet[bytes] | Mapping[bytes, Any]] = {}
        self.shape_key: tuple[bytes, int] | None = None
        self.fast = self.counted = 0  # records through the fast path; told the appraiser
        self.ctors = [a.constructor() for a in self.banks]
        self.ones = [a.ones for a in self.banks]
        self.pads = [bytes(a.digest_size - 20) if p else b""
                     for a, p in zip(self.banks, self.padded, strict=True)]
        self.loop = _compile_loop(self.banks, self.padded, digest_alg, check,
                                  appraiser is not None, targets is not None)
        self.check = check
        self.start = 0 if start is None else start.count
        self.index = self.start
        self.bad: list[int] = []
        self.violations: list[int] = []
        self.uncovered: list[tuple[int, int]] = []
        self.matching = targets is not None
        nb = len(self.banks)
        self.targets = {pcr: tuple(targets.get(a, {}).get(pcr, b"") for a in self.banks)
                        for pcr in covered - ignore} if targets is not None else {}
        self.covered = covered
        self.ignore = ignore
        self.intervals: list[_Intervals] = [{} for _ in range(nb)]
        self.open: dict[int, list[list[Any]]] = {}
        # PCR -> (value per bank..., target per bank..., armed); -1 is a placeholder
        self.cur: dict[int, tuple[Any, ...]] = {-1: (*(b"",) * (2 * nb), False)}
        self.pcr_now = -1
        if start is not None:
            for pcr in sorted({p for a in self.banks for p in start.pcrs.get(a, {})}):
                vals = tuple(start.pcrs.get(a, {}).get(pcr, a.zero) for a in self.banks)
                tgt = self._targets(pcr)
                self.cur[pcr] = (*vals, *tgt, self._hit(pcr, self.start, vals, tgt))

    def _targets(self, pcr: int) -> tuple[bytes, ...]:
        return self.targets.get(pcr) or (b"",) * len(self.banks)

    # -- called from the generated loop (rarely) ---------------------------------------
    def _new_pcr(self, pcr: int, index: int) -> tuple[Any, ...]:
        """The state of a PCR at its first entry (``index``) in this run."""
        nb = len(self.banks)
        zeros = tuple(a.zero for a in self.banks)
        tgt = self._targets(pcr)
        if self.matching and pcr not in self.ignore:
            if pcr not in self.covered:
                self.uncovered.append((index, pcr))
            # untouched, a PCR holds its initial value: PCR 10 is always compared, any
            # other one only once the list extends it (as evmctl compares the PCRs the
            # list extended so far)
            for b in range(nb):
                if pcr != 10 or pcr not in self.covered or zeros[b] == tgt[b]:
                    self.intervals[b].setdefault(pcr, []).append([self.start, index])
        return (*zeros, *tgt, False)

    def _hit(self, pcr: int, count: int, values: tuple[bytes, ...],
             targets: tuple[bytes, ...] | None = None) -> bool:
        """After ``count`` entries ``pcr`` holds ``values``: record the banks at target."""
        tgt = self._targets(pcr) if targets is None else targets
        armed = False
        for b, (v, t) in enumerate(zip(values, tgt, strict=True)):
            if v == t:
                iv = [count, None]
                self.intervals[b].setdefault(pcr, []).append(iv)
                self.open.setdefault(pcr, []).append(iv)
                armed = True
        return armed

    def _end(self, pcr: int, index: int) -> None:
        """Entry ``index`` extends ``pcr``: the values recorded at target end there."""
        for iv in self.open.pop(pcr, ()):
            iv[1] = index

    def _legacy_input(self, buf: bytes, p: int) -> bytes:
        """What the legacy 'ima' template hashes: d || n zero-padded to 256 bytes."""
        (flen,) = self.u32(buf, p + 20)
        return buf[p:p + 20] + buf[p + 24:p + 24 + flen].ljust(_IMA_NAME_FIELD, b"\0")

    def _scan(self, buf: bytes, pos: int, end: int, base: int, final: bool
              ) -> tuple[array[int], int]:
        """The scanner over a window from ``pos``, widened until it holds one record."""
        if self.offsets is not None:
            return self._next_records(buf, pos)
        starts: array[int] = array("Q")
        win = self._WINDOW
        while True:
            w_end = min(end, pos + win)
            new_pos, _ = self.scanner.scan(buf, pos, w_end, base, final and w_end == end,
                                           starts, self.index)
            if new_pos != pos or w_end == end:
                break
            win *= 4
        if starts:
            self._learn(buf, starts[-1])
        return starts, new_pos

    def _next_records(self, buf: bytes, pos: int) -> tuple[array[int], int]:
        """Records already split (entry objects, a parsed list): the next few from pos."""
        offsets = self.offsets
        assert offsets is not None
        i = bisect.bisect_left(offsets, pos)
        j = min(len(offsets), i + 64)
        starts = offsets[i:j]
        new_pos = offsets[j] if j < len(offsets) else len(buf)
        if starts:
            try:
                self._learn(buf, starts[-1])
            except ParseError:  # an entry object with a name no template has
                self.shape = None
        return starts, new_pos

    def _name(self, raw: bytes) -> tuple[str, int]:
        found = self.names.get(raw)
        if found is None:
            found = self.scanner.names.get(raw) or self.scanner._template(raw, 0)
            if len(self.names) < 4096:
                self.names[raw] = found
        return found

    def _learn(self, buf: bytes, start: int) -> None:
        """Take the shape of a validated record for the fast path (two fields only)."""
        dsize = self.dsize
        hdr = 8 + dsize
        u32 = self.u32
        (nlen,) = u32(buf, start + 4 + dsize)
        raw = buf[start + hdr:start + hdr + nlen]
        name, nfields = self._name(raw)
        if nfields != 2:
            return
        p = start + hdr + nlen
        (f0,) = u32(buf, p + 4)
        fast_set: AbstractSet[bytes] | None = None
        raw_appraise: _RawAppraisal = _no_appraisal
        entry_appraise: _RawAppraisal = _no_appraisal
        known: AbstractSet[bytes] | Mapping[bytes, Any] = _NO_INDEX
        appraiser = self.appraiser
        order = self.order
        self.shape_key = None
        if appraiser is not None:
            def appraise(index: int, pcr: int, stored: bytes, data: bytes) -> None:
                appraiser(index, tuple.__new__(MeasurementEntry,
                                               (pcr, name, stored, data, order)))

            fast_set, raw_appraise, entry_appraise = frozenset(), appraise, appraise
            d = buf[p + 8:p + 8 + f0]
            nul = d.find(b"\0")
            if name == "ima-ng" and nul > 0 and order == "little":
                k = (d[:nul + 1], f0)
                if k not in self.fast_sets:
                    self.fast_sets[k] = appraiser.fast_set(d[:nul + 1], f0)
                fast_set, raw_appraise = self.fast_sets[k]
                self.shape_key = k
        name_field = buf[start + 4 + dsize:start + hdr + nlen]
        if self.shape_key is not None:
            k = self.shape_key
            known = self.indexes.get(k) or self._take_index(k, name_field, 0) or _NO_INDEX
        pfx = "<" if order == "little" else ">"
        st = struct.Struct(f"{pfx}I{dsize}s{4 + nlen}sII{f0}xI")
        self.shape = (st.unpack_from, st.size, name_field,
                      f0, hdr + nlen, fast_set, raw_appraise, entry_appraise,
                      struct.Struct(f"{pfx}I{dsize}s{4 + nlen}xI").unpack_from, known,
                      getattr(known, "get", None))

    def _entry(self, buf: bytes, start: int) -> MeasurementEntry:
        dsize = self.dsize
        pcr, digest, nlen = self.head(buf, start)
        p = start + 8 + dsize
        name, nfields = self._name(buf[p:p + nlen])
        p += nlen
        if nfields < 0:
            data = buf[p:p + 24 + self.u32(buf, p + 20)[0]]
        else:
            data = buf[p + 4:p + 4 + self.u32(buf, p)[0]]
        return tuple.__new__(MeasurementEntry, (pcr, name, digest, data, self.order))

    # -- driving ------------------------------------------------------------------------
    def feed_stream(self, source: BinaryIO, chunk_size: int, head: bytes = b"") -> None:
        reader = _ChunkReader(source, chunk_size, self.limits)
        reader.buf = head
        while reader.fill():
            loop = self.loop
            pos = loop(self, reader.buf, reader.base, reader.eof)
            while self.loop is not loop and pos:  # switched to the indexed loop
                reader.buf, reader.base = reader.buf[pos:], reader.base + pos
                loop = self.loop
                pos = loop(self, reader.buf, reader.base, reader.eof)
            reader.consume(pos)
            if self.shape_key is not None and self.shape_key not in self.indexes:
                self._rent()

    def _rent(self) -> None:
        """Between chunks: tell the appraiser how many records of the current shape went
        through the fast check, and take its record index once it has one.

        Hashing a known-good record's data costs about what indexing one record of the
        policy costs (its template hashes, computed once per policy): the appraiser
        builds the index once the fast check has met as many known-good records as the
        index would hold (ski rental: at most twice the cost of the better choice, for
        any list), and keeps it with the policy for later lists. With the index, a record
        whose bytes from the stored digest on are those of a known record is verified and
        accepted without hashing; any other record takes the path it took before."""
        k, shape = self.shape_key, self.shape
        assert k is not None and shape is not None
        n, self.counted = self.fast - self.counted, self.fast
        known = self._take_index(k, shape[2], n)
        if known is not None:
            self.shape = (*shape[:-2], known, getattr(known, "get", None))

    def _take_index(self, k: tuple[bytes, int], name: bytes, n: int
                    ) -> AbstractSet[bytes] | Mapping[bytes, Any] | None:
        """The appraiser's record index for shape ``k`` after ``n`` more records, if it
        has one; then the loop that uses it (the running loop stops at its next window
        and feed_stream runs this one over the rest of the chunk)."""
        if self.appraiser is None or self.index_algs is None or self.offsets is not None:
            return None
        known = self.appraiser.record_index(k[0], k[1], name, self.index_algs, n)
        if known is not None:
            self.indexes[k] = known
            self.loop = _compile_loop(self.banks, self.padded, self.digest_alg, self.check,
                                      True, self.matching, indexed=True)
        return known

    def feed_records(self, buf: bytes, offsets: array[int]) -> None:
        """Records whose boundaries are known (not validated again)."""
        self.offsets = offsets
        try:
            self.loop(self, buf, 0, True)
        finally:
            self.offsets = None

    def outcome(self) -> _Outcome:
        n = self.index
        for ivs in self.open.values():
            for iv in ivs:
                iv[1] = n
        self.open.clear()
        nb = len(self.banks)
        values: list[dict[int, bytes]] = [{} for _ in range(nb)]
        for pcr, st in self.cur.items():
            if pcr >= 0:
                for b in range(nb):
                    values[b][pcr] = st[b]
        for b, a in enumerate(self.banks):
            values[b].setdefault(10, a.zero)
        touched = {p for p in self.cur if p >= 0}
        return _Outcome(self.banks, self.padded, self.start, n, values, self.intervals,
                        touched, self.bad, self.violations, self.uncovered)


def _entry_kind(first: MeasurementEntry | None, digest_alg: HashAlgorithm | None
                ) -> tuple[HashAlgorithm, ByteOrder]:
    """The stored digests' algorithm (given, else the one of the first entry's digest
    size) and the byte order (the first entry's) of entry objects."""
    if first is None:
        return digest_alg or HashAlgorithm.SHA1, "little"
    if digest_alg is None:
        by_size = {a.digest_size: a for a in (HashAlgorithm.SHA512, HashAlgorithm.SHA384,
                                               HashAlgorithm.SHA256, HashAlgorithm.SHA1)}
        digest_alg = by_size.get(len(first.template_digest), HashAlgorithm.SHA1)
    return digest_alg, first.byte_order


def _record_batches(entries: Iterable[MeasurementEntry], digest_alg: HashAlgorithm,
                    order: ByteOrder, batch: int = 4096
                    ) -> Iterator[tuple[bytes, array[int]]]:
    """Entry objects serialised as records, a batch at a time (bounded memory), with
    where each record starts."""
    pack = struct.Struct("<I" if order == "little" else ">I").pack
    dsize = digest_alg.digest_size
    names: dict[str, bytes] = {}
    parts: list[bytes] = []
    offsets: array[int] = array("Q")
    pos = 0
    for i, e in enumerate(entries):
        pcr, name, digest, data, e_order = e
        if len(digest) != dsize:
            raise UsageError(f"entry {i} has a {len(digest)}-byte template digest, not the "
                             f"{dsize} bytes of {digest_alg.kernel_name}")
        if e_order != order or name == "ima" or not 0 <= pcr <= 0xFFFFFFFF:
            rec = e.to_bytes(byte_order=order)
        else:
            head = names.get(name)
            if head is None:
                raw = name.encode("ascii")
                head = names[name] = pack(len(raw)) + raw
            rec = b"".join((pack(pcr), digest, head, pack(len(data)), data))
        offsets.append(pos)
        parts.append(rec)
        pos += len(rec)
        if len(offsets) == batch:
            yield b"".join(parts), offsets
            parts, offsets, pos = [], array("Q"), 0
    if offsets:
        yield b"".join(parts), offsets


# -- running the engine -------------------------------------------------------------------
_Feed = Callable[[_Engine], None]


class _Input:
    """A list to run the engine over, once or again (the padded retry): a parsed list,
    entry objects, or a file read from its current position (seekable for a second
    pass)."""

    def __init__(self, *, entries: Iterable[MeasurementEntry] | None = None,
                 digest_alg: HashAlgorithm = HashAlgorithm.SHA1, order: ByteOrder = "little",
                 source: BinaryIO | None = None, head: bytes = b"",
                 chunk_size: int = 1 << 20) -> None:
        self.entries = entries
        self.digest_alg = digest_alg
        self.order: ByteOrder = order
        self.source = source
        self.head = head
        self.chunk_size = chunk_size
        self.start_pos: int | None = None
        if source is not None:
            try:
                self.start_pos = source.tell() - len(head)
            except (OSError, AttributeError, ValueError):
                self.start_pos = None
        self.runs = 0

    @classmethod
    def of(cls, entries: Iterable[MeasurementEntry], digest_alg: HashAlgorithm | None, *,
           again: bool) -> _Input:
        """Entry objects or a parsed list; ``again``: keep what a second pass needs."""
        if isinstance(entries, MeasurementList) and digest_alg in (None, entries.digest_alg):
            return cls(entries=entries, digest_alg=entries.digest_alg,
                       order=entries.byte_order)
        if again and not isinstance(entries, Sequence):
            entries = list(entries)
        if isinstance(entries, Sequence):
            alg, order = _entry_kind(entries[0] if entries else None, digest_alg)
            return cls(entries=entries, digest_alg=alg, order=order)
        it = iter(entries)
        first = next(it, None)
        alg, order = _entry_kind(first, digest_alg)
        rest = it if first is None else itertools.chain((first,), it)
        return cls(entries=rest, digest_alg=alg, order=order)

    def feed(self, engine: _Engine) -> None:
        if self.entries is not None:
            if isinstance(self.entries, MeasurementList):
                engine.feed_records(self.entries.to_bytes(), self.entries._offsets)
                return
            for buf, offsets in _record_batches(self.entries, self.digest_alg, self.order):
                engine.feed_records(buf, offsets)
            return
        assert self.source is not None
        head = self.head
        if self.runs:
            if self.start_pos is None:
                raise UsageError("a second pass (padded SHA-1 banks) needs a seekable file; "
                                 "name the padded banks instead")
            self.source.seek(self.start_pos)
            head = b""
        self.runs += 1
        engine.feed_stream(self.source, self.chunk_size, head)

    def fileno(self) -> int | None:
        if self.source is None or self.start_pos is None or self.runs:
            return None
        try:
            return self.source.fileno()
        except (OSError, AttributeError, ValueError):
            return None


class _PreadFile:
    """A read-only view of a file descriptor from an offset (os.pread: workers share the
    descriptor, not its position)."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd, self.offset = fd, offset

    def read(self, n: int) -> bytes:
        data = os.pread(self.fd, n, self.offset)
        self.offset += len(data)
        return data


@dataclass(frozen=True, slots=True)
class _Job:
    """One worker's share: the banks it replays, and whether it checks stored digests."""

    banks: tuple[HashAlgorithm, ...]
    padded: tuple[bool, ...]
    check: bool


def _engine_for(job: _Job, digest_alg: HashAlgorithm, order: ByteOrder,
                start: ReplayState | None, targets: PcrValues | None,
                covered: AbstractSet[int], ignore: AbstractSet[int], limits: Limits,
                appraiser: _Appraiser | None = None) -> _Engine:
    return _Engine(job.banks, job.padded, digest_alg, order, limits=limits,
                   appraiser=appraiser, start=start, targets=targets, covered=covered,
                   ignore=ignore, check=job.check)


def _worker(args: tuple[Any, ...]) -> _Outcome:
    """A parallel worker: one share of the banks over the whole file (pread from fd)."""
    (job, digest_alg, order, start, targets, covered, ignore, limits, fd, offset,
     chunk_size, head) = args
    engine = _engine_for(job, digest_alg, order, start, targets, covered, ignore, limits)
    engine.feed_stream(_PreadFile(fd, offset + len(head)),  # type: ignore[arg-type]
                       chunk_size, head)
    return engine.outcome()


def _run(inp: _Input, banks: Sequence[HashAlgorithm], padded: Sequence[bool],
         digest_alg: HashAlgorithm, order: ByteOrder, *, start: ReplayState | None = None,
         targets: PcrValues | None = None, covered: AbstractSet[int] = frozenset(),
         ignore: AbstractSet[int] = frozenset(), limits: Limits = DEFAULT_LIMITS,
         appraiser: _Appraiser | None = None, check: bool = True, jobs: int = 1) -> _Outcome:
    """Run the engine over ``inp``: in this process, or the banks shared among ``jobs``
    worker processes reading the same file (each validating every record)."""
    banks, padded = tuple(banks), tuple(padded)
    fd = inp.fileno() if jobs > 1 and appraiser is None and len(banks) > 1 else None
    if fd is None:
        engine = _engine_for(_Job(banks, padded, check), digest_alg, order, start, targets,
                             covered, ignore, limits, appraiser)
        inp.feed(engine)
        return engine.outcome()
    n = min(jobs, len(banks))
    # the stored digests are checked by the worker that hashes the list's algorithm
    checker = next((i % n for i, (a, p) in enumerate(zip(banks, padded, strict=True))
                    if (HashAlgorithm.SHA1 if p else a) is digest_alg), 0)
    shares = [_Job(tuple(a for i, a in enumerate(banks) if i % n == w),
                   tuple(p for i, p in enumerate(padded) if i % n == w), check and w == checker)
              for w in range(n)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    assert inp.start_pos is not None
    ctx = multiprocessing.get_context("fork" if "fork" in
                                      multiprocessing.get_all_start_methods() else None)
    plain = None if targets is None else {a: dict(b) for a, b in targets.items()}
    work = [(job, digest_alg, order, start, plain, covered, ignore, limits, fd,
             inp.start_pos, inp.chunk_size, inp.head) for job in shares]
    # this process takes the first share itself while the workers run the others
    with ProcessPoolExecutor(n - 1, mp_context=ctx) as pool:
        others = pool.map(_worker, work[1:])
        parts = [_worker(work[0]), *others]
    inp.runs += 1
    merged = _Outcome(banks, padded, parts[0].start, parts[0].count,
                      [{} for _ in banks], [{} for _ in banks], set(parts[0].touched),
                      parts[checker].bad, parts[0].violations, parts[0].uncovered)
    for job, part in zip(shares, parts, strict=True):
        for a in job.banks:
            b, pb = banks.index(a), part.bank(a)
            merged.values[b] = part.values[pb]
            merged.intervals[b] = part.intervals[pb]
    return merged


def _replay_result(o: _Outcome) -> ReplayResult:
    pcrs = {a: dict(sorted(o.values[b].items())) for b, a in enumerate(o.banks)}
    return ReplayResult(ReplayState(o.count, pcrs), tuple(o.bad),
                        frozenset(a for a, p in zip(o.banks, o.padded, strict=True) if p),
                        tuple(o.violations))


def replay(
    entries: Iterable[MeasurementEntry],
    *,
    banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1, HashAlgorithm.SHA256),
    padded_banks: Iterable[HashAlgorithm] = (),
    digest_alg: HashAlgorithm | None = None,
    start: ReplayState | None = None,
) -> ReplayResult:
    """Replay ``entries`` into ``banks`` from zero (or from ``start``).

    ``padded_banks`` are extended with the zero-padded SHA-1 template digest.
    ``digest_alg`` is the algorithm of the stored template digests: by default a
    :class:`~imasim.ima.MeasurementList`'s own, else the one of their size (SHA-1 for
    20 bytes). Entries are validated as the list parser validates records.
    """
    inp = _Input.of(entries, digest_alg, again=False)
    padded = frozenset(padded_banks)
    o = _run(inp, banks, [a in padded for a in banks], inp.digest_alg, inp.order, start=start)
    return _replay_result(o)


def _file_kind(source: BinaryIO, digest_alg: HashAlgorithm | None,
               byte_order: str | None) -> tuple[bytes, HashAlgorithm, ByteOrder]:
    """Peek at the start of a file for the list's kind unless both are given."""
    if byte_order is not None and byte_order not in ("little", "big"):
        raise ParseError("byte_order must be 'little' or 'big'", field="byte_order",
                         actual=byte_order)
    if digest_alg is not None and byte_order is not None:
        return b"", digest_alg, "little" if byte_order == "little" else "big"
    head = source.read(1 << 16)
    kind = detect_list_kind(head, digest_alg=digest_alg, byte_order=byte_order)
    return head, kind.digest_alg, kind.byte_order


def replay_file(
    source: BinaryIO,
    *,
    banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1, HashAlgorithm.SHA256),
    padded_banks: Iterable[HashAlgorithm] = (),
    digest_alg: HashAlgorithm | None = None,
    byte_order: str | None = None,
    chunk_size: int = 1 << 20,
    jobs: int = 1,
    limits: Limits = DEFAULT_LIMITS,
) -> ReplayResult:
    """Replay a binary list from a file in bounded memory (chunks of ``chunk_size``).

    Every record is validated as :func:`~imasim.ima.parse_measurement_list` validates a
    whole list (same errors, same absolute offsets), and replayed in the same pass. The
    list's digest algorithm and byte order come from its first record unless given
    (:func:`~imasim.ima.codec.detect_list_kind`). ``jobs`` > 1 shares the banks among
    worker processes that read the file side by side (a real file only).
    """
    if chunk_size < 1:
        raise UsageError("chunk_size must be positive")
    head, alg, order = _file_kind(source, digest_alg, byte_order)
    padded = frozenset(padded_banks)
    o = _run(_Input(source=source, head=head, chunk_size=chunk_size), banks,
             [a in padded for a in banks], alg, order, limits=limits, jobs=jobs)
    return _replay_result(o)


def _replay_file(source: BinaryIO, banks: Sequence[HashAlgorithm],
                 padded_banks: Iterable[HashAlgorithm], digest_alg: HashAlgorithm | None,
                 chunk_size: int, appraiser: _Appraiser | None,
                 limits: Limits = DEFAULT_LIMITS) -> ReplayResult:
    """replay_file, optionally appraising every entry in the same pass."""
    if chunk_size < 1:
        raise UsageError("chunk_size must be positive")
    head, alg, order = _file_kind(source, digest_alg, "little" if digest_alg else None)
    padded = frozenset(padded_banks)
    o = _run(_Input(source=source, head=head, chunk_size=chunk_size), banks,
             [a in padded for a in banks], alg, order, limits=limits, appraiser=appraiser)
    return _replay_result(o)


# -- matching -----------------------------------------------------------------------------
class MatchStatus(enum.Enum):
    """How a list relates to quoted PCR values (one meaning everywhere)."""

    MATCH = "match"
    """Every compared bank holds the quoted values after the whole list: all verified."""
    PREFIX = "prefix"
    """They hold them after the first ``verified_count`` entries only: those are verified,
    the rest arrived after the quote (or were forged) and are not."""
    MISMATCH = "mismatch"
    """No prefix of one entry or more replays to the quoted values: nothing verified."""


@dataclass(frozen=True, slots=True)
class PcrMismatch:
    """A PCR whose replayed value differs from the expected (quoted) one: the bank, the
    index, both values and how many entries had been replayed."""

    bank: HashAlgorithm
    pcr: int
    expected: bytes
    computed: bytes
    entries_replayed: int


@dataclass(frozen=True, slots=True)
class UncoveredEntry:
    """The first entry extended into a PCR that the quoted values do not cover."""

    index: int
    pcr: int

    def __str__(self) -> str:
        return f"entry {self.index} extends PCR {self.pcr}, which the quote does not cover"


@dataclass(frozen=True, slots=True)
class BankMatch:
    """How one bank fared: the largest entry count after which it holds the quoted values."""

    bank: HashAlgorithm
    matched_at: int | None
    padded: bool
    last_match: int | None = None

    @property
    def matched(self) -> bool:
        """Does this bank hold the quoted values after some prefix (``matched_at``)?"""
        return self.matched_at is not None


@dataclass(frozen=True, slots=True)
class MatchResult:
    """A list matched against quoted PCR values.

    ``status`` and ``verified_count`` are the verdict: the first ``verified_count``
    entries are the verified prefix (all of them for MATCH, none for MISMATCH), except
    entries extended into ``ignored_pcrs``, which are never verified. ``uncovered`` names,
    per PCR the quoted values do not cover, the first entry extended into it: entries from
    there on are not verified. ``bad_digests`` and ``violations`` index the whole list.
    """

    status: MatchStatus
    banks: tuple[BankMatch, ...]
    mismatches: tuple[PcrMismatch, ...]
    bad_digests: tuple[int, ...]
    entries: int
    replay: ReplayResult = field(repr=False)
    verified_count: int = 0
    uncovered: tuple[UncoveredEntry, ...] = ()
    violations: tuple[int, ...] = ()
    ignored_pcrs: frozenset[int] = frozenset()
    authenticated: bool = False

    @property
    def matched(self) -> bool:
        """A non-empty verified prefix (status MATCH or PREFIX) none of whose entries has a
        bad stored template digest. ``status`` tells a whole list from a prefix."""
        return (self.status is not MatchStatus.MISMATCH
                and not any(i < self.verified_count for i in self.bad_digests))

    @property
    def verified_violations(self) -> tuple[int, ...]:
        """Violations within the verified prefix (evmctl fails on them unless told
        ``--ignore-violations``; so does an attestation by default)."""
        return tuple(i for i in self.violations if i < self.verified_count)

    def is_verified(self, index: int, pcr: int) -> bool:
        """Is entry ``index`` (extended into ``pcr``) verified by the quoted values?"""
        return index < self.verified_count and pcr not in self.ignored_pcrs

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "matched": self.matched,
            "entries": self.entries,
            "verified_entries": self.verified_count,
            "authenticated": self.authenticated,
            "banks": {b.bank.kernel_name: {"matched_at": b.matched_at, "padded_sha1": b.padded}
                      for b in self.banks},
            "mismatches": [{"bank": m.bank.kernel_name, "pcr": m.pcr,
                            "expected": m.expected.hex(), "computed": m.computed.hex()}
                           for m in self.mismatches],
            "uncovered": [{"index": u.index, "pcr": u.pcr} for u in self.uncovered],
            "ignored_pcrs": sorted(self.ignored_pcrs),
            "bad_digests": list(self.bad_digests),
            "violations": list(self.violations),
        }

    def summary(self) -> str:
        """Plain text: the verdict in words, then per bank, uncovered entries and PCRs."""
        if self.status is MatchStatus.MATCH:
            head = f"MATCH: all {self.entries} entries verified"
        elif self.status is MatchStatus.PREFIX:
            head = (f"PREFIX: the first {self.verified_count} of {self.entries} entries "
                    f"verified; the other {self.entries - self.verified_count} arrived "
                    "after the quote and are not")
        else:
            head = f"MISMATCH: none of the {self.entries} entries verified"
        lines = [head]
        for b in self.banks:
            pad = " (padded SHA-1)" if b.padded else ""
            state = (f"matches after {b.matched_at} entries" if b.matched
                     else "does NOT match")
            lines.append(f"  {b.bank.kernel_name}{pad}: {state}")
        for u in self.uncovered:
            lines.append(f"  {u}")
        for m in self.mismatches:
            lines.append(f"  {m.bank.kernel_name} PCR {m.pcr}: expected {m.expected.hex()}, "
                         f"replayed {m.computed.hex()}")
        if self.ignored_pcrs:
            lines.append(f"  entries in PCR {', '.join(map(str, sorted(self.ignored_pcrs)))} "
                         "ignored: not verified")
        if self.bad_digests:
            lines.append(f"  entries whose stored template digest is wrong: "
                         f"{list(self.bad_digests[:20])}")
        if self.violations:
            lines.append(f"  violations (0xff extends): {len(self.violations)}, the first at "
                         f"entry {self.violations[0]}")
        if not self.authenticated:
            lines.append("  (PCR values not from a verified quote: unauthenticated)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        banks = ", ".join(f"{b.bank.kernel_name} {'matches' if b.matched else 'differs'}"
                          for b in self.banks)
        extra = "".join((
            f", {len(self.mismatches)} PCR mismatches" if self.mismatches else "",
            f", {len(self.bad_digests)} bad template digests" if self.bad_digests else "",
            f", {len(self.uncovered)} uncovered PCRs" if self.uncovered else "",
            "" if self.authenticated else ", unauthenticated"))
        return (f"<MatchResult {self.status.value}: {self.verified_count} of {self.entries} "
                f"entries verified ({banks}){extra}>")

    def _repr_html_(self) -> str:
        """The status, each bank's verdict and the mismatching PCRs, for notebooks."""
        from .._html import match_result

        return match_result(self)


def _span(ivs: Iterable[Sequence[Any]]) -> list[tuple[int, int]]:
    """Merge intervals [lo, hi] into sorted disjoint ones."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ivs):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _allowed(o: _Outcome, b: int, targets: Mapping[int, bytes], covered: AbstractSet[int],
             ignore: AbstractSet[int]) -> list[tuple[int, int]]:
    """The entry counts after which bank ``b`` holds the quoted values."""
    a = o.banks[b]
    allowed = [(o.start, o.count)]
    compared = (o.touched | ({10} & covered)) - ignore
    for pcr in sorted(compared):
        if pcr in o.touched:
            span = _span(o.intervals[b].get(pcr, ()))
        elif targets.get(pcr) == a.zero:
            span = [(o.start, o.count)]
        else:
            span = []
        allowed = _intersect(allowed, span)
    return allowed


def _quoted_values(quoted: PcrBanks | PcrValues) -> tuple[PcrValues, bool]:
    """The quoted values (checked as PcrBanks checks them) and whether a verified quote
    vouches for them. (imasim.tpm is not imported for this: a PcrBanks exists only once
    its module is loaded, and the CLI's start-up stays small.)"""
    mod = sys.modules.get("imasim.tpm.pcrs")
    if mod is not None and isinstance(quoted, mod.PcrBanks):
        return quoted, bool(quoted.authenticated)
    for alg, bank in quoted.items():
        if not isinstance(alg, HashAlgorithm):
            raise UsageError(f"bank {alg!r} is not a HashAlgorithm")
        for idx, value in bank.items():
            if not isinstance(idx, int) or not 0 <= idx < 32:
                raise UsageError(f"{alg.kernel_name} PCR index {idx!r} out of range")
            if len(value) != alg.digest_size:
                raise UsageError(f"{alg.kernel_name} PCR {idx} has {len(value)} bytes, "
                                 f"not {alg.digest_size}")
    return quoted, False


def _match_banks(quoted: PcrValues, banks: Sequence[HashAlgorithm] | None
                 ) -> tuple[tuple[HashAlgorithm, ...], frozenset[int]]:
    """The compared banks (default: every quoted bank holding a value) and the PCRs they
    all hold (the covered ones)."""
    if banks is None:
        chosen = tuple(a for a in quoted if quoted[a])
    else:
        chosen = tuple(banks)
        missing = [a.kernel_name for a in chosen if a not in quoted]
        if missing:
            raise UsageError(f"no quoted values for bank(s) {', '.join(missing)}")
    if not chosen:
        return (), frozenset()
    covered = frozenset.intersection(*(frozenset(quoted[a]) for a in chosen))
    return chosen, covered


def _match(inp: _Input, quoted: PcrBanks | PcrValues, digest_alg: HashAlgorithm,
           order: ByteOrder, *, padding: Mapping[HashAlgorithm, Padding] | Padding,
           banks: Sequence[HashAlgorithm] | None, start: ReplayState | None,
           ignore_pcrs: Iterable[int], limits: Limits = DEFAULT_LIMITS,
           appraiser: _Appraiser | None = None, jobs: int = 1) -> MatchResult:
    pcrs, authenticated = _quoted_values(quoted)
    ignore = frozenset(ignore_pcrs)
    chosen, covered = _match_banks(pcrs, banks)

    def mode(a: HashAlgorithm) -> Padding:
        m = padding if isinstance(padding, str) else padding.get(a, "auto")
        if m not in ("native", "padded", "auto"):
            raise UsageError(f"padding must be native, padded or auto, not {m!r}")
        return "native" if a is HashAlgorithm.SHA1 else m

    run_banks = chosen or (HashAlgorithm.SHA1,)
    padded = [mode(a) == "padded" for a in run_banks]
    kw: dict[str, Any] = {"start": start, "targets": pcrs, "covered": covered,
                          "ignore": ignore, "limits": limits}
    o = _run(inp, run_banks, padded, digest_alg, order, appraiser=appraiser, jobs=jobs, **kw)
    allowed = [_allowed(o, b, pcrs[a], covered, ignore) if chosen else []
               for b, a in enumerate(run_banks)]
    values = list(o.values)
    # padded SHA-1 only for a bank that fails natively: a second pass for those alone
    retry = [a for b, a in enumerate(run_banks)
             if chosen and not allowed[b] and mode(a) == "auto"]
    if retry:
        p = _run(inp, retry, [True] * len(retry), digest_alg, order, check=False, **kw)
        for pb, a in enumerate(retry):
            got = _allowed(p, pb, pcrs[a], covered, ignore)
            if got:
                b = run_banks.index(a)
                allowed[b], values[b], padded[b] = got, p.values[pb], True
    common = [(o.start, o.count)] if chosen else []
    for span in allowed:
        common = _intersect(common, span)
    n = o.count
    k = common[-1][1] if common else None
    if k is not None and k == n:
        status = MatchStatus.MATCH
    elif k is not None and k > 0:
        status = MatchStatus.PREFIX
    else:
        status, k = MatchStatus.MISMATCH, 0
    bank_results = tuple(BankMatch(a, span[-1][1] if span else None, padded[b])
                         for b, (a, span) in enumerate(zip(run_banks, allowed, strict=True))
                         if chosen)
    mismatches: list[PcrMismatch] = []
    if status is MatchStatus.MISMATCH:
        for b, a in enumerate(chosen):
            for pcr in sorted(((o.touched | {10}) & covered) - ignore):
                got_v = values[b].get(pcr, a.zero)
                if got_v != pcrs[a][pcr]:
                    mismatches.append(PcrMismatch(a, pcr, pcrs[a][pcr], got_v, n))
    uncovered = tuple(UncoveredEntry(i, pcr) for i, pcr in o.uncovered)
    rr = ReplayResult(ReplayState(n, {a: dict(sorted(values[b].items()))
                                      for b, a in enumerate(run_banks)}),
                      tuple(o.bad), frozenset(a for a, p in zip(run_banks, padded, strict=True)
                                              if p), tuple(o.violations))
    return MatchResult(status, bank_results, tuple(mismatches), tuple(o.bad), n, rr, k,
                       uncovered, tuple(o.violations), ignore, authenticated)


def match(
    entries: Iterable[MeasurementEntry],
    quoted: PcrBanks | PcrValues,
    *,
    padding: Mapping[HashAlgorithm, Padding] | Padding = "auto",
    banks: Sequence[HashAlgorithm] | None = None,
    digest_alg: HashAlgorithm | None = None,
    start: ReplayState | None = None,
    ignore_pcrs: Iterable[int] = (),
) -> MatchResult:
    """Which prefix of the list do the ``quoted`` PCR values verify?

    ``quoted`` is a :class:`~imasim.tpm.pcrs.PcrBanks` (a verified quote's
    :attr:`~imasim.tpm.verify.VerifiedQuote.pcrs`); a plain mapping is taken as
    unauthenticated values. Every quoted bank holding values is compared (or ``banks``);
    a PCR is covered when every compared bank holds it. The result's ``status`` is MATCH
    when the whole list replays to the quoted values, PREFIX when only its first
    ``verified_count`` entries do (a quote taken while the list grew), MISMATCH otherwise.
    An entry extended into a PCR that is not covered ends the verified prefix (it is
    named in ``uncovered``) unless the PCR is in ``ignore_pcrs``, whose entries are then
    replayed but never verified. With ``padding="auto"`` a non-SHA-1 bank that does not
    match natively is tried with padded SHA-1 digests.
    """
    inp = _Input.of(entries, digest_alg, again=True)
    return _match(inp, quoted, inp.digest_alg, inp.order, padding=padding,
                  banks=banks, start=start, ignore_pcrs=ignore_pcrs)


def match_file(
    source: BinaryIO,
    quoted: PcrBanks | PcrValues,
    *,
    padding: Mapping[HashAlgorithm, Padding] | Padding = "auto",
    banks: Sequence[HashAlgorithm] | None = None,
    digest_alg: HashAlgorithm | None = None,
    byte_order: str | None = None,
    ignore_pcrs: Iterable[int] = (),
    chunk_size: int = 1 << 20,
    jobs: int = 1,
    limits: Limits = DEFAULT_LIMITS,
) -> MatchResult:
    """:func:`match` over a binary list streamed from a file, in bounded memory.

    The list's kind comes from its content unless given (as :func:`replay_file`); a
    padded-SHA-1 retry reads the file a second time (it must be seekable). ``jobs`` > 1
    shares the banks among worker processes.
    """
    return _match_and_appraise_file(source, quoted, None, padding=padding, banks=banks,
                                    digest_alg=digest_alg, byte_order=byte_order,
                                    ignore_pcrs=ignore_pcrs, chunk_size=chunk_size,
                                    jobs=jobs, limits=limits)


def _match_and_appraise_file(source: BinaryIO, quoted: PcrBanks | PcrValues,
                             appraiser: _Appraiser | None, *,
                             padding: Mapping[HashAlgorithm, Padding] | Padding = "auto",
                             banks: Sequence[HashAlgorithm] | None = None,
                             digest_alg: HashAlgorithm | None = None,
                             byte_order: str | None = None, ignore_pcrs: Iterable[int] = (),
                             chunk_size: int = 1 << 20, jobs: int = 1,
                             limits: Limits = DEFAULT_LIMITS) -> MatchResult:
    """match_file, calling ``appraiser`` on every entry in the same pass (the caller keeps
    the verdicts of verified entries: ``result.is_verified(index, pcr)``)."""
    if chunk_size < 1:
        raise UsageError("chunk_size must be positive")
    head, alg, order = _file_kind(source, digest_alg, byte_order)
    return _match(_Input(source=source, head=head, chunk_size=chunk_size), quoted, alg,
                  order, padding=padding, banks=banks, start=None, ignore_pcrs=ignore_pcrs,
                  limits=limits, appraiser=appraiser, jobs=jobs)


# -- boot_aggregate ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BootAggregate:
    """ima_calc_boot_aggregate's result: the bank used and the digest."""

    alg: HashAlgorithm
    digest: bytes

    def __str__(self) -> str:
        return f"{self.alg.kernel_name}:{self.digest.hex()}"


def boot_aggregate(
    pcrs: PcrValues,
    *,
    banks: Sequence[HashAlgorithm] | None = None,
    ima_hash: HashAlgorithm = HashAlgorithm.SHA256,
    kernel_version: tuple[int, int] = (6, 1),
) -> BootAggregate:
    """ima_calc_boot_aggregate from PCR 0-9 values (bank -> index -> value).

    Bank choice (5.8+): the first allocated bank whose algorithm is ``ima_hash``, else
    SHA-256, else SHA-1. H(PCR0 || ... || PCR7), plus PCR8 and PCR9 for a non-SHA-1 bank.
    Before 5.8: SHA-1 over PCR0-7. ``banks`` is the TPM's bank order (default: the keys of
    ``pcrs``).
    """
    order = list(banks) if banks is not None else list(pcrs)
    if kernel_version < (5, 8):
        chosen: HashAlgorithm | None = HashAlgorithm.SHA1 if HashAlgorithm.SHA1 in order else None
    else:
        chosen = next((a for a in order if a is ima_hash), None)
        if chosen is None:
            chosen = next((a for a in order if a is HashAlgorithm.SHA256), None)
        if chosen is None:
            chosen = next((a for a in order if a is HashAlgorithm.SHA1), None)
    if chosen is None:
        return BootAggregate(ima_hash, ima_hash.zero)
    last = 8 if chosen is HashAlgorithm.SHA1 or kernel_version < (5, 8) else 10
    bank = pcrs[chosen]
    try:
        data = b"".join(bank[i] for i in range(last))
    except KeyError as exc:
        raise UsageError(f"boot_aggregate needs {chosen.kernel_name} PCR {exc}") from None
    return BootAggregate(chosen, chosen.hash(data))


def check_boot_aggregate(entry: MeasurementEntry, pcrs: PcrValues, *,
                         banks: Sequence[HashAlgorithm] | None = None,
                         kernel_version: tuple[int, int] = (6, 1)) -> bool:
    """Is ``entry`` a boot_aggregate whose digest equals the one PCRs 0-9 give?"""
    try:
        if entry.event_name != "boot_aggregate":
            return False
        digest = entry.file_digest
    except ParseError:
        return False
    if digest is None:
        return False
    if entry.template_name == "ima":
        want = boot_aggregate(pcrs, banks=[HashAlgorithm.SHA1], kernel_version=kernel_version)
        return want.digest == digest.digest
    try:
        ima_hash = HashAlgorithm.from_name(digest.algo)
    except UnsupportedAlgorithmError:
        return False
    want = boot_aggregate(pcrs, banks=banks, ima_hash=ima_hash, kernel_version=kernel_version)
    return DigestWithAlgo(want.alg.kernel_name, want.digest) == DigestWithAlgo(
        digest.algo, digest.digest)
