"""One line per error: the argument parser's usage errors and the last-resort catch.

Every error the command line reports is exactly one line on stderr that starts with
``imasim:``, whatever raised it, so scripts can show it and humans can read it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

EXIT_BAD_INPUT = 2


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed: a message always fits one line."""
    return " ".join(str(text).split())


def report(message: str, code: int) -> int:
    """Print ``imasim: MESSAGE`` on stderr (one line) and return ``code``."""
    try:
        print(f"imasim: {one_line(message)}", file=sys.stderr)
    except (OSError, ValueError):  # stderr closed too: the exit code still says it
        pass
    return code


def report_unexpected(exc: BaseException) -> int:
    """The last resort for exceptions no command turned into an imasim error.

    Input the parsers should have refused (too deep, not UTF-8, too big) is bad input;
    anything else is a bug in imasim, reported as one line rather than a traceback
    (``IMASIM_DEBUG=1`` shows the traceback).
    """
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return report(f"{where}{exc.strerror or exc}", EXIT_BAD_INPUT)
    if isinstance(exc, RecursionError):
        return report("bad input: nested too deeply", EXIT_BAD_INPUT)
    if isinstance(exc, UnicodeDecodeError):
        return report(f"bad input: not valid {exc.encoding} text (byte "
                      f"{exc.object[exc.start:exc.start + 1].hex()} at offset {exc.start})",
                      EXIT_BAD_INPUT)
    if isinstance(exc, UnicodeEncodeError):
        return report(f"cannot write {exc.object[exc.start:exc.end]!r} as {exc.encoding}",
                      EXIT_BAD_INPUT)
    if isinstance(exc, MemoryError):
        return report("bad input: too large to process in memory", EXIT_BAD_INPUT)
    return report(f"internal error (a bug in imasim, please report it with the command "
                  f"line): {type(exc).__name__}: {exc}", EXIT_BAD_INPUT)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``imasim:`` line, and whose command
    groups require a subcommand (a group alone is a usage error, not a help page)."""

    def error(self, message: str) -> NoReturn:
        if "required: SUBCOMMAND" in message or "required: COMMAND" in message:
            message = "which subcommand? " + ", ".join(self._subcommands())
        report(f"usage error: {self.prog}: {message} (see '{self.prog} --help')",
               EXIT_BAD_INPUT)
        sys.exit(EXIT_BAD_INPUT)

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction[Any]:
        kwargs.setdefault("required", True)
        return super().add_subparsers(**kwargs)

    def _subcommands(self) -> list[str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return list(action.choices)
        return []
