"""One attestation call: quote + AK public + nonce + measurement list + reference values.

:func:`attest` answers the questions a verifier (think Keylime) asks, in order, and
never raises for a failed check: every outcome is evidence in the
:class:`AttestationReport`.

1. Does the quote verify (signature with the AK, the verifier's nonce, the PCR values
   sent beside it hash to the quoted pcrDigest)?
2. Does the measurement list replay to the quoted PCRs, in every quoted bank, and after
   how many entries (a list that grew after the quote matches a prefix)?
3. Does the first entry's boot_aggregate (and the one after each kexec) equal what the
   quoted PCRs 0-9 give?
4. Which entries fail the reference values (unknown path, wrong digest, stored template
   digest that does not match its data)?
5. With the firmware's TCG event log: does it replay to the same PCR values (PCR 0-9 and
   any other it extends), and, with a measured-boot reference state, is the boot as
   expected (Secure Boot, keys, boot applications, command line; :mod:`imasim.eventlog`)?
6. With a keyring: do the signatures the list carries verify (an ima-sig/ima-sigv2
   entry's ``sig`` field over its file digest, as asymmetric_verify checks security.ima;
   an ima-modsig entry's ``modsig`` PKCS#7 over its ``d-modsig`` digest; an evm-sig
   entry's portable ``evmsig`` over the xattrs and inode metadata the entry carries)? With
   ``require_signatures``, a file entry without one fails too.

When nothing replays and the list holds more than one boot_aggregate (a kexec carried
it), the report's ``notes`` say so: measurements made between a kexec load and execute
are extended into the TPM but missing from a list copied at load (kernels up to 6.15).
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, BinaryIO

from .algorithms import HashAlgorithm
from .errors import ImasimError, ParseError, UsageError, VerificationError
from .ima.entry import MeasurementEntry
from .ima.fields import DigestWithAlgo
from .ima.replay import (
    MatchResult,
    MatchStatus,
    ReplayResult,
    _match_and_appraise_file,
    _replay_file,
    check_boot_aggregate,
    match,
)
from .runtime_policy import DigestTable, RuntimePolicy, buffer_public_key
from .tpm.pcrs import PcrBanks
from .tpm.verify import PublicKey, verify_quote

if TYPE_CHECKING:  # imported when a firmware log is given (the CLI's start-up stays small)
    from .eventlog.check import FirmwareLogCheck
    from .eventlog.codec import EventLog
    from .eventlog.judge import ReferenceState
    from .keys.keyring import Keyring

__all__ = [
    "AttestationReport",
    "AttestationStatus",
    "EntryVerdict",
    "ListAppraiser",
    "ReferenceValues",
    "Verdict",
    "appraise_entry",
    "appraise_list",
    "attest",
    "attest_file",
    "check_entry_signature",
    "replay_and_appraise_file",
]


class Verdict(enum.Enum):
    """What is wrong with an entry (or with the evidence as a whole)."""

    OK = "ok"
    EXCLUDED = "excluded"
    UNKNOWN_PATH = "unknown-path"
    DIGEST_MISMATCH = "digest-mismatch"
    VIOLATION = "violation"
    BAD_TEMPLATE_DIGEST = "bad-template-digest"
    BOOT_AGGREGATE_MISMATCH = "boot-aggregate-mismatch"
    IGNORED_KEYRING = "ignored-keyring"
    MALFORMED_ENTRY = "malformed-entry"
    BAD_SIGNATURE = "bad-signature"
    UNSIGNED = "unsigned"
    UNCOVERED_PCR = "uncovered-pcr"
    UNKNOWN_KEYRING = "unknown-keyring"
    KEY_DIGEST_MISMATCH = "key-digest-mismatch"


ReferenceValues = RuntimePolicy
"""The name earlier releases gave :class:`imasim.runtime_policy.RuntimePolicy`."""


@dataclass(frozen=True, slots=True)
class EntryVerdict:
    """One entry that failed: its index in the list, its event name, why, and details."""

    index: int
    path: str
    verdict: Verdict
    detail: str = ""


_FAST_TEMPLATES = frozenset({"ima-ng", "ima-sig", "ima-buf", "ima-modsig"})


def _name_and_digest(e: MeasurementEntry) -> tuple[str, bytes | None]:
    """The event name and file digest; d-ng|n-ng|... read without decoding every field."""
    if e.template_name in _FAST_TEMPLATES and e.byte_order == "little":
        data = e.template_data
        n1 = int.from_bytes(data[0:4], "little")
        d = data[4:4 + n1]
        p = 4 + n1
        n2 = int.from_bytes(data[p:p + 4], "little")
        raw_name = data[p + 4:p + 4 + n2]
        nul = d.find(b"\0")
        if n2 and raw_name[-1:] == b"\0" and nul > 0 and len(data) >= p + 4 + n2:
            return raw_name[:-1].decode("utf-8", "surrogateescape"), d[nul + 1:]
    fd = e.file_digest
    return e.event_name, (fd.digest if fd else None)


def _signature_verifies(e: MeasurementEntry, keyring: Keyring) -> bool:
    """Does the signature an entry carries verify with a key of ``keyring``?"""
    return check_entry_signature(0, e, keyring) is None and _has_signature(e)


def _has_signature(e: MeasurementEntry) -> bool:
    try:
        f = e.fields
    except ParseError:
        return False
    return any(isinstance(f.get(k), bytes) and f.get(k) for k in ("sig", "modsig", "evmsig"))


def appraise_entry(index: int, e: MeasurementEntry, reference: RuntimePolicy,
                   keyring: Keyring | None = None) -> EntryVerdict | None:
    """The verdict of a runtime policy on one entry (None when it is fine), by Keylime's
    rules (``keylime/ima/ima.py``):

    * a violation fails unless ``reference.allow_violations``;
    * an entry whose signature verifies with a key of ``keyring`` (the policy's
      verification keys and the keys the list measured) is fine; otherwise (no
      signature, no key, a bad one) it is judged by its digest, as Keylime's
      ``_validate_ima_sig`` falls back to the allowlist;
    * an ima-buf entry holding a key is judged by ``keyrings`` (unless its keyring is
      ignored), any other ima-buf entry by ``ima-buf``; a file entry by ``digests``;
    * an excluded name is fine; an unknown one fails, and so does a digest the policy
      does not list for that name. boot_aggregate is judged against the quoted PCRs,
      not here.
    """
    if e.is_violation:
        if reference.allow_violations:
            return None
        return EntryVerdict(index, e._safe_name(), Verdict.VIOLATION)
    try:
        name, digest = _name_and_digest(e)
        buf = e.fields.get("buf") if e.template_name == "ima-buf" else None
    except ParseError as exc:
        return EntryVerdict(index, e._safe_name(), Verdict.MALFORMED_ENTRY, str(exc))
    if isinstance(buf, bytes):
        return _buffer_verdict(index, name, digest, buf, reference)
    if keyring is not None and _signature_verifies(e, keyring):
        return None
    return _verdict(index, name, digest, e.template_name, reference)


def _buffer_verdict(index: int, name: str, digest: bytes | None, buf: bytes,
                    reference: RuntimePolicy) -> EntryVerdict | None:
    """Keylime's _validate_ima_buf: a key by ``keyrings``, other buffers by ``ima-buf``."""
    if reference.is_excluded(name):
        return None
    if buffer_public_key(buf) is not None:
        if reference.is_ignored_keyring(name):
            return None
        allowed = reference.keyrings_bytes.allows(name, digest)
        if allowed is None:
            return EntryVerdict(index, name, Verdict.UNKNOWN_KEYRING)
        if not allowed:
            return EntryVerdict(index, name, Verdict.KEY_DIGEST_MISMATCH,
                                digest.hex() if digest else "")
        return None
    allowed = reference.ima_buf_bytes.allows(name, digest)
    if allowed is None:
        return EntryVerdict(index, name, Verdict.UNKNOWN_PATH, "no ima-buf reference")
    if not allowed:
        return EntryVerdict(index, name, Verdict.DIGEST_MISMATCH, digest.hex() if digest else "")
    return None


