"""Replay a measurement list into PCR banks and match it against quoted values.

The kernel extends every allocated bank with that bank's hash over the template data
(ima_calc_field_array_hash, ima_pcr_extend), 0xff..ff for a violation, and, for a bank
whose hash it could not allocate at IMA init, the SHA-1 template digest zero-padded to
the bank size ("padded SHA-1"; Debian 12's 6.1 kernel does this for sha384). Replay does
the same in one streaming pass over all banks, checks every stored template digest
against its template data, and, when matching against quoted values, records after how
many entries each bank matched (a quote taken while the list grew matches a prefix).

>>> from imasim.algorithms import HashAlgorithm as H
>>> from imasim.ima import MeasurementEntry, DigestWithAlgo
>>> e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/bin/sh"])
>>> r = replay([e], banks=(H.SHA1, H.SHA256))
>>> r.pcrs[H.SHA256][10] == H.SHA256.hash(bytes(32) + e.template_hash(H.SHA256))
True
>>> r.bad_digests
()
"""

from __future__ import annotations

import enum
import struct
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, Protocol

from ..algorithms import HashAlgorithm
from ..errors import ParseError, UnsupportedAlgorithmError, UsageError
from ..limits import DEFAULT_LIMITS, Limits
from .codec import MeasurementList, _ChunkReader, _Scanner, iter_record_chunks
from .entry import MeasurementEntry
from .fields import DigestWithAlgo

__all__ = [
    "BankMatch",
    "BootAggregate",
    "MatchResult",
    "MatchStatus",
    "PcrMismatch",
    "ReplayResult",
    "ReplayState",
    "boot_aggregate",
    "check_boot_aggregate",
    "match",
    "replay",
    "replay_file",
]

PcrValues = Mapping[HashAlgorithm, Mapping[int, bytes]]
Padding = Literal["native", "padded", "auto"]


def _padded(sha1_digest: bytes, alg: HashAlgorithm) -> bytes:
    return sha1_digest.ljust(alg.digest_size, b"\0")


