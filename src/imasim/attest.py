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
5. With a keyring: do the signatures the list carries verify (an ima-sig/ima-sigv2
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
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .algorithms import HashAlgorithm
from .errors import ImasimError, ParseError, VerificationError
from .ima.entry import MeasurementEntry
from .ima.fields import DigestWithAlgo
from .ima.replay import MatchResult, ReplayResult, _replay_file, check_boot_aggregate, match
from .keys.keyring import Keyring
from .sig.evm import verify_evm
from .sig.pkcs7 import Usage, parse_pkcs7, verify_pkcs7
from .sig.xattr import parse_xattr, verify_xattr
from .tpm.verify import PublicKey, verify_quote

__all__ = [
    "AttestationReport",
    "EntryVerdict",
    "ReferenceValues",
    "Verdict",
    "appraise_entry",
    "appraise_list",
    "attest",
    "check_entry_signature",
    "replay_and_appraise_file",
]


class Verdict(enum.Enum):
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


@dataclass(frozen=True, slots=True)
class ReferenceValues:
    """Allowed file digests per path and excluded path patterns (a runtime policy)."""

    digests: Mapping[str, frozenset[str]]
    excludes: tuple[str, ...] = ()
    ignored_keyrings: frozenset[str] = frozenset()
    allow_violations: bool = False
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    digests_bytes: Mapping[str, frozenset[bytes]] = field(default_factory=dict, compare=False,
                                                          repr=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "digests_bytes", {
                p: frozenset(bytes.fromhex(d) for d in ds) for p, ds in self.digests.items()})
        except ValueError as exc:
            raise ParseError(f"bad digest in reference values: {exc}", field="digests") from None
        if self.excludes:
            try:
                object.__setattr__(self, "_pattern",
                                   re.compile("|".join(f"(?:{e})" for e in self.excludes)))
            except re.error as exc:
                raise ParseError(f"bad exclude pattern: {exc}", field="excludes") from None

    @classmethod
    def from_keylime_json(cls, text: str | bytes) -> ReferenceValues:
        """Keylime's runtime policy (``{"meta": {"version": 1}, "digests": {path: [hex]},
        "excludes": [regex], "ima": {"ignored_keyrings": [...]}}``)."""
        try:
            doc = json.loads(text)
            digests = {str(p): frozenset(str(d).lower() for d in ds)
                       for p, ds in doc.get("digests", {}).items()}
            excludes = tuple(str(e) for e in doc.get("excludes", []))
            ignored = frozenset(doc.get("ima", {}).get("ignored_keyrings", []))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ParseError(f"not a Keylime runtime policy: {exc}", field="policy") from None
        return cls(digests, excludes, ignored)

    def is_excluded(self, path: str) -> bool:
        return self._pattern is not None and self._pattern.match(path) is not None


@dataclass(frozen=True, slots=True)
class EntryVerdict:
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


def appraise_entry(index: int, e: MeasurementEntry, reference: ReferenceValues
                   ) -> EntryVerdict | None:
    """The verdict for one entry, or None when it is fine."""
    if not e.template_digest.strip(b"\0"):
        if reference.allow_violations:
            return None
        return EntryVerdict(index, e._safe_name(), Verdict.VIOLATION)
    try:
        name, digest = _name_and_digest(e)
    except ParseError as exc:
        return EntryVerdict(index, e._safe_name(), Verdict.MALFORMED_ENTRY, str(exc))
    return _verdict(index, name, digest, e.template_name, reference)


def _verdict(index: int, name: str, digest: bytes | None, template_name: str,
             reference: ReferenceValues) -> EntryVerdict | None:
    """appraise_entry once the entry's event name and file digest are known."""
    allowed = reference.digests_bytes.get(name)
    if allowed is not None and digest in allowed:
        return None
    if name == "boot_aggregate":
        return None
    if template_name == "ima-buf" and name in reference.ignored_keyrings:
        return None
    if reference.is_excluded(name):
        return None
    if allowed is None:
        return EntryVerdict(index, name, Verdict.UNKNOWN_PATH)
    return EntryVerdict(index, name, Verdict.DIGEST_MISMATCH, digest.hex() if digest else "")


def appraise_list(entries: Iterable[MeasurementEntry], reference: ReferenceValues
                  ) -> tuple[EntryVerdict, ...]:
    """A verdict per entry (only the non-OK ones are returned; OK is the rest)."""
    out = []
    for i, e in enumerate(entries):
        v = appraise_entry(i, e, reference)
        if v is not None:
            out.append(v)
    return tuple(out)


class _FileAppraiser:
    """appraise_entry for the fused replay of replay_and_appraise_file.

    ``fast_set`` gives, for every allowed (path, digest) pair, the template data of the
    ima-ng record whose d-ng field starts with ``prefix`` ("sha256:" and a NUL): an entry
    whose data is in that set is one appraise_entry accepts, so the replay skips it.
    Every other entry gets appraise_entry's verdict (read from its raw data when it has
    the same shape).
    """

    def __init__(self, reference: ReferenceValues) -> None:
        self.reference = reference
        self.failures: list[EntryVerdict] = []

    def fast_set(self, prefix: bytes, f0: int
                 ) -> tuple[AbstractSet[bytes], Callable[[int, int, bytes, bytes], None]]:
        size = f0 - len(prefix)
        u32 = struct.Struct("<I").pack
        head = u32(f0) + prefix
        out: set[bytes] = set()
        add = out.add
        for path, digests in self.reference.digests_bytes.items():
            if path.isascii():
                name = path.encode()
            else:
                try:
                    name = path.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    continue
                if name.decode("utf-8", "surrogateescape") != path:
                    continue  # no record's name decodes to this path
            tail = u32(len(name) + 1) + name + b"\0"
            for d in digests:
                if len(d) == size:
                    add(head + d + tail)
        reference, failures = self.reference, self.failures
        d_start, name_start = 4 + len(prefix), 8 + f0

        def appraise_raw(index: int, pcr: int, stored: bytes, data: bytes) -> None:
            """appraise_entry for a valid two-field ima-ng record with this d-ng prefix
            and first-field length, not a violation, read from its raw data."""
            if len(data) > name_start and data[-1:] == b"\0" and data.startswith(prefix, 4):
                # what _name_and_digest reads
                v = _verdict(index, data[name_start:-1].decode("utf-8", "surrogateescape"),
                             data[d_start:4 + f0], "ima-ng", reference)
            else:
                v = appraise_entry(index, MeasurementEntry(pcr, "ima-ng", stored, data), reference)
            if v is not None:
                failures.append(v)

        return out, appraise_raw

    def __call__(self, index: int, e: MeasurementEntry) -> None:
        v = appraise_entry(index, e, self.reference)
        if v is not None:
            self.failures.append(v)


def replay_and_appraise_file(
    source: BinaryIO,
    reference: ReferenceValues,
    *,
    banks: Sequence[HashAlgorithm] = (HashAlgorithm.SHA1, HashAlgorithm.SHA256),
    padded_banks: Iterable[HashAlgorithm] = (),
    digest_alg: HashAlgorithm = HashAlgorithm.SHA1,
    chunk_size: int = 8 << 20,
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


@dataclass(frozen=True, slots=True)
class AttestationReport:
    quote_valid: bool
    quote_error: str | None
    replay: MatchResult | None
    boot_aggregate_ok: bool
    failures: tuple[EntryVerdict, ...]
    notes: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        return (self.quote_valid and self.replay is not None and self.replay.matched
                and self.boot_aggregate_ok and not self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trusted": self.trusted,
            "quote": {"valid": self.quote_valid, "error": self.quote_error},
            "replay": None if self.replay is None else self.replay.to_dict(),
            "boot_aggregate_ok": self.boot_aggregate_ok,
            "failures": [{"index": f.index, "path": f.path, "verdict": f.verdict.value,
                          "detail": f.detail} for f in self.failures],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        lines = [f"quote: {'valid' if self.quote_valid else 'INVALID: ' + str(self.quote_error)}"]
        if self.replay is not None:
            for b in self.replay.banks:
                state = (f"matches after {b.matched_at} of {self.replay.entries} entries"
                         if b.matched else "does NOT match")
                pad = " (padded SHA-1)" if b.padded else ""
                lines.append(f"  {b.bank.kernel_name}{pad}: {state}")
            if self.replay.bad_digests:
                lines.append(f"  entries whose template digest is wrong: "
                             f"{list(self.replay.bad_digests)}")
        lines.append(f"boot_aggregate: {'ok' if self.boot_aggregate_ok else 'MISMATCH'}")
        for f in self.failures[:20]:
            lines.append(f"  entry {f.index} {f.path}: {f.verdict.value} {f.detail}".rstrip())
        lines += [f"note: {n}" for n in self.notes]
        lines.append("TRUSTED" if self.trusted else "NOT TRUSTED")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The verdict, the quote, the per-bank replay and the failing entries."""
        from ._html import attestation_report

        return attestation_report(self)


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
    uid, gid, mode = (fields.get(k) for k in ("iuid", "igid", "imode"))
    if not ("xattrnames" in fields and isinstance(uid, int) and isinstance(gid, int) and
            isinstance(mode, int)):
        raise ParseError("an evm-sig entry needs xattrnames, xattrlengths, xattrvalues, "
                         "iuid, igid and imode", field="evmsig")
    verify_evm(evmsig, xattrs, uid=uid, gid=gid, mode=mode, keyring=keyring)


def _kexec_note(entries: Sequence[MeasurementEntry], result: MatchResult | None) -> str | None:
    if result is None or any(b.matched for b in result.banks):
        return None
    aggs = [i for i, e in enumerate(entries)
            if not e.is_violation and e._safe_name() == "boot_aggregate"]
    if len(aggs) < 2:
        return None
    return (f"the list spans {len(aggs) - 1} kexec(s) (boot_aggregate at entries "
            f"{aggs}) and replays to no quoted bank: measurements extended into the TPM "
            f"between a kexec load and execute are missing from a list copied at load "
            f"(kernels up to 6.15), unless the list was tampered with")


def attest(
    *,
    quote_attest: bytes,
    quote_signature: bytes,
    ak_public: PublicKey | bytes,
    nonce: bytes,
    pcr_values: Mapping[HashAlgorithm, Mapping[int, bytes]],
    entries: Sequence[MeasurementEntry],
    reference: ReferenceValues | None = None,
    kernel_version: tuple[int, int] = (6, 1),
    signature_keyring: Keyring | None = None,
    require_signatures: bool = False,
) -> AttestationReport:
    """Check a quote and a measurement list together; see the module docstring."""
    quote_ok, err = True, None
    try:
        verify_quote(quote_attest, quote_signature, ak_public, nonce=nonce,
                     pcr_values=pcr_values)
    except (VerificationError, ParseError) as exc:
        quote_ok, err = False, f"{type(exc).__name__}: {exc}"
    ima_pcrs = {e.pcr for e in entries} | {10}
    quoted = {a: {i: v for i, v in b.items() if i in ima_pcrs} for a, b in pcr_values.items()}
    quoted = {a: b for a, b in quoted.items() if b}
    result = match(entries, quoted) if quoted else None
    failures: list[EntryVerdict] = []
    if result is not None:
        failures += [EntryVerdict(i, entries[i]._safe_name(), Verdict.BAD_TEMPLATE_DIGEST)
                     for i in result.bad_digests]
    agg_ok = True
    # boot_aggregate needs PCRs 0-9 of the bank the kernel chose; use the quoted banks
    # that cover them (the kernel's choice among those: ima_hash's bank, else sha256, sha1)
    full = [a for a, b in pcr_values.items() if all(i in b for i in range(10))]
    for i, e in enumerate(entries):
        if e._safe_name() == "boot_aggregate" and not e.is_violation:
            ok = bool(full) and check_boot_aggregate(e, pcr_values, banks=full,
                                                     kernel_version=kernel_version)
            if not ok:
                agg_ok = False
                failures.append(EntryVerdict(i, e.event_name, Verdict.BOOT_AGGREGATE_MISMATCH))
    if not entries or entries[0]._safe_name() != "boot_aggregate":
        agg_ok = False
    if reference is not None:
        failures += appraise_list(entries, reference)
    if signature_keyring is not None:
        for i, e in enumerate(entries):
            v = check_entry_signature(i, e, signature_keyring, require=require_signatures)
            if v is not None:
                failures.append(v)
    failures.sort(key=lambda f: f.index)
    note = _kexec_note(entries, result)
    return AttestationReport(quote_ok, err, result, agg_ok, tuple(failures),
                             (note,) if note else ())