def _verdict(index: int, name: str, digest: bytes | None, template_name: str,
             reference: RuntimePolicy) -> EntryVerdict | None:
    """A file entry's verdict once its event name and file digest are known."""
    allowed = reference.digests_bytes.allows(name, digest)
    if allowed:
        return None
    if name == "boot_aggregate":
        return None
    if reference.is_excluded(name):
        return None
    if allowed is None:
        return EntryVerdict(index, name, Verdict.UNKNOWN_PATH)
    return EntryVerdict(index, name, Verdict.DIGEST_MISMATCH, digest.hex() if digest else "")


class ListAppraiser:
    """Appraise the entries of one list in order, carrying what earlier entries taught:
    the keys that ima-buf entries measured into a keyring the policy accepts verify the
    signatures of later entries (Keylime adds them to its IMA keyrings), beside the
    policy's verification keys and the caller's ``keyring``. It also records the
    boot_aggregate entries it sees (for :func:`attest_file`). Without a policy it judges
    nothing and only records.

    >>> from imasim.ima import ima_ng_entry
    >>> a = ListAppraiser(RuntimePolicy({}))
    >>> a(0, ima_ng_entry("/bin/x", bytes(32), HashAlgorithm.SHA256))
    >>> [(f.index, f.verdict.value) for f in a.failures]
    [(0, 'unknown-path')]
    """

    def __init__(self, reference: RuntimePolicy | None, keyring: Keyring | None = None, *,
                 record_boot_aggregates: bool = True) -> None:
        self.reference = reference
        self._record = record_boot_aggregates
        self.failures: list[EntryVerdict] = []
        self.pcr_of: dict[int, int] = {}
        self.boot_aggregates: list[tuple[int, MeasurementEntry]] = []
        # the keyring module (and cryptography.x509) is imported only once a key exists
        self._ring: Keyring | None = None
        keys = reference.verification_keys if reference is not None else ()
        if keys or keyring is not None:
            ring = self._keys()
            for k in keys:
                ring.add(k)
            if keyring is not None:
                ring.link(keyring)

    def _keys(self) -> Keyring:
        """The keyring of verification keys, made on first use."""
        if self._ring is None:
            from .keys.keyring import Keyring

            self._ring = Keyring("verification-keys")
        return self._ring

    def _fail(self, v: EntryVerdict, pcr: int) -> None:
        self.failures.append(v)
        self.pcr_of[v.index] = pcr

    def __call__(self, index: int, e: MeasurementEntry) -> None:
        """Appraise entry ``index``; a failure is appended to :attr:`failures`."""
        if self._record and not e.is_violation and e._safe_name() == "boot_aggregate":
            self.boot_aggregates.append((index, e))
        if self.reference is None:
            return
        v = appraise_entry(index, e, self.reference, self._ring)
        if v is not None:
            self._fail(v, e.pcr)
            return
        if e.template_name == "ima-buf" and not e.is_violation:
            buf = e.fields.get("buf")
            key = buffer_public_key(buf) if isinstance(buf, bytes) else None
            if key is not None and not self.reference.is_ignored_keyring(e.event_name):
                ring = self._keys()
                if ring.find_asymmetric_key(key.ids[0], key.ids[1]) is None:
                    ring.add(key)


