"""``imasim eventlog``: the firmware's TCG event log (``binary_bios_measurements``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._args import hash_alg

_EPILOG = """examples:
  imasim eventlog show /sys/kernel/security/tpm0/binary_bios_measurements
  imasim eventlog show binary_bios_measurements --json     (tpm2_eventlog's fields)
  imasim eventlog replay binary_bios_measurements --bank sha256 --json > pcrs.json
  imasim eventlog check binary_bios_measurements --pcrs pcrs.json
  imasim eventlog check binary_bios_measurements --pcrs pcrs.json --refstate refstate.json
PCR values from a file are unauthenticated: the check says whether the log is consistent
with them; only a verified quote (imasim attest) makes its events trustworthy.
exit codes: 0 success (check: every PCR the log covers matches), 1 it does not,
  2 bad input or usage
"""


_EVENTLOG = "a TCG event log (binary_bios_measurements)"
_FILE_HELP = "the event log (/sys/kernel/security/tpm0/binary_bios_measurements); - for stdin"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "eventlog", help="show, replay and check the firmware's TCG event log",
        description="Read the firmware's TCG event log (SHA-1 or crypto-agile format, "
        "/sys/kernel/security/tpm0/binary_bios_measurements): decode its events as "
        "tpm2_eventlog does, replay PCR 0-9 in every bank, check it against PCR values.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    el = parser.add_subparsers(dest="eventlog_command", metavar="SUBCOMMAND")

    s = el.add_parser("show", help="list the events (--json: tpm2_eventlog's document)",
                      epilog="example: imasim eventlog show binary_bios_measurements --json")
    s.add_argument("file", type=Path, help=_FILE_HELP)
    s.add_argument("--json", action="store_true",
                   help="print tpm2_eventlog's document (events, fields, pcrs) as JSON")
    s.add_argument("--eventlog-version", type=int, choices=(1, 2), default=2,
                   help="decode UEFI variables and GPT (2, default) or print them as hex (1) "
                   "as tpm2_eventlog --eventlog-version does")
    s.set_defaults(func=_show)

    r = el.add_parser("replay", help="the PCR values the log replays to",
                      epilog="example: imasim eventlog replay binary_bios_measurements "
                      "--bank sha256 --json > pcrs.json")
    r.add_argument("file", type=Path, help=_FILE_HELP)
    r.add_argument("--bank", type=hash_alg, action="append",
                   help="a bank to replay (repeatable; default every bank the log carries)")
    r.add_argument("--json", action="store_true",
                   help='print {"sha256": {"0": "<hex>", ...}} as imasim log replay does')
    r.set_defaults(func=_replay)

    c = el.add_parser("check", help="does the log replay to these PCR values?",
                      epilog="example: imasim eventlog check binary_bios_measurements "
                      "--pcrs pcrs.json --json")
    c.add_argument("file", type=Path, help=_FILE_HELP)
    c.add_argument("--pcrs", type=Path, required=True,
                   help='PCR values, {"sha256": {"0": "<hex>", ...}} (pcrs.json)')
    c.add_argument("--refstate", type=Path,
                   help="judge the measured boot against a reference state (Keylime's "
                   "measured-boot refstate JSON: has_secureboot, scrtm_and_bios, pk/kek/db/dbx, "
                   "kernels[] digests and cmdline)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=_check)


def _read(path: Path) -> Any:
    from ..eventlog import EventLog
    from ._io import explained, read_input

    data = read_input(path, _EVENTLOG, ("eventlog",))
    with explained(path, data, _EVENTLOG):
        return EventLog.parse(data)


def _show(args: argparse.Namespace) -> int:
    from ..eventlog.events import describe_log, summary

    log = _read(args.file)
    if args.json:
        print(json.dumps(describe_log(log, version=args.eventlog_version), indent=1))
        return 0
    banks = log.banks
    shown = banks[1] if len(banks) > 1 and banks[0].kernel_name == "sha1" else banks[0]
    print(f"{log.format.value} log, banks {', '.join(b.kernel_name for b in banks)}, "
          f"{len(log.measurements)} events")
    for ev in log.measurements:
        d = ev.digest(shown)
        dg = f"{shown.kernel_name}:{d.hex()}" if d is not None else "-"
        print(f"{ev.number:>5} PCR{ev.pcr:<2} {ev.type_name:<34} {dg} {summary(ev)}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from ..eventlog.replay import replay

    log = _read(args.file)
    result = replay(log, args.bank)
    values = result.to_dict()
    if args.json:
        print(json.dumps(values, indent=1))
    else:
        for bank, pcrs in values.items():
            for idx, val in pcrs.items():
                print(f"{bank}:{idx:>2} {val}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..errors import PcrMismatchError
    from ..eventlog.replay import PcrDifference, verify_eventlog
    from ..tpm.pcrs import PcrBanks
    from ._io import read_pcrs

    log = _read(args.file)
    pcrs = PcrBanks.unauthenticated(read_pcrs(args.pcrs))
    try:
        v = verify_eventlog(log, pcrs)
    except PcrMismatchError as exc:
        if args.json:
            print(json.dumps({"valid": False, "mismatches": [
                {"bank": d.bank.kernel_name, "pcr": d.pcr, "quoted": d.quoted.hex(),
                 "replayed": None if d.replayed is None else d.replayed.hex(),
                 "changed_events": list(d.suspects)}
                for d in exc.mismatches if isinstance(d, PcrDifference)]}, indent=1))
            return 1
        raise
    pcr_list = sorted(v.verified_pcrs)
    out: dict[str, Any] = {"valid": True, "banks": [b.kernel_name for b in v.banks],
                           "pcrs": pcr_list, "events": len(v.events), "authenticated": False}
    ok = True
    lines = [f"the log replays to PCR {','.join(map(str, pcr_list))} in "
             f"{', '.join(b.kernel_name for b in v.banks)} ({len(v.events)} events; "
             "PCR values unauthenticated)"]
    if args.refstate is not None:
        from dataclasses import replace

        from ..errors import ParseError
        from ..eventlog.judge import ReferenceState, judge
        from ._io import load_json

        doc = load_json(args.refstate, "a measured-boot reference state (JSON)")
        if not isinstance(doc, dict):
            raise ParseError("reference state must be a JSON object", field="refstate")
        ref = replace(ReferenceState.from_keylime(doc), require_authenticated=False)
        verdict = judge(v, ref)
        ok = verdict.ok
        out["valid"] = ok
        out["judgement"] = verdict.to_dict()
        lines.append("measured boot: " + ("as the reference state says" if ok else "REJECTED"))
        lines.extend(f"  {r.code}: {r.message}" for r in verdict.reasons)
    print(json.dumps(out, indent=1) if args.json else "\n".join(lines))
    return 0 if ok else 1
