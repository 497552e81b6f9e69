"""``imasim fleet``: simulate a fleet's evidence, verify it on Dask, tabulate its entries.

Dask and pyarrow (the ``fleet`` extra) are imported only when ``verify`` or ``table``
runs, so ``--help`` and ``simulate`` work without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import ParseError, UsageError
from ._io import explained, read_input
from ._progress import Progress

_EXTRA = "pip install 'imasim[fleet]'"
_POLICY = "a Keylime runtime policy (JSON)"
_CHALLENGES = "a challenges file (JSON: machine -> hex nonce)"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "fleet", help="fleets: simulate evidence bundles, verify them on Dask, tabulate",
        description="Evidence bundles of many machines (docs/fleet.md): simulate a fleet "
        "with compromised machines and its ground truth, verify every bundle through the "
        "attestation on Dask distributed, and write every list entry as a Parquet row. "
        f"verify and table need the fleet extra ({_EXTRA}).",
        epilog="examples:\n"
        "  imasim fleet simulate --machines 1000 --tamper 20 --seed 1 --out fleet/\n"
        "  imasim fleet verify fleet/ --policy fleet/policy.json --out verdicts --workers 2 "
        "--require-eventlog\n"
        "exit codes: 0 success (every machine trusted), 1 a machine is not trusted, "
        "2 bad input or usage",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fs = p.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)

    s = fs.add_parser(
        "simulate", help="simulate N machines' evidence bundles (some compromised)",
        description="Writes DIR/machines/<id>/ (one evidence bundle each, with the "
        "machine's firmware event log), "
        "DIR/policy.json (Keylime runtime policy of the fleet's software), "
        "DIR/challenges.json (the nonce the verifier sent each machine) and "
        "DIR/ground-truth.json. The same arguments give the same bytes.",
        epilog="example: imasim fleet simulate --machines 1000 --tamper 20 --seed 1 "
        "--out fleet/\nexit codes: 0 written, 2 bad arguments or unwritable DIR",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--machines", type=int, required=True, help="number of machines")
    s.add_argument("--out", type=Path, required=True, help="fleet folder to write")
    s.add_argument("--tamper", type=int, default=0,
                   help="number of compromised machines (each kind in turn; default 0)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.add_argument("--entries", type=int, default=1000,
                   help="list entries per machine (default 1000)")
    s.add_argument("--scenario", type=Path, metavar="FILE",
                   help="boot the fleet's machine as this scenario says (imasim boot's "
                   "TOML/JSON format; default: the built-in machine, each on its own UEFI "
                   "firmware)")
    s.add_argument("--tar", action="store_true", help="write each bundle as <id>.tar")
    s.add_argument("--workers", type=int, default=1,
                   help="simulate in this many processes (default 1)")
    s.add_argument("--json", action="store_true", help="print a summary as JSON")
    s.set_defaults(func=_simulate)

    v = fs.add_parser(
        "verify", help="verify every bundle on Dask; write the verdict table",
        description="Runs every bundle in DIR through the attestation (quote, replay, "
        "boot_aggregate, runtime policy) in batches on Dask distributed: a LocalCluster "
        "of --workers processes, or the cluster at --scheduler (its workers must see DIR). "
        "Writes VERDICTS.parquet and VERDICTS.json (machine, verdict, checks, counts). "
        "Each quote must carry the nonce in --challenges (default DIR/challenges.json).",
        epilog="example: imasim fleet verify fleet/ --policy fleet/policy.json "
        "--out verdicts --workers 2\nexit codes: 0 every machine trusted, 1 some not, "
        "2 bad input or Dask missing",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("dir", type=Path, help="fleet folder (or a folder of bundles)")
    v.add_argument("--policy", required=True, help="Keylime runtime policy JSON ('-': stdin)")
    v.add_argument("--out", type=Path, required=True,
                   help="verdict table path (.parquet and .json are written)")
    g = v.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=2,
                   help="LocalCluster worker processes (default 2)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    n = v.add_mutually_exclusive_group()
    n.add_argument("--challenges",
                   help="machine -> hex nonce JSON (default DIR/challenges.json)")
    n.add_argument("--bundle-nonces", action="store_true",
                   help="trust each bundle's nonce.bin (no record of the challenges)")
    v.add_argument("--require-eventlog", action="store_true",
                   help="a bundle without a firmware event log is not trusted (check "
                   "no-eventlog); a log a bundle has is always checked against its quote")
    v.add_argument("--batch-size", type=int, help="bundles per Dask task (default: auto)")
    v.add_argument("--json", action="store_true", help="print the summary as JSON")
    v.set_defaults(func=_verify)

    t = fs.add_parser(
        "table", help="every list entry of the fleet as a Parquet row",
        description="Writes one row per measurement-list entry of every bundle in DIR "
        "(machine, index, pcr, template, digest_alg, file_digest, path, signature, "
        "verdict) to a Parquet file, one bundle at a time in bounded memory. The verdict "
        "is the entry's from the machine's attestation against --policy (ok, a failure, "
        "or unverified where no verified quote covers it).",
        epilog="example: imasim fleet table fleet/ --policy fleet/policy.json --out "
        "entries.parquet\nexit codes: 0 written, 2 bad input or pyarrow missing",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("dir", type=Path, help="fleet folder (or a folder of bundles)")
    t.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    t.add_argument("--policy", help="Keylime runtime policy JSON ('-': stdin); without it "
                   "entries are judged by the quote and replay alone")
    m = t.add_mutually_exclusive_group()
    m.add_argument("--challenges",
                   help="machine -> hex nonce JSON (default DIR/challenges.json)")
    m.add_argument("--bundle-nonces", action="store_true",
                   help="trust each bundle's nonce.bin (no record of the challenges)")
    t.add_argument("--json", action="store_true", help="print a summary as JSON")
    t.set_defaults(func=_table)


def _need(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError(f"this needs {module} (the fleet extra): {_EXTRA}") from None


def _simulate(args: argparse.Namespace) -> int:
    from ..fleet.io import write_fleet
    from ..fleet.simulate import FleetSpec, ScenarioFiles

    scenario = None
    if args.scenario is not None:
        from .cmd_boot import read_scenario_file

        scenario = ScenarioFiles.of(read_scenario_file(args.scenario))
    spec = FleetSpec(machines=args.machines, tamper=args.tamper, seed=args.seed,
                     entries=args.entries, scenario=scenario)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    progress = Progress("simulate", spec.machines, "machines")
    try:
        write_fleet(spec, args.out, tar=args.tar, workers=args.workers,
                    on_progress=progress.advance)
    finally:
        progress.close()
    summary = {"out": str(args.out), **spec.to_dict()}
    print(json.dumps(summary, indent=1) if args.json else
          f"{spec.machines} machines ({spec.tamper} compromised) written to {args.out}")
    return 0


def _verdict_paths(out: Path) -> tuple[Path, Path]:
    stem = out.with_suffix("") if out.suffix in (".parquet", ".json") else out
    return stem.with_name(stem.name + ".parquet"), stem.with_name(stem.name + ".json")


def _inputs(args: argparse.Namespace) -> tuple[Any, dict[str, bytes] | None]:
    """The runtime policy (or None) and the verifier's challenges (or None when the
    bundles' own nonces are trusted explicitly)."""
    from ..attest import ReferenceValues
    from ..fleet.io import parse_challenges

    reference = None
    if args.policy is not None:
        policy = read_input(args.policy, _POLICY, ("json-policy",))
        with explained(args.policy, policy, _POLICY):
            reference = ReferenceValues.from_keylime_json(policy)
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a folder, expected a fleet folder (or a folder "
                         "of evidence bundles)")
    if args.bundle_nonces:
        return reference, None
    cpath = args.challenges or str(args.dir / "challenges.json")
    if args.challenges is None and not Path(cpath).is_file():
        raise UsageError(f"no challenges file {cpath}: pass --challenges FILE (the "
                         "nonces the verifier sent), or --bundle-nonces to trust the "
                         "bundles' own nonce.bin")
    data = read_input(cpath, _CHALLENGES, ("json",))
    with explained(cpath, data, _CHALLENGES):
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"not JSON: {exc}", field="challenges") from None
        return reference, parse_challenges(doc)