def appraise_list(entries: Iterable[MeasurementEntry], reference: RuntimePolicy | None,
                  keyring: Keyring | None = None) -> tuple[EntryVerdict, ...]:
    """A verdict per entry (only the non-OK ones are returned; OK is the rest)."""
    a = ListAppraiser(reference, keyring)
    for i, e in enumerate(entries):
        a(i, e)
    return tuple(a.failures)


class _KnownRecords:
    """The allowed ima-ng records of one policy for one d-ng shape, kept with the policy's
    digest table (it is derived from that immutable table alone, so every later list
    checked against the same policy reuses it).

    ``records`` holds, for every allowed (path, digest) pair, the template data of the
    ima-ng record naming it. ``indexes`` hold the same records as a list stores them from
    the template digest on (the digest in the list's algorithm, the template-name field,
    the data length, the data), mapped to their template hashes in the other algorithms
    the replay needs: an index costs one hash per record and algorithm, so it is built
    only once the fast check has met as many known-good records (``seen``, counted across
    lists) as it would hold, each of which it would have saved a hash."""

    __slots__ = ("indexes", "records", "seen")

    def __init__(self, records: frozenset[bytes]) -> None:
        self.records = records
        self.seen = 0
        self.indexes: dict[tuple[bytes, tuple[HashAlgorithm, ...]],
                           AbstractSet[bytes] | dict[bytes, Any]] = {}

    def index_after(self, name: bytes, algs: tuple[HashAlgorithm, ...], known: int
                    ) -> AbstractSet[bytes] | dict[bytes, Any] | None:
        """The index for ``algs`` once ``known`` more known-good records make it pay:
        each record as a list stores it from its template digest on (digest, the
        template-name field ``name``, data length, data), mapped to its other template
        hashes when there are other algorithms."""
        index = self.indexes.get((name, algs))
        if index is not None:
            return index
        self.seen += known
        if self.seen < len(self.records) or not self.records:
            return None
        key, *others = (a.constructor() for a in algs)
        u32 = struct.Struct("<I").pack
        records = list(self.records)
        spans = [key(r).digest() + name + u32(len(r)) + r for r in records]
        if not others:
            index = frozenset(spans)
        elif len(others) == 1:
            (h,) = others
            index = dict(zip(spans, [h(r).digest() for r in records], strict=True))
        else:
            index = dict(zip(spans, [tuple(h(r).digest() for h in others) for r in records],
                             strict=True))
        self.indexes[(name, algs)] = index
        return index


def _allowed_records(table: DigestTable, prefix: bytes, f0: int) -> frozenset[bytes]:
    """The template data of every ima-ng record that ``table`` allows, whose d-ng field
    starts with ``prefix`` ("sha256:" and a NUL) and is ``f0`` bytes long."""
    size = f0 - len(prefix)
    u32 = struct.Struct("<I").pack
    head = u32(f0) + prefix
    out: set[bytes] = set()
    add = out.add
    for path, digests in table.raw_items():
        if path == "boot_aggregate":
            continue  # seen by appraise_raw, so attest_file can check it
        try:
            name = path.encode()
        except UnicodeEncodeError:  # a lone surrogate: what a non-UTF-8 name decodes to
            try:
                name = path.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                continue
            if name.decode("utf-8", "surrogateescape") != path:
                continue  # no record's name decodes to this path
        tail = u32(len(name) + 1) + name + b"\0"
        if isinstance(digests, bytes):
            if len(digests) == size:
                add(head + digests + tail)
            continue
        for d in digests:
            if len(d) == size:
                add(head + d + tail)
    return frozenset(out)