@dataclass(frozen=True, slots=True)
class ReplayState:
    """PCR values after ``count`` entries; save it and resume with :func:`replay`."""

    count: int
    pcrs: Mapping[HashAlgorithm, Mapping[int, bytes]]

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
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ParseError(f"bad replay state: {exc!r}", field="replay_state") from None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Computed PCR values per bank (only the PCRs the list touched, plus 10)."""

    state: ReplayState
    #: indices of entries whose stored template digest is not the hash of their data
    bad_digests: tuple[int, ...]
    padded_banks: frozenset[HashAlgorithm]

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

    def _repr_html_(self) -> str:
        """The replayed PCR values per bank, for notebooks."""
        from .._html import replay_result

        return replay_result(self)


class _Replayer:
    """The streaming core shared by replay() and match()."""

    def __init__(self, banks: Sequence[HashAlgorithm], padded: Iterable[HashAlgorithm],
                 digest_alg: HashAlgorithm, start: ReplayState | None) -> None:
        self.banks = tuple(banks)
        self.padded = frozenset(padded)
        self.digest_alg = digest_alg
        self.count = 0 if start is None else start.count
        self.values: dict[HashAlgorithm, dict[int, bytes]] = {a: {} for a in self.banks}
        if start is not None:
            for a in self.banks:
                self.values[a].update(start.pcrs.get(a, {}))
        self.bad: list[int] = []
        self.unknown_algs: frozenset[HashAlgorithm] = frozenset()

    def feed(self, entry: MeasurementEntry) -> tuple[int, dict[HashAlgorithm, bytes]]:
        """Extend one entry into every bank; return its PCR and the extended values."""
        pcr = entry.pcr
        out: dict[HashAlgorithm, bytes] = {}
        if entry.is_violation:
            for a in self.banks:
                # ima_init_digests fills the whole bank size with 0xff when the kernel
                # knows the algorithm (even if it failed to allocate it, the padded case
                # seen on Debian 12's 6.1); only an algorithm unknown to the kernel gets
                # 0xff over the first 20 bytes (unknown_algs).
                ext = (_padded(HashAlgorithm.SHA1.ones, a) if a in self.unknown_algs
                       else a.ones)
                out[a] = self._extend(a, pcr, ext)
        else:
            hashes: dict[HashAlgorithm, bytes] = {}
            stored_alg = self.digest_alg
            stored = entry.template_hash(stored_alg)
            hashes[stored_alg] = stored
            if stored != entry.template_digest:
                self.bad.append(self.count)
            sha1 = hashes.get(HashAlgorithm.SHA1)
            for a in self.banks:
                if a in self.padded:
                    if sha1 is None:
                        sha1 = hashes[HashAlgorithm.SHA1] = entry.template_hash(
                            HashAlgorithm.SHA1)
                    ext = _padded(sha1, a)
                else:
                    ext = hashes.get(a) or entry.template_hash(a)
                    hashes[a] = ext
                out[a] = self._extend(a, pcr, ext)
        self.count += 1
        return pcr, out

    def feed_many(self, entries: Iterable[MeasurementEntry]) -> None:
        """feed() for a stream, without per-entry dictionaries: the replay hot path."""
        if self.padded:
            for e in entries:
                self.feed(e)
            return
        banks = self.banks
        ctors = [a.constructor() for a in banks]
        ones = [a.ones for a in banks]
        stored_alg = self.digest_alg
        si = banks.index(stored_alg) if stored_alg in banks else -1
        stored_ctor = stored_alg.constructor()
        zero_stored = stored_alg.zero
        rng = range(len(banks))
        cur: dict[int, list[bytes]] = {}
        for pcr in {p for v in self.values.values() for p in v}:
            cur[pcr] = [self.values[a].get(pcr, a.zero) for a in banks]
        count, bad = self.count, self.bad
        if len(banks) == 2 and si == 0:
            count = self._feed_two(entries, cur, ctors[0], ctors[1], ones, zero_stored)
            rng = range(0)
            entries = ()
        for e in entries:
            pcr, name, stored, data = e[0], e[1], e[2], e[3]
            c = cur.get(pcr)
            if c is None:
                c = cur[pcr] = [a.zero for a in banks]
            if stored == zero_stored:  # a violation: 0xff..ff into every bank
                for i in rng:
                    c[i] = ctors[i](c[i] + ones[i]).digest()
            else:
                if name == "ima":
                    hs = [e.template_hash(a) for a in banks]
                    check = e.template_hash(stored_alg)
                else:
                    hs = [ctors[i](data).digest() for i in rng]
                    check = hs[si] if si >= 0 else stored_ctor(data).digest()
                if check != stored:
                    bad.append(count)
                for i in rng:
                    c[i] = ctors[i](c[i] + hs[i]).digest()
            count += 1
        for i, a in enumerate(banks):
            for pcr, c in cur.items():
                self.values[a][pcr] = c[i]
        self.count = count

    def _feed_two(self, entries: Iterable[MeasurementEntry], cur: dict[int, list[bytes]],
                  c0: Callable[[bytes], Any], c1: Callable[[bytes], Any], ones: list[bytes],
                  zero_stored: bytes) -> int:
        """feed_many for the usual two banks (the stored digest's bank first)."""
        count, bad = self.count, self.bad
        b0, b1 = self.banks
        o0, o1 = ones
        for e in entries:
            pcr, name, stored, data = e[0], e[1], e[2], e[3]
            c = cur.get(pcr)
            if c is None:
                c = cur[pcr] = [b0.zero, b1.zero]
            if stored == zero_stored:
                h0, h1 = o0, o1
            elif name == "ima":
                h0, h1 = e.template_hash(b0), e.template_hash(b1)
                if h0 != stored:
                    bad.append(count)
            else:
                h0 = c0(data).digest()
                if h0 != stored:
                    bad.append(count)
                h1 = c1(data).digest()
            c[0] = c0(c[0] + h0).digest()
            c[1] = c1(c[1] + h1).digest()
            count += 1
        return count

    def feed_records(self, lst: MeasurementList) -> None:
        """feed_many straight from a parsed list's buffer: no entry objects, no copies.

        Hashes memoryview slices of the records; falls back to entries for the legacy
        'ima' template and for configurations other than two native banks.
        """
        banks = self.banks
        if self.padded or len(banks) != 2 or banks[0] is not self.digest_alg \
                or lst.digest_alg is not self.digest_alg:
            self.feed_many(lst)
            return
        buf, offsets, dsize = lst._buf, lst._offsets, lst.digest_alg.digest_size
        unpack = struct.Struct("<I" if lst.byte_order == "little" else ">I").unpack_from
        mv = memoryview(buf)
        hdr = 8 + dsize
        c0, c1 = banks[0].constructor(), banks[1].constructor()
        o0, o1 = banks[0].ones, banks[1].ones
        zero = self.digest_alg.zero
        cur: dict[int, list[bytes]] = {}
        for pcr in {p for v in self.values.values() for p in v}:
            cur[pcr] = [self.values[a].get(pcr, a.zero) for a in banks]
        count, bad = self.count, self.bad
        head = struct.Struct(("<" if lst.byte_order == "little" else ">")
                             + f"I{dsize}xI").unpack_from
        starts_with = buf.startswith
        for start in offsets:
            pcr, nlen = head(buf, start)
            c = cur.get(pcr)
            if c is None:
                c = cur[pcr] = [banks[0].zero, banks[1].zero]
            p = start + hdr + nlen
            if starts_with(zero, start + 4):
                h0, h1 = o0, o1
            elif nlen == 3 and buf[p - 3:p] == b"ima":
                e = lst._entry_at(start)
                h0, h1 = e.template_hash(banks[0]), e.template_hash(banks[1])
                if h0 != e.template_digest:
                    bad.append(count)
            else:
                data = mv[p + 4:p + 4 + unpack(buf, p)[0]]
                h0 = c0(data).digest()
                if not starts_with(h0, start + 4):
                    bad.append(count)
                h1 = c1(data).digest()
            c[0] = c0(c[0] + h0).digest()
            c[1] = c1(c[1] + h1).digest()
            count += 1
        for i, a in enumerate(banks):
            for pcr, c in cur.items():
                self.values[a][pcr] = c[i]
        self.count = count

    def _extend(self, a: HashAlgorithm, pcr: int, value: bytes) -> bytes:
        bank = self.values[a]
        new = a.hash(bank.get(pcr, a.zero) + value)
        bank[pcr] = new
        return new

    def state(self) -> ReplayState:
        return ReplayState(self.count, {a: dict(v) for a, v in self.values.items()})


def replay(
    entries: Iterable[MeasurementEntry],
    *,
    banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1, HashAlgorithm.SHA256),
    padded_banks: Iterable[HashAlgorithm] = (),
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    start: ReplayState | None = None,
) -> ReplayResult:
    """Replay ``entries`` into ``banks`` from zero (or from ``start``).

    ``padded_banks`` are extended with the zero-padded SHA-1 template digest.
    ``digest_alg`` is the algorithm of the stored template digests (the list's).
    """
    if not banks:
        raise UsageError("replay needs at least one bank")
    r = _Replayer(banks, padded_banks, digest_alg, start)
    for a in r.banks:
        r.values[a].setdefault(10, a.zero)
    if isinstance(entries, MeasurementList):
        r.feed_records(entries)
    else:
        r.feed_many(entries)
    return ReplayResult(r.state(), tuple(r.bad), r.padded)


