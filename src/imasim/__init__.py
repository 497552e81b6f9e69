"""imasim: the Linux integrity stack (TPM 2.0, IMA, keyrings, appraisal, kexec, IPE), simulated.

Top-level names are the safe layer; the codecs and the raw software TPM live in
subpackages and are documented as not verifying anything by themselves.
"""

from __future__ import annotations

from .algorithms import HashAlgorithm
from .errors import (
    ImasimError,
    ParseError,
    PolicyError,
    SimulationError,
    UsageError,
    VerificationError,
)
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "DEFAULT_LIMITS",
    "HashAlgorithm",
    "ImasimError",
    "Limits",
    "ParseError",
    "PolicyError",
    "SimulationError",
    "UsageError",
    "VerificationError",
]