class _FileAppraiser(ListAppraiser):
    """appraise_entry for the fused replay of replay_and_appraise_file.

    ``fast_set`` gives, for every allowed (path, digest) pair, the template data of the
    ima-ng record whose d-ng field starts with ``prefix`` ("sha256:" and a NUL): an entry
    whose data is in that set is one appraise_entry accepts, so the replay skips it.
    Every other entry gets appraise_entry's verdict (read from its raw data when it has
    the same shape). ``record_index`` gives the same records by template digest
    (:class:`_KnownRecords`).
    """

    def __init__(self, reference: RuntimePolicy | None) -> None:
        super().__init__(reference)
        self.misses = 0
        self._misses_told = 0

    def _known(self, prefix: bytes, f0: int) -> _KnownRecords | None:
        if self.reference is None:
            return None
        table = self.reference.digests_bytes
        known = table._derived.get((prefix, f0))
        if not isinstance(known, _KnownRecords):
            known = _KnownRecords(_allowed_records(table, prefix, f0))
            if len(table._derived) < 16:
                table._derived[(prefix, f0)] = known
        return known

    def record_index(self, prefix: bytes, f0: int, name: bytes,
                     algs: tuple[HashAlgorithm, ...], entries: int
                     ) -> AbstractSet[bytes] | Mapping[bytes, Any] | None:
        known = self._known(prefix, f0)
        if known is None:
            return None
        misses, self._misses_told = self.misses - self._misses_told, self.misses
        return known.index_after(name, algs, max(entries - misses, 0))

    def fast_set(self, prefix: bytes, f0: int
                 ) -> tuple[AbstractSet[bytes], Callable[[int, int, bytes, bytes], None]]:
        known = self._known(prefix, f0)
        out = known.records if known is not None else frozenset()
        reference = self.reference
        d_start, name_start = 4 + len(prefix), 8 + f0
        aggs, fail = self.boot_aggregates, self._fail

        def appraise_raw(index: int, pcr: int, stored: bytes, data: bytes) -> None:
            """appraise_entry for a valid two-field ima-ng record with this d-ng prefix
            and first-field length, not a violation, read from its raw data."""
            self.misses += 1
            if len(data) > name_start and data[-1:] == b"\0" and data.startswith(prefix, 4):
                # what _name_and_digest reads
                name = data[name_start:-1].decode("utf-8", "surrogateescape")
                if name == "boot_aggregate":
                    aggs.append((index, MeasurementEntry(pcr, "ima-ng", stored, data)))
                if reference is None:
                    return
                v = _verdict(index, name, data[d_start:4 + f0], "ima-ng", reference)
            else:
                e = MeasurementEntry(pcr, "ima-ng", stored, data)
                if e._safe_name() == "boot_aggregate":
                    aggs.append((index, e))
                if reference is None:
                    return
                v = appraise_entry(index, e, reference)
            if v is not None:
                fail(v, pcr)

        return out, appraise_raw


def replay_and_appraise_file(
    source: BinaryIO,
    reference: ReferenceValues,
    *,
    banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1, HashAlgorithm.SHA256),
    padded_banks: Iterable[HashAlgorithm] = (),
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    chunk_size: int = 1 << 20,
) -> tuple[ReplayResult, tuple[EntryVerdict, ...]]:
    """:func:`~imasim.ima.replay.replay_file` and :func:`appraise_list` in one pass.

    Streams a binary list from a file in bounded memory, validates every record, replays
    it into ``banks`` (stored template digests checked) and appraises every entry
    against ``reference``; returns the replay and the non-OK verdicts, exactly what
    ``replay_file`` and ``appraise_list`` over the same entries give. Entries the
    allowlist accepts cost one set lookup on their raw template data.

    >>> import io
    >>> from imasim.ima import ima_ng_entry
    >>> ok = ima_ng_entry("/bin/a", bytes(32), HashAlgorithm.SHA256)
    >>> odd = ima_ng_entry("/bin/b", bytes(32), HashAlgorithm.SHA256)
    >>> ref = ReferenceValues({"/bin/a": frozenset({bytes(32).hex()})})
    >>> r, failures = replay_and_appraise_file(io.BytesIO(ok.to_bytes() + odd.to_bytes()), ref)
    >>> r.count, [(f.index, f.path, f.verdict.value) for f in failures]
    (2, [(1, '/bin/b', 'unknown-path')])
    """
    appraiser = _FileAppraiser(reference)
    result = _replay_file(source, banks, padded_banks, digest_alg, chunk_size, appraiser)
    return result, tuple(appraiser.failures)


class AttestationStatus(enum.Enum):
    """The verdict of :func:`attest`."""

    TRUSTED = "trusted"
    """A quote verified, the list replays to its PCRs, and every check passed."""
    CONSISTENT = "consistent"
    """No quote: every check passed against PCR values nobody vouches for."""
    NOT_TRUSTED = "not-trusted"
    """A check failed (or the quote did)."""


