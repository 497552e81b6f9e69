"""``imasim log show`` and ``imasim log convert``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._args import hash_alg
from ._io import read_list, stdout_broken, write_output
from ._progress import track

_INPUT_HELP = ("the list: binary (either byte order; the template digest size from a "
               "'_<alg>' name or the records), ASCII, or JSON from --to json; - for stdin")


def add_subcommands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("show", help="print a list as the kernel's ASCII file, or JSON",
                       epilog="examples:\n  imasim log show binary_runtime_measurements\n"
                       "  imasim log show binary_runtime_measurements --json | jq "
                       "'.entries[0].fields'",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print a binary, ASCII or JSON measurement list. The "
                       "text output is byte-identical to ascii_runtime_measurements; the "
                       "JSON output converts back with 'imasim log convert'.")
    p.add_argument("file", type=Path, help=_INPUT_HELP)
    p.add_argument("--json", action="store_true", help="print the list as JSON (decoded "
                   "fields and raw template data; see docs/formats.md)")
    p.add_argument("--bank", type=hash_alg,
                   help="print the per-bank list of this algorithm (6.10+ files)")
    p.add_argument("--big-endian", action="store_true",
                   help="the list of a big-endian kernel (detected when not given)")
    p.set_defaults(func=_show)
    c = sub.add_parser("convert", help="convert between binary, ASCII and JSON",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Convert a list between the kernel's binary and ASCII "
                       "files and imasim's JSON; every conversion is reversible byte for "
                       "byte (binary -> JSON -> binary gives the same file).",
                       epilog="examples:\n"
                       "  imasim log convert ascii_runtime_measurements list.bin --to binary\n"
                       "  imasim log convert binary_runtime_measurements list.json --to json\n"
                       "  imasim log convert list.json - --to binary | sha256sum")
    c.add_argument("input", type=Path, help=_INPUT_HELP)
    c.add_argument("output", type=Path, help="the file to write; - for stdout")
    c.add_argument("--to", choices=("binary", "ascii", "json"), required=True,
                   help="the output format")
    c.add_argument("--from", dest="from_", choices=("auto", "binary", "ascii", "json"),
                   default="auto", help="the input format (default: detected)")
    c.add_argument("--bank", type=hash_alg, help="write the per-bank variant of this algorithm")
    c.add_argument("--big-endian", action="store_true",
                   help="the input is the list of a big-endian kernel (detected when not "
                   "given); binary output keeps the input's byte order")
    c.set_defaults(func=_convert)


_FROM = {"binary": "a binary measurement list", "ascii": "an ASCII measurement list",
         "json": "a JSON measurement list"}
_FROM_KINDS = {"binary": ("binary-list", "per-bank-list"), "ascii": ("ascii-list",),
               "json": ("json-list",)}


def _load(args: argparse.Namespace) -> Any:
    path = args.file if hasattr(args, "file") else args.input
    src = getattr(args, "from_", "auto")
    order = "big" if args.big_endian else None
    if src == "auto":
        lst = read_list(path, byte_order=order)
    else:
        lst = read_list(path, byte_order=order, expect=_FROM[src], accept=_FROM_KINDS[src])
    if args.bank:
        lst = lst.for_bank(args.bank)
    return lst


def _ascii_lines(lst: Any, label: str) -> Any:
    for e in track(lst, label):
        yield e.ascii_line().encode("utf-8", "surrogateescape")


def _show(args: argparse.Namespace) -> int:
    from ..ima.jsonfmt import measurement_list_to_json

    lst = _load(args)
    if args.json:
        sys.stdout.write(measurement_list_to_json(lst) + "\n")
        return 0
    sys.stdout.flush()
    out = sys.stdout.buffer
    chunk: list[bytes] = []
    for line in _ascii_lines(lst, "show"):
        chunk.append(line)
        if len(chunk) == 1024:
            out.write(b"".join(chunk))
            chunk.clear()
            if stdout_broken():  # | head: the reader has gone
                return 0
    out.write(b"".join(chunk))
    out.flush()
    return 0


def _convert(args: argparse.Namespace) -> int:
    from ..ima.jsonfmt import measurement_list_to_dict

    lst = _load(args)
    if args.to == "binary":
        data = lst.to_bytes()
    elif args.to == "ascii":
        data = b"".join(_ascii_lines(lst, "convert"))
    else:
        data = (json.dumps(measurement_list_to_dict(lst), indent=1) + "\n").encode()
    write_output(args.output, data)
    return 0
