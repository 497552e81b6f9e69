"""Argument types and the JSON verdict shared by the subcommands.

A bad value on the command line is a usage error (exit 2), found by argparse before any
work: an unknown hash algorithm must not surface as the verification failure (exit 1)
that ``UnsupportedAlgorithmError`` means when a signature uses one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..algorithms import HashAlgorithm
from ..errors import UnsupportedAlgorithmError, VerificationError


def hash_alg(text: str) -> HashAlgorithm:
    """``--hash sha256``: a known algorithm, or a usage error."""
    try:
        return HashAlgorithm.from_name(text)
    except UnsupportedAlgorithmError:
        raise argparse.ArgumentTypeError(f"unknown hash algorithm {text!r}") from None


def hash_algs(text: str) -> list[HashAlgorithm]:
    """``--banks sha1,sha256``."""
    return [hash_alg(t) for t in text.split(",") if t]


def hex_bytes(text: str) -> bytes:
    """``-q 0011``: hex, an optional ``0x`` prefix allowed."""
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def add_json(p: argparse.ArgumentParser, what: str = "the verdict") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON (on failure "
                   "too, with the exit code unchanged)")


def verdict(args: argparse.Namespace, check: Callable[[], tuple[str, dict[str, Any]]]) -> int:
    """Run a verifier: ``check()`` returns the success line and the JSON details.

    Exit 0 when it returns, 1 when it raises :class:`VerificationError`. With ``--json``
    both outcomes print ``{"valid": ..., ...}`` on stdout; without, a failure propagates
    to :func:`imasim.cli.main`, which prints it on stderr.
    """
    try:
        text, details = check()
    except VerificationError as exc:
        if not getattr(args, "json", False):
            raise
        import json  # only with --json: a verifier's cold start should not pay for it

        print(json.dumps({"valid": False, "error": type(exc).__name__, "reason": str(exc)},
                         indent=1))
        return 1
    if args.json:
        import json

        print(json.dumps({"valid": True, **details}, indent=1))
    else:
        print(text)
    return 0