@dataclass(frozen=True, slots=True)
class AttestationReport:
    """Everything :func:`attest` found. ``pcrs`` are the values the verdict rests on (a
    verified quote's, or unauthenticated ones); ``verified_entries`` is how many entries
    of the list (a prefix) they cover: only those are appraised."""

    quote_valid: bool
    quote_error: str | None
    replay: MatchResult | None
    boot_aggregate_ok: bool
    failures: tuple[EntryVerdict, ...]
    notes: tuple[str, ...] = ()
    pcrs: PcrBanks | None = None
    verified_entries: int = 0
    entries: int = 0
    quote_failure: ImasimError | None = field(default=None, compare=False, repr=False)
    firmware_log: FirmwareLogCheck | None = None
    """The firmware event log's check, when one was given."""

    @property
    def authenticated(self) -> bool:
        """Were the PCR values covered by a verified quote?"""
        return self.quote_valid and self.pcrs is not None and self.pcrs.authenticated

    @property
    def status(self) -> AttestationStatus:
        """TRUSTED, CONSISTENT (nothing failed but no quote vouches) or NOT_TRUSTED."""
        consistent = (self.replay is not None and self.replay.matched
                      and self.boot_aggregate_ok and not self.failures
                      and (self.firmware_log is None or self.firmware_log.ok))
        if self.quote_error is not None or not consistent:
            return AttestationStatus.NOT_TRUSTED
        return AttestationStatus.TRUSTED if self.authenticated else AttestationStatus.CONSISTENT

    @property
    def trusted(self) -> bool:
        """True only for a verified quote over a list that passed every check."""
        return self.status is AttestationStatus.TRUSTED

    @property
    def reason(self) -> str:
        """Why the evidence is not trusted, in one line ("" when it is, or is consistent)."""
        if self.status is not AttestationStatus.NOT_TRUSTED:
            return ""
        if self.quote_error is not None:
            return f"the quote does not verify ({self.quote_error})"
        if self.replay is None:
            return "no quoted bank covers the PCRs the list extends"
        if not self.replay.matched:
            return "the list does not replay to the quoted PCRs"
        if self.failures:
            f = self.failures[0]
            more = f" and {len(self.failures) - 1} more" if len(self.failures) > 1 else ""
            return f"entry {f.index} {f.path}: {f.verdict.value}{more}"
        if not self.boot_aggregate_ok:
            return "boot_aggregate is missing or does not match the quoted PCRs 0-9"
        if self.firmware_log is not None and not self.firmware_log.ok:
            return "the firmware event log does not check out"
        return "not trusted"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``imasim attest --json``)."""
        return {
            "status": self.status.value,
            "trusted": self.trusted,
            "authenticated": self.authenticated,
            "quote": {"valid": self.quote_valid, "error": self.quote_error,
                      "error_type": (type(self.quote_failure).__name__
                                     if self.quote_failure is not None else None)},
            "pcrs": None if self.pcrs is None else {
                "source": self.pcrs.source.value, "values": self.pcrs.to_dict()},
            "replay": None if self.replay is None else self.replay.to_dict(),
            "entries": self.entries,
            "verified_entries": self.verified_entries,
            "boot_aggregate_ok": self.boot_aggregate_ok,
            "failures": [{"index": f.index, "path": f.path, "verdict": f.verdict.value,
                          "detail": f.detail} for f in self.failures],
            "notes": list(self.notes),
            "firmware_log": None if self.firmware_log is None else self.firmware_log.to_dict(),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON (indent 1, as every imasim ``--json``)."""
        return json.dumps(self.to_dict(), indent=1)

    def summary(self) -> str:
        """The report as the lines ``imasim attest`` prints."""
        if self.quote_valid:
            quote = "valid"
        elif self.quote_error is None:
            quote = "none (the PCR values are UNAUTHENTICATED)"
        else:
            quote = f"INVALID: {self.quote_error}"
        lines = [f"quote: {quote}"]
        if self.replay is not None:
            for b in self.replay.banks:
                state = (f"matches after {b.matched_at} of {self.replay.entries} entries"
                         if b.matched else "does NOT match")
                pad = " (padded SHA-1)" if b.padded else ""
                lines.append(f"  {b.bank.kernel_name}{pad}: {state}")
            if self.replay.bad_digests:
                lines.append(f"  entries whose template digest is wrong: "
                             f"{list(self.replay.bad_digests)}")
        lines.append(f"verified entries: {self.verified_entries} of {self.entries}")
        lines.append(f"boot_aggregate: {'ok' if self.boot_aggregate_ok else 'MISMATCH'}")
        if self.firmware_log is not None:
            lines.append(self.firmware_log.summary())
        for f in self.failures[:20]:
            lines.append(f"  entry {f.index} {f.path}: {f.verdict.value} {f.detail}".rstrip())
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more failing entries")
        lines += [f"note: {n}" for n in self.notes]
        lines.append({AttestationStatus.TRUSTED: "TRUSTED",
                      AttestationStatus.CONSISTENT: "CONSISTENT (no quote: not trusted)",
                      AttestationStatus.NOT_TRUSTED: "NOT TRUSTED"}[self.status])
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The verdict, the quote, the per-bank replay and the failing entries."""
        from ._html import attestation_report

        return attestation_report(self)

    def __repr__(self) -> str:
        return (f"<AttestationReport {self.status.value}: {self.verified_entries}/"
                f"{self.entries} entries verified, {len(self.failures)} failures>")


def check_entry_signature(index: int, e: MeasurementEntry, keyring: Keyring, *,
                          require: bool = False) -> EntryVerdict | None:
    """The signature an entry carries, checked against ``keyring`` (e.g. the verifier's
    copy of .ima): None when it verifies (or the entry has none and ``require`` is off).

    >>> from imasim.ima import ima_ng_entry
    >>> from imasim.keys import Keyring
    >>> e = ima_ng_entry("/usr/bin/true", bytes(32), HashAlgorithm.SHA256)
    >>> check_entry_signature(0, e, Keyring(".ima")) is None
    True
    >>> check_entry_signature(0, e, Keyring(".ima"), require=True).verdict.value
    'unsigned'
    """
    from .sig.pkcs7 import Usage, parse_pkcs7, verify_pkcs7
    from .sig.xattr import parse_xattr, verify_xattr

    try:
        fields = e.fields
        name = e._safe_name()
        sig, modsig, evmsig = fields.get("sig"), fields.get("modsig"), fields.get("evmsig")
        xattrs = _entry_xattrs(fields) if "xattrnames" in fields else {}
        if not (isinstance(sig, bytes) and sig):
            # evm-sig has no sig field; its xattr fields carry security.ima
            sig = xattrs.get("security.ima")
        if isinstance(sig, bytes) and sig:
            v = parse_xattr(sig)
            if v.is_signature:
                d = e.file_digest
                if d is None or v.hash_algo is None or d.algo != v.hash_algo.kernel_name:
                    return EntryVerdict(index, name, Verdict.BAD_SIGNATURE,
                                        "the file digest is not in the signature's algorithm")
                verify_xattr(v, d.digest, keyring=keyring)
                if not (isinstance(evmsig, bytes) and evmsig):
                    return None
        if isinstance(evmsig, bytes) and evmsig:
            _check_evmsig(fields, evmsig, xattrs, keyring)
            return None
        if isinstance(modsig, bytes) and modsig:
            dm = fields.get("d-modsig")
            if not isinstance(dm, DigestWithAlgo):
                return EntryVerdict(index, name, Verdict.BAD_SIGNATURE, "no d-modsig digest")
            verify_pkcs7(parse_pkcs7(modsig), keyring=keyring, usage=Usage.MODULE_SIGNATURE,
                         content_digest=dm.digest)
            return None
    except ImasimError as exc:
        return EntryVerdict(index, e._safe_name(), Verdict.BAD_SIGNATURE,
                            f"{type(exc).__name__}: {exc}")
    if require and not e.is_violation and e.file_digest is not None and \
            e._safe_name().startswith("/"):
        return EntryVerdict(index, e._safe_name(), Verdict.UNSIGNED)
    return None


def _entry_xattrs(fields: Mapping[str, object]) -> dict[str, bytes]:
    """The protected xattrs an evm-sig (or custom) entry records: xattrnames split on
    '|', xattrvalues cut by xattrlengths (ima_template_lib.c, evm_read_protected_xattrs)."""
    names, lengths, values = (fields.get(k) for k in ("xattrnames", "xattrlengths",
                                                       "xattrvalues"))
    if names is None and lengths is None and values is None:
        return {}
    if not (isinstance(names, str) and isinstance(lengths, tuple) and
            isinstance(values, bytes)):
        raise ParseError("xattrnames, xattrlengths and xattrvalues go together",
                         field="xattrnames")
    split = names.split("|") if names else []
    if len(split) != len(lengths) or sum(lengths) != len(values):
        raise ParseError("xattr names, lengths and values disagree", field="xattrlengths")
    xattrs, pos = {}, 0
    for name, n in zip(split, lengths, strict=True):
        xattrs[name] = values[pos:pos + n]
        pos += n
    return xattrs


def _check_evmsig(fields: Mapping[str, object], evmsig: bytes, xattrs: Mapping[str, bytes],
                  keyring: Keyring) -> None:
    """An evm-sig entry carries what the portable EVM digest covers: the protected
    xattrs (names, lengths, values) and the inode's uid, gid and mode."""
    from .sig.evm import verify_evm

    uid, gid, mode = (fields.get(k) for k in ("iuid", "igid", "imode"))
    if not ("xattrnames" in fields and isinstance(uid, int) and isinstance(gid, int) and
            isinstance(mode, int)):
        raise ParseError("an evm-sig entry needs xattrnames, xattrlengths, xattrvalues, "
                         "iuid, igid and imode", field="evmsig")
    verify_evm(evmsig, xattrs, uid=uid, gid=gid, mode=mode, keyring=keyring)


