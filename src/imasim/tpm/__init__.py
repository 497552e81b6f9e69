"""A software TPM 2.0 (PCR banks, localities, attestation keys, quotes) and quote verification.

:class:`SoftTpm` is the sharp layer: it signs whatever PCR state it holds. The verifier's
side is :func:`verify_quote`.
"""

from __future__ import annotations

from .marshal import (
    Attest,
    ClockInfo,
    PcrSelection,
    PublicArea,
    Signature,
    SigScheme,
    parse_attest,
    parse_pcr_selection,
    parse_public,
    parse_signature,
)
from .pcrs import PcrBanks, PcrSource
from .soft_tpm import AttestationKey, LocalityError, Quote, SoftTpm
from .verify import VerifiedQuote, load_ak_public, parse_pcr_file, verify_quote, write_pcr_file

__all__ = [
    "Attest",
    "AttestationKey",
    "ClockInfo",
    "LocalityError",
    "PcrBanks",
    "PcrSelection",
    "PcrSource",
    "PublicArea",
    "Quote",
    "SigScheme",
    "Signature",
    "SoftTpm",
    "VerifiedQuote",
    "load_ak_public",
    "parse_attest",
    "parse_pcr_file",
    "parse_pcr_selection",
    "parse_public",
    "parse_signature",
    "verify_quote",
    "write_pcr_file",
]