def _verify(args: argparse.Namespace) -> int:
    _need("distributed")
    _need("pyarrow")
    import pyarrow.parquet as pq

    from ..fleet.io import bundle_paths, write_json
    from ..fleet.verify import verdicts_table, verify_on_dask

    reference, challenges = _inputs(args)
    paths = bundle_paths(args.dir)
    if not paths:
        raise UsageError(f"no evidence bundles in {args.dir}")
    if args.workers < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise UsageError("--workers and --batch-size must be at least 1")
    progress = Progress("verify", len(paths), "machines")
    try:
        verdicts = verify_on_dask(paths, reference, challenges, workers=args.workers,
                                  scheduler=args.scheduler, batch_size=args.batch_size,
                                  on_progress=progress.advance,
                                  require_eventlog=args.require_eventlog)
    finally:
        progress.close()
    parquet, js = _verdict_paths(args.out)
    pq.write_table(verdicts_table(verdicts), parquet)
    write_json(js, [v.to_dict() for v in verdicts])
    trusted = sum(v.trusted for v in verdicts)
    checks = Counter(c for v in verdicts for c in v.checks)
    summary = {"machines": len(verdicts), "trusted": trusted,
               "untrusted": len(verdicts) - trusted, "checks": dict(sorted(checks.items())),
               "parquet": str(parquet), "json": str(js)}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{len(verdicts)} machines: {trusted} trusted, {len(verdicts) - trusted} "
              f"untrusted")
        for c, k in sorted(checks.items()):
            print(f"  {c}: {k}")
        print(f"verdicts: {parquet} {js}")
    sys.stdout.flush()
    if trusted == len(verdicts):
        return 0
    print(f"imasim: verification failed: {len(verdicts) - trusted} of {len(verdicts)} "
          "machines are not trusted", file=sys.stderr)
    return 1


def _table(args: argparse.Namespace) -> int:
    _need("pyarrow")
    from ..fleet.io import bundle_paths, read_bundle
    from ..fleet.table import write_entries_table

    reference, challenges = _inputs(args)
    paths = bundle_paths(args.dir)
    if not paths:
        raise UsageError(f"no evidence bundles in {args.dir}")
    progress = Progress("table", len(paths), "machines")
    try:
        rows = write_entries_table((read_bundle(p) for p in paths), args.out, reference,
                                   challenges=challenges, on_progress=progress.advance)
    finally:
        progress.close()
    summary = {"machines": len(paths), "rows": rows, "out": str(args.out)}
    print(json.dumps(summary, indent=1) if args.json else
          f"{rows} entries of {len(paths)} machines written to {args.out}")
    return 0
