"""``imasim log replay`` and ``imasim log check``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..algorithms import HashAlgorithm
from ..ima.replay import MatchStatus, match, replay
from ..io import load_pcrs_json, read_measurement_list
from ._args import hash_alg
from ._progress import track


def add_subcommands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "replay", help="compute the PCR values a list replays to",
        epilog="example: imasim log replay binary_runtime_measurements --bank sha256 --json",
        description="Replay a list into PCR banks (the kernel's per-bank template-digest "
        "rule, violations as 0xff, the legacy 'ima' rule).")
    p.add_argument("file", type=Path)
    p.add_argument("--bank", action="append", type=hash_alg, default=[],
                   help="bank to replay (repeatable; default sha1 and sha256)")
    p.add_argument("--padded", action="append", type=hash_alg, default=[],
                   help="bank extended with zero-padded SHA-1 digests (repeatable)")
    p.add_argument("--pcr", action="append", type=int, default=[],
                   help="PCR index to print (repeatable; default all the list touches)")
    p.add_argument("--json", action="store_true", help='print {"sha256": {"10": "<hex>"}}')
    p.set_defaults(func=_replay)
    c = sub.add_parser(
        "check", help="does a list replay to given PCR values? (exit 0 yes, 1 no)",
        epilog="example: imasim log check binary_runtime_measurements --pcrs pcrs.json",
        description="Match a list against PCR values in the JSON shape replay prints. "
        "Banks extended with padded SHA-1 are detected. Exit 0 when every bank matches "
        "after the whole list, 1 otherwise, 2 on bad input.")
    c.add_argument("file", type=Path)
    c.add_argument("--pcrs", type=Path, required=True)
    c.add_argument("--json", action="store_true", help="print the match result as JSON")
    c.set_defaults(func=_check)


def _replay(args: argparse.Namespace) -> int:
    lst = read_measurement_list(args.file)
    banks = args.bank or [HashAlgorithm.SHA1, HashAlgorithm.SHA256]
    result = replay(track(lst, "replay"), banks=banks, padded_banks=args.padded,
                    digest_alg=lst.digest_alg)
    values = result.to_dict()
    if args.pcr:
        values = {a: {i: v for i, v in b.items() if int(i) in args.pcr}
                  for a, b in values.items()}
    if args.json:
        print(json.dumps(values, indent=1))
    else:
        for bank, pcrs in values.items():
            for idx, val in pcrs.items():
                print(f"{bank}:{idx:>2} {val}")
        if result.bad_digests:
            print(f"entries whose stored template digest is wrong: {list(result.bad_digests)}",
                  file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    lst = read_measurement_list(args.file)
    quoted = load_pcrs_json(args.pcrs.read_bytes())
    entries = track(lst, "check")
    ima_pcrs = {e.pcr for e in entries} | {10}
    quoted = {a: {i: v for i, v in b.items() if i in ima_pcrs} for a, b in quoted.items()}
    result = match(entries, quoted, pcrs=ima_pcrs, digest_alg=lst.digest_alg)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        for b in result.banks:
            pad = " (padded SHA-1)" if b.padded else ""
            state = f"matches after {b.matched_at} entries" if b.matched else "does NOT match"
            print(f"{b.bank.kernel_name}{pad}: {state}")
        for m in result.mismatches:
            print(f"  {m.bank.kernel_name} PCR {m.pcr}: expected {m.expected.hex()}, "
                  f"replayed {m.computed.hex()}")
        if result.bad_digests:
            print(f"  entries whose stored template digest is wrong: {list(result.bad_digests)}")
    ok = result.status is MatchStatus.MATCH and not result.bad_digests
    return 0 if ok else 1
