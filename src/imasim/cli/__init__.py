"""The ``imasim`` command line: the only place that prints or exits.

Subcommand groups live in ``imasim/cli/cmd_*.py``; each module defines
``register(subparsers)`` that adds its parser and sets ``func`` to a callable taking the
parsed namespace and returning an exit code. Exit codes are the same everywhere:

* 0: success (verified, matched);
* 1: a verification failed (signature, quote, replay did not match);
* 2: bad input or usage (unreadable or malformed file, wrong arguments).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import ImasimError, ParseError, PolicyError, UsageError, VerificationError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_EPILOG = """\
tasks:
  imasim demo                         the whole story: boot, measure, appraise, kexec, attest
  imasim boot SCENARIO -o DIR         run a scenario file (docs/scenarios/) on a simulated kernel
  imasim tpm --help                   a software TPM 2.0 spelled like tpm2-tools
  imasim log --help                   show, convert, replay and check IMA measurement lists
  imasim attest --help                one call: quote + list + reference values -> report
  imasim modsig --help                appended (module) signatures: sign, verify, show, strip
  imasim imasig --help                security.ima signatures: sign, verify, show
  imasim pe --help                    PE/COFF Authenticode: digest, verify, sign, show
  imasim ipe --help                   IPE policies: check, eval, sign; fs-verity/dm-verity digests
  imasim kexec --help                 pack and unpack the IMA kexec buffer

exit codes: 0 success, 1 verification failed, 2 bad input or usage
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imasim",
        description="Simulate the Linux integrity stack: TPM 2.0, IMA, keyrings, "
        "appraisal, kexec and IPE, byte for byte.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imasim {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imasim")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(func(args))
    except VerificationError as exc:
        print(f"imasim: verification failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ParseError, PolicyError, UsageError) as exc:
        print(f"imasim: bad input: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImasimError as exc:
        print(f"imasim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"imasim: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run() -> None:
    sys.exit(main())
