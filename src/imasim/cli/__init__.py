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
import os
import pkgutil
import sys
from collections.abc import Sequence

from ..errors import ImasimError, ParseError, PolicyError, UsageError, VerificationError
from ._errors import Parser, report, report_unexpected

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_EPILOG = """\
tasks:
  imasim demo                         the whole story: boot, measure, appraise, kexec, attest
  imasim boot SCENARIO -o DIR         run a scenario file (docs/scenarios/) on a simulated kernel
  imasim tpm --help                   a software TPM 2.0 spelled like tpm2-tools
  imasim log --help                   show, convert, replay and check IMA measurement lists
  imasim eventlog --help              the firmware's TCG event log: show, replay, check
  imasim attest --help                one call: quote + list + reference values -> report
  imasim runtime-policy --help        make Keylime runtime policies from lists or a root fs
  imasim modsig --help                appended (module) signatures: sign, verify, show, strip
  imasim imasig --help                security.ima signatures: sign, verify, show
  imasim pe --help                    PE/COFF Authenticode: digest, verify, sign, show
  imasim ipe --help                   IPE policies: check, eval, sign; fs-verity/dm-verity digests
  imasim kexec --help                 pack and unpack the IMA kexec buffer
  imasim fleet --help                 many machines: simulate bundles, verify on Dask, tabulate

exit codes: 0 success, 1 verification failed, 2 bad input or usage
"""


#: command -> (module in imasim/cli, one-line help for ``imasim --help``). Only the module
#: of the command that runs is imported; adding a command is one line here plus its
#: ``cmd_*.py`` module defining ``register(subparsers)``. A ``cmd_*.py`` module missing
#: from this table still works (imported on every call, as before).
COMMANDS: dict[str, tuple[str, str]] = {
    "attest": ("cmd_attest", "verify a quote and a measurement list together"),
    "boot": ("cmd_boot", "run a scenario (TOML/JSON): boot, files, keys, actions"),
    "demo": ("cmd_demo", "run the whole story: boot, appraise, kexec, attest"),
    "eventlog": ("cmd_eventlog", "show, replay and check the firmware's TCG event log"),
    "fleet": ("cmd_fleet", "many machines: simulate, verify on Dask, tabulate"),
    "imasig": ("cmd_imasig", "sign, verify and show security.ima signatures"),
    "ipe": ("cmd_ipe", "IPE policies: check, eval, sign; verity digests"),
    "kexec": ("cmd_kexec", "pack and unpack the IMA kexec buffer"),
    "log": ("cmd_log", "show, convert, replay and check IMA measurement lists"),
    "modsig": ("cmd_modsig", "sign, verify, show and strip appended signatures"),
    "pe": ("cmd_pe", "Authenticode PE images: digest, verify, sign, show"),
    "runtime-policy": ("cmd_runtime_policy", "make Keylime runtime policies"),
    "tpm": ("cmd_tpm", "a software TPM 2.0 spelled like tpm2-tools"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (the first argument not an option), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the chosen command's module is imported (the
    others get a placeholder that carries their help line)."""
    parser = Parser(
        prog="imasim",
        description="Simulate the Linux integrity stack: TPM 2.0, IMA, keyrings, "
        "appraisal, kexec and IPE, byte for byte.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="show program's version number and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=False)
    chosen = None if argv is None else _chosen(argv)
    known = {module for module, _ in COMMANDS.values()}
    for name, (module, help_text) in sorted(COMMANDS.items()):
        if argv is None or name == chosen:
            importlib.import_module(f"{__name__}.{module}").register(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_") and info.name not in known:
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


class _VersionAction(argparse.Action):
    """``--version``, reading the installed metadata only when asked (it costs ~80 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"imasim {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imasim")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``imasim ARGV...`` and return the exit code; every error is one ``imasim:`` line
    on stderr, and a closed stdout pipe (``| head``) ends the output quietly."""
    from ._io import pipe_safe_stdout

    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    with pipe_safe_stdout():
        try:
            return int(func(args))
        except VerificationError as exc:
            return report(f"verification failed: {exc}", EXIT_FAILED)
        except (ParseError, PolicyError, UsageError) as exc:
            return report(f"bad input: {exc}", EXIT_BAD_INPUT)
        except ImasimError as exc:
            return report(str(exc), EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            return report("interrupted", 130)
        except Exception as exc:
            if os.environ.get("IMASIM_DEBUG"):
                raise
            return report_unexpected(exc)


def run() -> None:
    sys.exit(main())
