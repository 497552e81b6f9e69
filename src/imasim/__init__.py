"""imasim: the Linux integrity stack (TPM 2.0, IMA, keyrings, appraisal, kexec, IPE), simulated.

Where to start (each name is imported on first use, so ``import imasim`` stays cheap):

* :class:`imasim.Machine` -- a simulated Linux machine with a software TPM:
  ``Machine.create(cmdline="ima_policy=tcb")``, then ``boot()``, ``add_file()``,
  ``exec()``, ``kexec_load()``; its ``measurements``, ``tpm`` and ``pcr_values()``.
* :func:`imasim.read_measurement_list` -- a real ``binary_runtime_measurements`` (or the
  ASCII file) from disk; :func:`imasim.parse_measurement_list` from bytes.
* :func:`imasim.replay` and :func:`imasim.match` -- the PCR values a list replays to, and
  whether (and how far) it matches given PCR values.
* :func:`imasim.verify_quote` -- a TPM quote checked as ``tpm2_checkquote`` checks it.
* :mod:`imasim.verify` -- the verifier's front door: quote -> PCRs -> match -> attest,
  each step taking only what the one before verified; ``imasim.verify.attest`` runs it
  all and gives an :class:`imasim.AttestationReport` (``status``, ``failures``,
  ``to_json()``).
* The command line: ``imasim --help`` (``imasim demo`` runs the whole story).

Top-level names are the safe layer; the codecs and the raw software TPM live in
subpackages and are documented as not verifying anything by themselves.

>>> import imasim
>>> m = imasim.Machine.create(cmdline="ima_policy=tcb")
>>> m.boot()
>>> imasim.match(m.measurements, m.pcr_values()).status.value
'match'
"""

from __future__ import annotations

import importlib
from typing import Any

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

#: name -> module that defines it; imported when the name is first used
_LAZY = {
    "AttestationReport": "imasim.attest",
    "Machine": "imasim.machine",
    "MeasurementEntry": "imasim.ima.entry",
    "MeasurementList": "imasim.ima.codec",
    "SoftTpm": "imasim.tpm.soft_tpm",
    "match": "imasim.ima.replay",
    "parse_measurement_list": "imasim.ima.codec",
    "read_measurement_list": "imasim.io",
    "replay": "imasim.ima.replay",
    "verify_quote": "imasim.tpm.verify",
}

__all__ = [
    "DEFAULT_LIMITS",
    "AttestationReport",
    "HashAlgorithm",
    "ImasimError",
    "Limits",
    "Machine",
    "MeasurementEntry",
    "MeasurementList",
    "ParseError",
    "PolicyError",
    "SimulationError",
    "SoftTpm",
    "UsageError",
    "VerificationError",
    "__version__",
    "match",
    "parse_measurement_list",
    "read_measurement_list",
    "replay",
    "verify_quote",
]


def __getattr__(name: str) -> Any:
    """The starting points and ``__version__``, imported on first use."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("imasim")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "unknown"
    elif name == "verify":
        value = importlib.import_module("imasim.verify")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'imasim' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"verify"})