def replay_file(
    source: BinaryIO,
    *,
    banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1, HashAlgorithm.SHA256),
    padded_banks: Iterable[HashAlgorithm] = (),
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    chunk_size: int = 8 << 20,
) -> ReplayResult:
    """Replay a binary list from a file in bounded memory (chunks of ``chunk_size``).

    Every record is validated as :func:`~imasim.ima.parse_measurement_list` validates a
    whole list (same errors, same absolute offsets), and replayed in the same pass.
    """
    return _replay_file(source, banks, padded_banks, digest_alg, chunk_size, None)


#: appraise a record from (index, PCR, stored template digest, template data)
_RawAppraisal = Callable[[int, int, bytes, bytes], None]


class _Appraiser(Protocol):
    """What the fused replay calls to appraise entries (see imasim.attest.appraise_file)."""

    def fast_set(self, prefix: bytes, f0: int, /
                 ) -> tuple[AbstractSet[bytes], _RawAppraisal]:
        """For ima-ng records whose d-ng field has ``prefix`` ("sha256:" NUL) and ``f0``
        bytes: the template data known good, and the appraisal of other such records
        (index, PCR, stored digest, template data) that are not violations."""

    def __call__(self, index: int, entry: MeasurementEntry, /) -> None:
        """Appraise one entry the fast check did not accept."""


