"""``imasim log``: the measurement-list command group.

Subcommands come from modules ``imasim/cli/log_*.py``, each defining
``add_subcommands(subparsers)``, so the codec (show, convert) and the verifier
(replay, check) can live apart.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Any

from . import __path__ as _cli_path

_EPILOG = """examples:
  imasim log show binary_runtime_measurements
  imasim log convert ascii_runtime_measurements list.bin --to binary
  imasim log replay binary_runtime_measurements --bank sha256 --json > pcrs.json
  imasim log check binary_runtime_measurements --pcrs pcrs.json --json
exit codes: 0 success (check: the list replays to the PCRs), 1 it does not,
  2 bad input or usage
progress is shown on stderr for big lists, only when stderr is a terminal
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "log",
        help="show, convert, replay and check IMA measurement lists",
        description="Work with IMA measurement lists (binary_runtime_measurements and "
        "ascii_runtime_measurements as the kernel writes them).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    log_sub = parser.add_subparsers(dest="log_command", metavar="SUBCOMMAND")
    for info in sorted(pkgutil.iter_modules(_cli_path), key=lambda m: m.name):
        if info.name.startswith("log_"):
            importlib.import_module(f"{__package__}.{info.name}").add_subcommands(log_sub)
    parser.set_defaults(func=lambda args: _no_subcommand(parser))


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