def _kexec_note(aggs: Sequence[int], result: MatchResult | None) -> str | None:
    if result is None or any(b.matched for b in result.banks) or len(aggs) < 2:
        return None
    return (f"the list spans {len(aggs) - 1} kexec(s) (boot_aggregate at entries "
            f"{list(aggs)}) and replays to no quoted bank: measurements extended into the "
            f"TPM between a kexec load and execute are missing from a list copied at load "
            f"(kernels up to 6.15), unless the list was tampered with")


def _check_boot_aggregates(aggs: Sequence[tuple[int, MeasurementEntry]], verified: int,
                           pcrs: PcrBanks, kernel_version: tuple[int, int]
                           ) -> tuple[bool, list[EntryVerdict], list[str]]:
    """Every verified boot_aggregate entry against PCRs 0-9 of the banks ``pcrs`` covers
    fully; the verified prefix must start with one."""
    full = [a for a in pcrs if all(i in pcrs[a] for i in range(10))]
    ok, failures, notes = True, [], []
    if verified == 0 or not aggs or aggs[0][0] != 0:
        ok = False  # the PCRs vouch for no boot_aggregate at the head of the list
        if verified:
            notes.append("the list does not start with a boot_aggregate entry")
    if not full:
        notes.append("no bank of the PCR values holds PCRs 0-9: boot_aggregate unchecked")
    for i, e in aggs:
        if i < verified and not (full and check_boot_aggregate(
                e, pcrs, banks=full, kernel_version=kernel_version)):
            ok = False
            failures.append(EntryVerdict(i, e.event_name, Verdict.BOOT_AGGREGATE_MISMATCH))
    return ok, failures, notes


@dataclass(frozen=True, slots=True)
class _Evidence:
    """The PCR values a verdict may rest on, or why there are none."""

    pcrs: PcrBanks | None
    quote_ok: bool
    error: str | None
    failure: ImasimError | None


