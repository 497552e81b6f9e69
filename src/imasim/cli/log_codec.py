"""``imasim log show`` and ``imasim log convert``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..io import read_measurement_list
from ._args import hash_alg
from ._progress import track


def add_subcommands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("show", help="print a list as the kernel's ASCII file, or JSON",
                       epilog="example: imasim log show binary_runtime_measurements",
                       description="Print a binary or ASCII measurement list. The ascii "
                       "output is byte-identical to ascii_runtime_measurements.")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=("ascii", "json"), default="ascii")
    p.add_argument("--bank", type=hash_alg,
                   help="print the per-bank list of this algorithm (6.10+ files)")
    p.add_argument("--big-endian", action="store_true", help="the list of a big-endian kernel")
    p.set_defaults(func=_show)
    c = sub.add_parser("convert", help="convert between binary, ASCII and JSON",
                       epilog="example: imasim log convert list.txt list.bin --to binary")
    c.add_argument("input", type=Path)
    c.add_argument("output", type=Path)
    c.add_argument("--to", choices=("binary", "ascii", "json"), required=True)
    c.add_argument("--bank", type=hash_alg, help="write the per-bank variant of this algorithm")
    c.add_argument("--big-endian", action="store_true")
    c.set_defaults(func=_convert)


def _load(args: argparse.Namespace) -> Any:
    lst = read_measurement_list(args.file if hasattr(args, "file") else args.input,
                                byte_order="big" if args.big_endian else "little")
    if args.bank:
        lst = lst.for_bank(args.bank)
    return lst


def _json(lst: Any) -> str:
    out = []
    for e in track(lst, "json"):
        fields: dict[str, object] = {}
        for k, v in e.fields.items():
            if isinstance(v, bytes):
                fields[k] = v.hex()
            elif v is None or isinstance(v, int | str):
                fields[k] = v
            else:
                fields[k] = str(v) if not isinstance(v, tuple) else list(v)
        out.append({"pcr": e.pcr, "template_digest": e.template_digest.hex(),
                    "template_name": e.template_name, "violation": e.is_violation,
                    "fields": fields})
    return json.dumps(out, indent=1)


def _show(args: argparse.Namespace) -> int:
    lst = _load(args)
    if args.format == "json":
        sys.stdout.write(_json(lst) + "\n")
        return 0
    write = sys.stdout.write
    for e in track(lst, "show"):
        write(e.ascii_line())
    return 0


def _convert(args: argparse.Namespace) -> int:
    lst = _load(args)
    if args.to == "binary":
        args.output.write_bytes(lst.to_bytes())
    elif args.to == "ascii":
        with args.output.open("w") as out:
            for e in track(lst, "convert"):
                out.write(e.ascii_line())
    else:
        args.output.write_text(_json(lst) + "\n")
    return 0