def _replay_file(source: BinaryIO, banks: Sequence[HashAlgorithm],
                 padded_banks: Iterable[HashAlgorithm], digest_alg: HashAlgorithm,
                 chunk_size: int, appraiser: _Appraiser | None,
                 limits: Limits = DEFAULT_LIMITS) -> ReplayResult:
    """replay_file, optionally appraising every entry in the same pass."""
    if not banks:
        raise UsageError("replay needs at least one bank")
    if chunk_size < 1:
        raise UsageError("chunk_size must be positive")
    r = _Replayer(banks, padded_banks, digest_alg, None)
    for a in r.banks:
        r.values[a].setdefault(10, a.zero)
    if not r.padded and len(set(r.banks)) == 2 and digest_alg in r.banks:
        fused = _FusedReplay(r, limits, appraiser)
        fused.run(source, chunk_size)
        fused.result_into(r)
    else:
        index = 0
        for chunk in iter_record_chunks(source, digest_alg=digest_alg, chunk_size=chunk_size,
                                        limits=limits):
            if appraiser is not None:
                for i, e in enumerate(chunk, index):
                    appraiser(i, e)
            index += len(chunk)
            r.feed_records(chunk)
    return ReplayResult(r.state(), tuple(r.bad), r.padded)


class _FusedReplay:
    """Validate and replay a binary list in one pass over each chunk, for two native banks.

    A run of records of the same shape as the last one validated (same template of two
    fields, same first-field length: an ima-ng list with one file-hash algorithm) is
    validated with one ``unpack_from`` and a few comparisons per record, which accept a
    record only when the scanner of :mod:`imasim.ima.codec` would accept it with the same
    boundaries; any other record goes to that scanner (over a small window from it), so
    errors, their offsets and fields are exactly the scanner's. Template data is hashed
    from slices of the chunk; no entry objects are built except for the legacy 'ima'
    template and for entries the appraiser's fast check does not accept.
    """

    _WINDOW = 16384

    def __init__(self, r: _Replayer, limits: Limits, appraiser: _Appraiser | None) -> None:
        self.limits = limits
        self.appraiser = appraiser
        self.chk = r.digest_alg
        self.other = r.banks[1] if r.banks[0] is self.chk else r.banks[0]
        self.dsize = self.chk.digest_size
        self.scanner = _Scanner("little", self.dsize, limits)
        self.fast_sets: dict[tuple[bytes, int], tuple[
            AbstractSet[bytes], _RawAppraisal]] = {}
        self.names: dict[bytes, tuple[str, int]] = {}
        # the shape of the fast path: (struct, u32 name_len + name, first-field length,
        # appraiser's set of known-good template data); none until a record is seen
        self.shape: tuple[Callable[[bytes, int], tuple[Any, ...]], int, bytes, int, int,
                          AbstractSet[bytes] | None, _RawAppraisal, _RawAppraisal] | None = None
        # PCR -> (value in the stored digest's bank, value in the other bank)
        self.cur: dict[int, tuple[bytes, bytes]] = {
            pcr: (r.values[self.chk].get(pcr, self.chk.zero),
                  r.values[self.other].get(pcr, self.other.zero))
            for pcr in {p for v in r.values.values() for p in v}}
        self.index = r.count
        self.bad = r.bad

    def run(self, source: BinaryIO, chunk_size: int) -> None:
        reader = _ChunkReader(source, chunk_size, self.limits)
        while reader.fill():
            reader.consume(self._chunk(reader.buf, reader.base, reader.eof))

    def result_into(self, r: _Replayer) -> None:
        for pcr, (v0, v1) in self.cur.items():
            r.values[self.chk][pcr] = v0
            r.values[self.other][pcr] = v1
        r.count = self.index

    def _chunk(self, buf: bytes, base: int, final: bool) -> int:
        """Validate and replay the complete records of ``buf``; return where they end.

        The hot loop: keep it free of calls other than unpack and the four hashes.
        """
        end = len(buf)
        hdr = 8 + self.dsize
        max_data = self.limits.max_template_data
        # when no record of this chunk can reach the entry limit, the fast path need
        # not check it (every record takes at least hdr + 5 bytes)
        fast_ok = self.index + end // (hdr + 5) <= self.limits.max_entries
        c0, c1 = self.chk.constructor(), self.other.constructor()
        o0, o1 = self.chk.ones, self.other.ones
        zero = self.chk.zero
        zeros = (self.chk.zero, self.other.zero)
        cur = self.cur
        bad = self.bad
        bad_append = bad.append
        index = self.index
        pcr_now = 10
        v0, v1 = cur.get(10, zeros)
        pos = 0
        while pos < end:
            shape = self.shape
            if shape is not None and fast_ok:
                unpack, ssize, key, f0_len, skip, fast_set, raw_appraise, entry_appraise = shape
                lim = end - ssize
                dhead = skip + 4
                two = 8 + f0_len
                while pos <= lim:
                    pcr, dig, hn, dlen, f0, f1 = unpack(buf, pos)
                    dstart = pos + dhead
                    dend = dstart + dlen
                    if (hn != key or f0 != f0_len or dlen != two + f1 or dlen > max_data
                            or dend > end):
                        break
                    data = buf[dstart:dend]
                    if pcr != pcr_now:
                        cur[pcr_now] = (v0, v1)
                        pcr_now = pcr
                        v0, v1 = cur.get(pcr, zeros)
                    h0 = c0(data).digest()
                    h1 = c1(data).digest()
                    # appraisal (fast_set is None without an appraiser): an entry whose
                    # data is in fast_set is fine; the others get their verdict
                    if h0 != dig:
                        if dig == zero:  # a violation: 0xff..ff into every bank
                            h0, h1 = o0, o1
                            if fast_set is not None:
                                entry_appraise(index, pcr, dig, data)
                        else:
                            bad_append(index)
                            if fast_set is not None and data not in fast_set:
                                raw_appraise(index, pcr, dig, data)
                    elif fast_set is not None and data not in fast_set:
                        raw_appraise(index, pcr, dig, data)
                    v0 = c0(v0 + h0).digest()
                    v1 = c1(v1 + h1).digest()
                    pos = dend
                    index += 1
                if pos >= end:
                    break
            # anything else: the scanner validates a window of records from here
            self.index = index
            cur[pcr_now] = (v0, v1)
            starts, pos = self._scan(buf, pos, end, base, final)
            if not starts:
                break
            self._replay_records(buf, starts)
            index = self.index
            v0, v1 = cur.get(pcr_now, zeros)
        self.index = index
        cur[pcr_now] = (v0, v1)
        return pos

    def _scan(self, buf: bytes, pos: int, end: int, base: int, final: bool
              ) -> tuple[array[int], int]:
        """The scanner over a window from ``pos``, widened until it holds one record."""
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
        (nlen,) = _LE32(buf, start + 4 + dsize)
        raw = buf[start + hdr:start + hdr + nlen]
        name, nfields = self._name(raw)
        if nfields != 2:
            return
        p = start + hdr + nlen
        (f0,) = _LE32(buf, p + 4)
        fast_set: AbstractSet[bytes] | None = None
        raw_appraise: _RawAppraisal = _no_appraisal
        entry_appraise: _RawAppraisal = _no_appraisal
        appraiser = self.appraiser
        if appraiser is not None:
            def appraise(index: int, pcr: int, stored: bytes, data: bytes) -> None:
                appraiser(index, tuple.__new__(MeasurementEntry,
                                               (pcr, name, stored, data, "little")))

            fast_set, raw_appraise, entry_appraise = frozenset(), appraise, appraise
            d = buf[p + 8:p + 8 + f0]
            nul = d.find(b"\0")
            if name == "ima-ng" and nul > 0:
                k = (d[:nul + 1], f0)
                if k not in self.fast_sets:
                    self.fast_sets[k] = appraiser.fast_set(d[:nul + 1], f0)
                fast_set, raw_appraise = self.fast_sets[k]
        st = struct.Struct(f"<I{dsize}s{4 + nlen}sII{f0}xI")
        self.shape = (st.unpack_from, st.size, buf[start + 4 + dsize:start + hdr + nlen],
                      f0, hdr + nlen, fast_set, raw_appraise, entry_appraise)

    def _entry(self, buf: bytes, start: int) -> MeasurementEntry:
        dsize = self.dsize
        pcr, digest, nlen = _HEAD[dsize](buf, start)
        p = start + 8 + dsize
        name, nfields = self._name(buf[p:p + nlen])
        p += nlen
        if nfields < 0:
            data = buf[p:p + 24 + _LE32(buf, p + 20)[0]]
        else:
            data = buf[p + 4:p + 4 + _LE32(buf, p)[0]]
        return tuple.__new__(MeasurementEntry, (pcr, name, digest, data, "little"))

    def _replay_records(self, buf: bytes, starts: array[int]) -> None:
        """Replay records the scanner validated (any template), as feed_records does."""
        chk, other = self.chk, self.other
        c0, c1 = chk.constructor(), other.constructor()
        o0, o1 = chk.ones, other.ones
        zero = chk.zero
        zeros = (chk.zero, other.zero)
        dsize = self.dsize
        head = _HEAD[dsize]
        hdr = 8 + dsize
        cur, bad, appraiser = self.cur, self.bad, self.appraiser
        index = self.index
        for start in starts:
            pcr, stored, nlen = head(buf, start)
            v0, v1 = cur.get(pcr, zeros)
            p = start + hdr + nlen
            if stored == zero:
                h0, h1 = o0, o1
            elif nlen == 3 and buf[p - 3:p] == b"ima":
                e = self._entry(buf, start)
                h0, h1 = e.template_hash(chk), e.template_hash(other)
                if h0 != stored:
                    bad.append(index)
            else:
                data = buf[p + 4:p + 4 + _LE32(buf, p)[0]]
                h0 = c0(data).digest()
                if h0 != stored:
                    bad.append(index)
                h1 = c1(data).digest()
            cur[pcr] = (c0(v0 + h0).digest(), c1(v1 + h1).digest())
            if appraiser is not None:
                appraiser(index, self._entry(buf, start))
            index += 1
        self.index = index