def _evidence(quote_attest: bytes | None, quote_signature: bytes | None,
              ak_public: PublicKey | bytes | None, nonce: bytes | None,
              pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]] | None,
              quote_hash_alg: HashAlgorithm = HashAlgorithm.SHA256) -> _Evidence:
    """Verify the quote (its PcrBanks), or wrap quote-less values as unauthenticated."""
    quote_parts = (quote_attest, quote_signature, ak_public, nonce)
    if any(p is not None for p in quote_parts):
        if quote_attest is None or quote_signature is None or ak_public is None or \
                nonce is None:
            raise UsageError("a quote needs quote_attest, quote_signature, ak_public and nonce")
        try:
            vq = verify_quote(quote_attest, quote_signature, ak_public, nonce=nonce,
                              pcr_values=pcr_values, hash_alg=quote_hash_alg)
        except (VerificationError, ParseError) as exc:
            return _Evidence(None, False, f"{type(exc).__name__}: {exc}", exc)
        return _Evidence(vq.pcrs, True, None, None)
    if pcr_values is None:
        raise UsageError("attest needs a quote or PCR values")
    pcrs = (pcr_values if isinstance(pcr_values, PcrBanks)
            else PcrBanks.unauthenticated(pcr_values))
    return _Evidence(pcrs, False, None, None)


def _allowing_violations(reference: RuntimePolicy | None, ignore: bool
                         ) -> RuntimePolicy | None:
    """``reference`` with ``allow_violations`` set when the caller ignores violations."""
    if ignore and reference is not None and not reference.allow_violations:
        return replace(reference, allow_violations=True)
    return reference


def _report(ev: _Evidence, result: MatchResult, appraiser: ListAppraiser, n: int, *,
            appraised: bool, ignore_violations: bool, kernel_version: tuple[int, int],
            name: Callable[[int], str] = lambda i: "", eventlog: EventLog | None = None,
            measured_boot: ReferenceState | None = None) -> AttestationReport:
    """The verdict once the list is matched and every entry was shown to ``appraiser``:
    only failures of verified entries count."""
    assert ev.pcrs is not None
    verified = result.verified_count
    failures = [v for v in appraiser.failures
                if result.is_verified(v.index, appraiser.pcr_of.get(v.index, -1))]
    failures += [EntryVerdict(u.index, name(u.index), Verdict.UNCOVERED_PCR,
                              f"PCR {u.pcr} is not covered by the quote")
                 for u in result.uncovered]
    failures += [EntryVerdict(i, name(i), Verdict.BAD_TEMPLATE_DIGEST)
                 for i in result.bad_digests]
    if not appraised and not ignore_violations:
        failures += [EntryVerdict(i, name(i), Verdict.VIOLATION)
                     for i in result.verified_violations]
    notes: list[str] = []
    if result.status is MatchStatus.PREFIX:
        notes.append(f"the PCR values cover the first {verified} of {n} entries; the "
                     f"{n - verified} after them are not verified (the list grew after the "
                     f"quote) and were not appraised")
    if result.ignored_pcrs:
        notes.append(f"entries in PCRs {sorted(result.ignored_pcrs)} were ignored: "
                     "replayed, never verified nor appraised")
    agg_ok, agg_failures, agg_notes = _check_boot_aggregates(
        appraiser.boot_aggregates, verified, ev.pcrs, kernel_version)
    failures += agg_failures
    notes += agg_notes
    note = _kexec_note([i for i, _ in appraiser.boot_aggregates], result)
    if note:
        notes.append(note)
    failures.sort(key=lambda f: (f.index, f.verdict.value))
    fw = None
    if eventlog is not None:
        from .eventlog.check import check_firmware_log

        fw = check_firmware_log(eventlog, ev.pcrs, measured_boot)
    return AttestationReport(ev.quote_ok, ev.error, result, agg_ok, tuple(failures),
                             tuple(notes), ev.pcrs, verified, n, ev.failure, fw)


