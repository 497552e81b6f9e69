"""``imasim boot SCENARIO``: run a scenario file on a simulated kernel."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ParseError, UsageError
from ..io import confined_reader, write_artifacts
from ..scenario import Scenario, parse_scenario, run_scenario
from ._io import display_name, explained, read_input

_SCENARIO = "a scenario (TOML or JSON)"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "boot", help="run a scenario (TOML/JSON): boot, files, keys, actions",
        description="Boot a simulated machine as a scenario file describes it, run its "
        "actions, and write the measurement list (binary and ASCII), the TPM state, the "
        "PCRs, the audit log and each action's result. The format is in imasim.scenario "
        "and docs/scenarios/.",
        epilog="examples:\n"
        "  imasim boot docs/scenarios/signed-init.toml -o out/\n"
        "  imasim boot scenario.json --json\n"
        "exit codes: 0 every expectation held, 1 an action's outcome differed from its "
        "expect=,\n  2 bad scenario or unreadable file",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", type=Path, help="the scenario file (TOML, or JSON when it "
                   "ends in .json or starts with '{'); - for stdin")
    p.add_argument("-o", "--out", type=Path, help="directory for the artifacts")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=_boot)


def read_scenario_file(path: Path) -> Scenario:
    """A scenario file ('-': stdin), parsed and validated; files it names are read from
    its folder (``confined_reader``). Errors are ParseError/UsageError (exit 2)."""
    base = Path.cwd() if str(path) == "-" else path.parent
    data = read_input(path, _SCENARIO, ("toml", "json", "text"))
    fmt = "json" if path.suffix == ".json" or data.lstrip()[:1] == b"{" else "toml"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{display_name(path)} is not UTF-8 text (byte "
                         f"{data[exc.start]:#04x} at offset {exc.start})") from None

    read = confined_reader(base)  # inside the scenario's folder, regular, size-bounded
    with explained(path, data, _SCENARIO):
        try:
            s = parse_scenario(text, fmt=fmt, read=read)
        except (ParseError, UsageError):
            raise
        except (ValueError, RecursionError) as exc:  # json/tomllib: a 5000-digit number...
            raise ParseError(f"{display_name(path)}: {exc or 'nested too deeply'}") from None
    return s


def _boot(args: argparse.Namespace) -> int:
    run = run_scenario(read_scenario_file(args.scenario))
    if args.out is not None:
        write_artifacts(args.out, run.artifacts)
    if args.json:
        print(json.dumps(run.to_dict(), indent=1))
    else:
        for r in run.results:
            mark = "ok  " if r.ok else "FAIL"
            exp = f" (expected {r.expect})" if r.expect and not r.ok else ""
            why = f": {r.reason}" if r.reason else ""
            print(f"[{mark}] {r.index:3} {r.op:<16} {r.target:<32} {r.outcome}{exp}{why}")
        lost = run.machine.lost_measurements
        print(f"{len(run.machine.measurements)} measurements"
              + (f", {len(lost)} lost in kexec windows" if lost else "")
              + (f"; artifacts in {args.out}" if args.out is not None else ""))
        print("all expectations held" if run.ok else "SOME EXPECTATIONS FAILED",
              file=sys.stderr if not run.ok else sys.stdout)
    return 0 if run.ok else 1