def _no_appraisal(index: int, pcr: int, stored: bytes, data: bytes) -> None:
    """The appraisal callbacks of the fast path when nothing is appraised (never called)."""


_LE32 = struct.Struct("<I").unpack_from
_HEAD = {a.digest_size: struct.Struct(f"<I{a.digest_size}sI").unpack_from
         for a in HashAlgorithm}


class MatchStatus(enum.Enum):
    MATCH = "match"  # every bank matches after the whole list
    PREFIX = "prefix"  # every bank matches after the same prefix of the list
    MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class PcrMismatch:
    bank: HashAlgorithm
    pcr: int
    expected: bytes
    computed: bytes
    entries_replayed: int


@dataclass(frozen=True, slots=True)
class BankMatch:
    """How one bank fared: the entry count at which all its quoted PCRs matched."""

    bank: HashAlgorithm
    matched_at: int | None
    padded: bool
    last_match: int | None = None

    @property
    def matched(self) -> bool:
        return self.matched_at is not None


@dataclass(frozen=True, slots=True)
class MatchResult:
    status: MatchStatus
    banks: tuple[BankMatch, ...]
    mismatches: tuple[PcrMismatch, ...]
    bad_digests: tuple[int, ...]
    entries: int
    replay: ReplayResult = field(repr=False)

    @property
    def matched(self) -> bool:
        return self.status is not MatchStatus.MISMATCH and not self.bad_digests

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "matched": self.matched,
            "entries": self.entries,
            "banks": {b.bank.kernel_name: {"matched_at": b.matched_at, "padded_sha1": b.padded}
                      for b in self.banks},
            "mismatches": [{"bank": m.bank.kernel_name, "pcr": m.pcr,
                            "expected": m.expected.hex(), "computed": m.computed.hex()}
                           for m in self.mismatches],
            "bad_digests": list(self.bad_digests),
        }

    def _repr_html_(self) -> str:
        """The status, each bank's verdict and the mismatching PCRs, for notebooks."""
        from .._html import match_result

        return match_result(self)


