"""``imasim log replay`` and ``imasim log check``: the streaming replay engine on a file."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ..algorithms import HashAlgorithm
from ..errors import UsageError
from ._args import hash_alg

T = TypeVar("T")

_LIST = "a measurement list (binary, ASCII or JSON)"
_LIST_HELP = ("the list: binary (streamed; kind and byte order found from its records), "
              "ASCII or JSON; - for stdin")

#: the PCR indices of a TPM (PC Client: 24)
_PCRS = range(24)


def _pcr_index(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a PCR index: {text!r}") from None
    if value not in _PCRS:
        raise argparse.ArgumentTypeError(f"PCR index {value} out of range (0-23)")
    return value


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs needs a positive number, not {text!r}")
    return value


def _kind_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--digest-alg", type=hash_alg, metavar="ALG",
                   help="algorithm of the stored template digests (default: found from the "
                   "list's first records; sha1 for the classic list, the bank's for a "
                   "per-bank binary_runtime_measurements_<alg> list)")
    p.add_argument("--byte-order", choices=("little", "big"),
                   help="integer byte order (default: found from the list)")
    p.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                   help="replay the banks in N worker processes (binary lists)")


def add_subcommands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "replay", help="compute the PCR values a list replays to",
        epilog="example: imasim log replay binary_runtime_measurements --bank sha256 --json",
        description="Replay a list into PCR banks (the kernel's per-bank template-digest "
        "rule, violations as 0xff, the legacy 'ima' rule), streaming, every record "
        "validated and every stored template digest checked.")
    p.add_argument("file", type=Path, help=_LIST_HELP)
    p.add_argument("--bank", action="append", type=hash_alg, default=[],
                   help="bank to replay (repeatable; default sha1 and sha256)")
    p.add_argument("--padded", action="append", type=hash_alg, default=[],
                   help="bank extended with zero-padded SHA-1 digests (repeatable)")
    p.add_argument("--pcr", action="append", type=_pcr_index, default=[],
                   help="PCR index to print (repeatable, 0-23; default all the list touches)")
    p.add_argument("--json", action="store_true", help='print {"sha256": {"10": "<hex>"}}')
    _kind_options(p)
    p.set_defaults(func=_replay)
    c = sub.add_parser(
        "check", help="which entries do given PCR values verify? (exit 0 all, 1 not)",
        epilog="example: imasim log check binary_runtime_measurements --pcrs pcrs.json",
        description="Match a list against PCR values (the JSON shape replay prints), as "
        "evmctl ima_measurement does: MATCH when the whole list replays to them, PREFIX "
        "when only its first entries do (the rest arrived after the values were read), "
        "MISMATCH otherwise. An entry extended into a PCR the values do not hold fails "
        "the match unless --ignore-pcr names that PCR. Banks extended with padded SHA-1 "
        "are detected. Exit 0 on MATCH (or PREFIX with --allow-prefix) with every "
        "verified stored template digest right, 1 otherwise, 2 on bad input.")
    c.add_argument("file", type=Path, help=_LIST_HELP)
    c.add_argument("--pcrs", type=Path, required=True,
                   help='the PCR values, {"sha256": {"10": "<hex>"}} (as replay --json and '
                   "tpm read --json print them); - for stdin")
    c.add_argument("--bank", action="append", type=hash_alg, default=[],
                   help="bank to compare (repeatable; default every bank in --pcrs)")
    c.add_argument("--ignore-pcr", action="append", type=_pcr_index, default=[],
                   metavar="N", help="PCR whose entries are replayed but not verified "
                   "(repeatable)")
    c.add_argument("--allow-prefix", action="store_true",
                   help="exit 0 when a prefix of the list verifies (evmctl's rule)")
    c.add_argument("--json", action="store_true", help="print the match result as JSON")
    _kind_options(c)
    c.set_defaults(func=_check)


@contextmanager
def _opened(args: argparse.Namespace) -> Any:
    """The binary list file, its kind found from its content (the name a hint)."""
    from ..ima.codec import detect_list_kind
    from ..io import list_name_hint
    from ._progress import ProgressReader

    with args.file.open("rb") as f:
        kind = detect_list_kind(f.read(1 << 16), digest_alg=args.digest_alg,
                                byte_order=args.byte_order, hint=list_name_hint(args.file))
        f.seek(0)
        source: BinaryIO = f
        reader = None
        if sys.stderr.isatty() and args.jobs == 1:
            reader = ProgressReader(f, args.file.stat().st_size, args.command_label, shift=10,
                                    unit="KiB")
            source = reader  # type: ignore[assignment]
        try:
            yield source, kind
        finally:
            if reader is not None:
                reader.close()


def _run(args: argparse.Namespace, label: str, on_file: Callable[..., T],
         on_list: Callable[..., T]) -> T:
    args.command_label = label
    from ._io import read_list, read_whole

    if read_whole(args.file):  # stdin, ASCII and JSON lists; binary files stream
        return on_list(read_list(args.file, byte_order=args.byte_order,
                                 digest_alg=args.digest_alg))
    with _opened(args) as (source, kind):
        return on_file(source, kind)


def _replay(args: argparse.Namespace) -> int:
    from ..ima.replay import replay, replay_file

    banks = args.bank or [HashAlgorithm.SHA1, HashAlgorithm.SHA256]
    result = _run(
        args, "replay",
        lambda f, kind: replay_file(f, banks=banks, padded_banks=args.padded,
                                    digest_alg=kind.digest_alg, byte_order=kind.byte_order,
                                    jobs=args.jobs),
        lambda lst: replay(lst, banks=banks, padded_banks=args.padded))
    values = result.to_dict()
    if args.pcr:
        values = {a: {str(i): b.get(str(i), HashAlgorithm.from_name(a).zero.hex())
                      for i in sorted(set(args.pcr))} for a, b in values.items()}
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
    from ..ima.replay import MatchStatus, match, match_file
    from ._io import read_pcrs
    quoted = read_pcrs(args.pcrs)
    missing = [a.kernel_name for a in args.bank if a not in quoted]
    if missing:
        raise UsageError(f"{args.pcrs} has no {', '.join(missing)} bank")
    banks = args.bank or None
    result = _run(
        args, "check",
        lambda f, kind: match_file(f, quoted, banks=banks, digest_alg=kind.digest_alg,
                                   byte_order=kind.byte_order, ignore_pcrs=args.ignore_pcr,
                                   jobs=args.jobs),
        lambda lst: match(lst, quoted, banks=banks, ignore_pcrs=args.ignore_pcr))
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print(result.summary())
    ok = result.matched and (result.status is MatchStatus.MATCH or args.allow_prefix)
    return 0 if ok else 1