def attest(
    *,
    entries: Sequence[MeasurementEntry],
    quote_attest: bytes | None = None,
    quote_signature: bytes | None = None,
    ak_public: PublicKey | bytes | None = None,
    nonce: bytes | None = None,
    pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]] | None = None,
    quote_hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
    reference: RuntimePolicy | None = None,
    kernel_version: tuple[int, int] = (6, 1),
    signature_keyring: Keyring | None = None,
    require_signatures: bool = False,
    ignore_violations: bool = False,
    ignore_pcrs: Iterable[int] = (),
    digest_alg: HashAlgorithm | None = None,
    eventlog: EventLog | None = None,
    measured_boot: ReferenceState | None = None,
) -> AttestationReport:
    """Check a quote and a measurement list together; see the module docstring.

    With a quote (``quote_attest``, ``quote_signature``, ``ak_public``, ``nonce``), the
    PCR values the verdict rests on are the ones :func:`~imasim.tpm.verify.verify_quote`
    returns: those the quote's pcrDigest covers, nothing else (``pcr_values`` are the
    values sent beside the quote, as ``tpm2_quote -o`` writes them; ``quote_hash_alg`` is
    the hash of a plain ``tpm2_quote -f plain`` signature, ``tpm2_checkquote -g``). Without one,
    ``pcr_values`` are taken as read from a machine: every check runs, and the best
    verdict is :attr:`AttestationStatus.CONSISTENT`, never TRUSTED.

    Only the verified prefix of the list (the entries the PCRs cover) is appraised; an
    entry in a PCR the quote does not cover ends that prefix and fails (unless its PCR is
    in ``ignore_pcrs``: such entries are replayed but never verified); a verified
    violation fails unless ``ignore_violations`` (or ``reference.allow_violations``).
    ``digest_alg`` is the list's template-digest algorithm (found from the entries when
    not given: sha1, or the bank of a 6.10+ per-bank list). ``eventlog`` (the firmware's
    ``binary_bios_measurements``) must replay to the same PCR values; ``measured_boot``
    judges what it says (:func:`imasim.eventlog.check.check_firmware_log`).
    """
    ev = _evidence(quote_attest, quote_signature, ak_public, nonce, pcr_values,
                   quote_hash_alg)
    n = len(entries)
    if ev.pcrs is None:
        return AttestationReport(False, ev.error, None, False, (), (), None, 0, n, ev.failure)
    reference = _allowing_violations(reference, ignore_violations)
    result = match(entries, ev.pcrs, digest_alg=digest_alg, ignore_pcrs=ignore_pcrs)
    appraiser = ListAppraiser(reference, signature_keyring, record_boot_aggregates=False)
    for i, e in enumerate(entries[:result.verified_count]):
        appraiser(i, e)
    # every boot_aggregate, for the kexec note; only verified ones are checked
    appraiser.boot_aggregates = [(i, e) for i, e in enumerate(entries)
                                 if not e.is_violation and e._safe_name() == "boot_aggregate"]
    if signature_keyring is not None:
        for i, e in enumerate(entries[:result.verified_count]):
            v = check_entry_signature(i, e, signature_keyring, require=require_signatures)
            if v is not None:
                appraiser._fail(v, e.pcr)
    return _report(ev, result, appraiser, n, appraised=reference is not None,
                   ignore_violations=ignore_violations, kernel_version=kernel_version,
                   name=lambda i: entries[i]._safe_name(), eventlog=eventlog,
                   measured_boot=measured_boot)


def attest_file(
    source: BinaryIO,
    *,
    quote_attest: bytes | None = None,
    quote_signature: bytes | None = None,
    ak_public: PublicKey | bytes | None = None,
    nonce: bytes | None = None,
    pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]] | None = None,
    quote_hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
    reference: RuntimePolicy | None = None,
    kernel_version: tuple[int, int] = (6, 1),
    ignore_violations: bool = False,
    ignore_pcrs: Iterable[int] = (),
    digest_alg: HashAlgorithm | None = None,
    byte_order: str | None = None,
    jobs: int = 1,
    eventlog: EventLog | None = None,
    measured_boot: ReferenceState | None = None,
) -> AttestationReport:
    """:func:`attest` over a binary list streamed from a file, in one pass and bounded
    memory: the list is matched and appraised together (entries the policy accepts cost
    one set lookup on their raw bytes), and only the verdicts of verified entries are
    kept. Gives what :func:`attest` gives for the same list, without signature keyrings
    (use :func:`attest` for those).

    Keep one ``reference`` object for many lists: once they have held as many records it
    allows as it allows, it keeps an index of those records with their template hashes,
    and records found there are verified without hashing (the report is the same).
    """
    ev = _evidence(quote_attest, quote_signature, ak_public, nonce, pcr_values,
                   quote_hash_alg)
    if ev.pcrs is None:
        return AttestationReport(False, ev.error, None, False, (), (), None, 0, 0, ev.failure)
    reference = _allowing_violations(reference, ignore_violations)
    appraiser = _FileAppraiser(reference)
    result = _match_and_appraise_file(source, ev.pcrs, appraiser, digest_alg=digest_alg,
                                      byte_order=byte_order, ignore_pcrs=ignore_pcrs,
                                      jobs=jobs)
    names = _names_of(source, {u.index for u in result.uncovered} |
                      set(result.bad_digests[:_MAX_NAMED]), digest_alg=digest_alg,
                      byte_order=byte_order)
    return _report(ev, result, appraiser, result.entries, appraised=reference is not None,
                   ignore_violations=ignore_violations, kernel_version=kernel_version,
                   name=lambda i: names.get(i, ""), eventlog=eventlog,
                   measured_boot=measured_boot)


_MAX_NAMED = 1000


def _names_of(source: BinaryIO, wanted: AbstractSet[int], *, digest_alg: HashAlgorithm | None,
              byte_order: str | None) -> dict[int, str]:
    """The event names of a few entries of a list file, read again (seekable files only),
    to name the entries a report points at."""
    if not wanted or not source.seekable():
        return {}
    from .ima.codec import detect_list_kind, iter_measurement_list

    last = max(wanted)
    out: dict[int, str] = {}
    try:
        source.seek(0)
        kind = detect_list_kind(source.read(1 << 16), digest_alg=digest_alg,
                                byte_order=byte_order)
        source.seek(0)
        for i, e in enumerate(iter_measurement_list(source, byte_order=kind.byte_order,
                                                    digest_alg=kind.digest_alg)):
            if i in wanted:
                out[i] = e._safe_name()
            if i >= last:
                break
    except (ImasimError, OSError):
        return out
    return out