def match(
    entries: Iterable[MeasurementEntry],
    quoted: PcrValues,
    *,
    padding: Mapping[HashAlgorithm, Padding] | Padding = "auto",
    pcrs: Iterable[int] | None = None,
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    start: ReplayState | None = None,
) -> MatchResult:
    """Does the list replay to ``quoted`` (bank -> PCR -> value)?

    Compares the PCRs the list extends (or ``pcrs``) in every quoted bank. A bank
    matches at entry count k when all its compared PCRs equal the replayed values after
    k entries; the last such k is reported, so a quote taken part-way is recognised.
    With ``padding="auto"`` a non-SHA-1 bank is tried both natively and with padded
    SHA-1 digests, and whichever matches is reported.
    """
    entries = list(entries) if not isinstance(entries, Sequence) else entries
    banks = [a for a in quoted if a in quoted]
    want_pcrs = set(pcrs) if pcrs is not None else ({e.pcr for e in entries} | {10})

    def mode(a: HashAlgorithm) -> Padding:
        m = padding if isinstance(padding, str) else padding.get(a, "auto")
        return "native" if a is HashAlgorithm.SHA1 and m == "auto" else m

    variants: list[tuple[HashAlgorithm, bool]] = []
    for a in banks:
        m = mode(a)
        if m in ("native", "auto"):
            variants.append((a, False))
        if m in ("padded", "auto") and a is not HashAlgorithm.SHA1:
            variants.append((a, True))
    native = _Replayer([a for a, p in variants if not p], (), digest_alg, start)
    padded = _Replayer([a for a, p in variants if p], [a for a, p in variants if p],
                       digest_alg, start)
    targets = {a: {i: quoted[a][i] for i in want_pcrs if i in quoted[a]} for a in banks}
    last: dict[tuple[HashAlgorithm, bool], int | None] = {}
    ok_count: dict[tuple[HashAlgorithm, bool], int] = {}
    for a, p in variants:
        vals = (padded if p else native).values[a]
        ok_count[(a, p)] = sum(1 for i, v in targets[a].items() if vals.get(i, a.zero) == v)
        last[(a, p)] = native.count if ok_count[(a, p)] == len(targets[a]) else None
    for e in entries:
        before = {(a, p): (padded if p else native).values[a].get(e.pcr, a.zero)
                  for a, p in variants}
        pcr, new_native = native.feed(e)
        _, new_padded = padded.feed(e) if padded.banks else (pcr, {})
        for a, p in variants:
            t = targets[a].get(pcr)
            if t is None:
                continue
            new = (new_padded if p else new_native)[a]
            was, now = before[(a, p)] == t, new == t
            if was != now:
                ok_count[(a, p)] += 1 if now else -1
            if ok_count[(a, p)] == len(targets[a]):
                last[(a, p)] = native.count
    n = native.count if native.banks else padded.count
    bank_results: list[BankMatch] = []
    mismatches: list[PcrMismatch] = []
    for a in banks:
        cands = [(p, last[(a, p)]) for aa, p in variants if aa is a]
        good = [(p, k) for p, k in cands if k is not None]
        if good:
            p, k = max(good, key=lambda pk: (pk[1] or 0, not pk[0]))
            bank_results.append(BankMatch(a, k, p))
        else:
            p = cands[0][0] if cands else False
            bank_results.append(BankMatch(a, None, p))
            vals = (padded if p else native).values[a]
            for i, t in sorted(targets[a].items()):
                c = vals.get(i, a.zero)
                if c != t:
                    mismatches.append(PcrMismatch(a, i, t, c, n))
    ks = {b.matched_at for b in bank_results}
    if mismatches or None in ks or not bank_results:
        status = MatchStatus.MISMATCH
    elif ks == {n}:
        status = MatchStatus.MATCH
    elif len(ks) == 1:
        status = MatchStatus.PREFIX
    else:
        status = MatchStatus.MISMATCH
    bad = tuple(sorted(set(native.bad) | set(padded.bad)))
    merged = {**native.state().pcrs}
    merged.update({a: v for a, v in padded.state().pcrs.items()
                   if any(b.bank is a and b.padded for b in bank_results)})
    rr = ReplayResult(ReplayState(n, merged), bad,
                      frozenset(b.bank for b in bank_results if b.padded))
    return MatchResult(status, tuple(bank_results), tuple(mismatches), bad, n, rr)


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
