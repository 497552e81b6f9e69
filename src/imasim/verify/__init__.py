"""The verifier's front door: everything a remote-attestation verifier needs, in one import.

The pipeline, each step taking only what the one before verified::

    quote + AK + nonce + PCR file ─ verify_quote() ─▶ VerifiedQuote.pcrs  (PcrBanks: the
                                                      PCRs its pcrDigest covers, no others)
    measurement list + PcrBanks ── match() ───────▶ MatchResult (MATCH / PREFIX / MISMATCH:
                                                      how many entries the PCRs vouch for)
    verified entries + RuntimePolicy ─ attest() ──▶ AttestationReport (TRUSTED /
                                                      CONSISTENT without a quote / NOT_TRUSTED)

:func:`attest` runs all of it and never raises for a failed check; the single-purpose
steps raise a typed :class:`VerificationError` (``SignatureInvalidError``,
``NonceMismatchError``, ``PcrMismatchError``...) or :class:`ParseError` for bad bytes.

>>> from imasim.verify import attest, create_runtime_policy, AttestationStatus
>>> from imasim.machine import Machine
>>> from imasim.tpm import PcrSelection
>>> from imasim.algorithms import HashAlgorithm as H
>>> m = Machine.create(cmdline="ima_policy=tcb", banks=(H.SHA1, H.SHA256))
>>> m.boot()
>>> m.add_file("/usr/bin/true", b"\\x7fELF")
>>> _ = m.exec("/usr/bin/true")
>>> policy = create_runtime_policy(m.measurements)     # what the machine ran is allowed
>>> ak = m.tpm.create_ak("ecc", seed=b"doc")
>>> q = m.tpm.quote(ak, PcrSelection({H.SHA256: range(11)}), b"nonce")
>>> report = attest(quote_attest=q.attest, quote_signature=q.signature,
...                 ak_public=ak.public_pem, nonce=b"nonce", pcr_values=q.values_by_bank(),
...                 entries=list(m.measurements), reference=policy)
>>> report.status is AttestationStatus.TRUSTED, report.verified_entries
(True, 2)

The same evidence without the quote is only ever CONSISTENT:

>>> attest(pcr_values=q.values_by_bank(), entries=list(m.measurements),
...        reference=policy).status.value
'consistent'
"""

from __future__ import annotations

from ..attest import (
    AttestationReport,
    AttestationStatus,
    EntryVerdict,
    ListAppraiser,
    Verdict,
    appraise_entry,
    appraise_list,
    attest,
    check_entry_signature,
)
from ..errors import (
    NonceMismatchError,
    ParseError,
    PcrMismatchError,
    SignatureInvalidError,
    VerificationError,
)
from ..ima.replay import (
    MatchResult,
    MatchStatus,
    boot_aggregate,
    check_boot_aggregate,
    match,
    replay,
    replay_file,
)
from ..runtime_policy import RuntimePolicy, create_runtime_policy
from ..tpm.pcrs import PcrBanks, PcrSource
from ..tpm.verify import VerifiedQuote, load_ak_public, parse_pcr_file, verify_quote

__all__ = [
    "AttestationReport",
    "AttestationStatus",
    "EntryVerdict",
    "ListAppraiser",
    "MatchResult",
    "MatchStatus",
    "NonceMismatchError",
    "ParseError",
    "PcrBanks",
    "PcrMismatchError",
    "PcrSource",
    "RuntimePolicy",
    "SignatureInvalidError",
    "Verdict",
    "VerificationError",
    "VerifiedQuote",
    "appraise_entry",
    "appraise_list",
    "attest",
    "boot_aggregate",
    "check_boot_aggregate",
    "check_entry_signature",
    "create_runtime_policy",
    "load_ak_public",
    "match",
    "parse_pcr_file",
    "replay",
    "replay_file",
    "verify_quote",
]
