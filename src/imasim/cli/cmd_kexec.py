"""``imasim kexec pack`` and ``imasim kexec unpack``: the IMA kexec buffer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..io import read_measurement_list
from ..kexec import pack_kexec_buffer, restore_kexec_buffer


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("kexec", help="pack and unpack the IMA kexec buffer",
                       description="The measurement list as ima_dump_measurement_list "
                       "writes it for the next kernel (struct ima_kexec_hdr + records).",
                       epilog="examples:\n"
                       "  imasim kexec pack binary_runtime_measurements -o kexec.buf\n"
                       "  imasim kexec unpack kexec.buf -o restored.bin\n"
                       "exit codes: 0 success (unpack: a restore that stops early keeps the "
                       "entries before,\n  as the kernel does, and says why on stderr), 2 bad "
                       "input (nothing restored)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ks = p.add_subparsers(dest="kexec_command", metavar="SUBCOMMAND")
    pk = ks.add_parser("pack", help="list -> kexec buffer",
                       epilog="example: imasim kexec pack binary_runtime_measurements -o buf")
    pk.add_argument("list", type=Path)
    pk.add_argument("-o", "--output", type=Path, required=True)
    pk.set_defaults(func=_pack)
    up = ks.add_parser("unpack", help="kexec buffer -> binary list (with the kernel's checks)",
                       epilog="example: imasim kexec unpack buf -o restored.bin")
    up.add_argument("buffer", type=Path)
    up.add_argument("-o", "--output", type=Path, required=True)
    up.set_defaults(func=_unpack)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _pack(args: argparse.Namespace) -> int:
    args.output.write_bytes(pack_kexec_buffer(read_measurement_list(args.list)))
    return 0


def _unpack(args: argparse.Namespace) -> int:
    res = restore_kexec_buffer(args.buffer.read_bytes())
    args.output.write_bytes(res.entries.to_bytes())
    if res.stopped:
        print(f"restore stopped at record {res.stopped_at}: {res.stopped}", file=sys.stderr)
        if not len(res.entries):  # the next kernel would start with an empty list
            return 2
    return 0
