"""A software TPM 2.0 (PCR banks, localities, attestation keys, quotes) and quote verification.

:class:`SoftTpm` is the sharp layer: it signs whatever PCR state it holds. The verifier's
side is :func:`verify_quote`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from .verify import VerifiedQuote, load_ak_public, parse_pcr_file, verify_quote, write_pcr_file

if TYPE_CHECKING:
    from .soft_tpm import AttestationKey, LocalityError, Quote, SoftTpm

_SOFT_TPM = ("AttestationKey", "LocalityError", "Quote", "SoftTpm")


def __getattr__(name: str) -> Any:
    # the simulator needs cryptography to sign; a verifier (tpm checkquote) never loads it
    if name in _SOFT_TPM:
        from . import soft_tpm

        return getattr(soft_tpm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
