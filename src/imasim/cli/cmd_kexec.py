"""``imasim kexec pack`` and ``imasim kexec unpack``: the IMA kexec buffer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..kexec import pack_kexec_buffer, restore_kexec_buffer
from ._args import add_json
from ._errors import report
from ._io import explained, read_input, read_list, write_output

_BUFFER = "an IMA kexec buffer (struct ima_kexec_hdr and records)"


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
    pk.add_argument("list", type=Path, help="the measurement list (binary, ASCII or JSON); "
                    "- for stdin")
    pk.add_argument("-o", "--output", type=Path, required=True,
                    help="the kexec buffer to write (- for stdout)")
    pk.set_defaults(func=_pack)
    up = ks.add_parser("unpack", help="kexec buffer -> binary list (with the kernel's checks)",
                       epilog="example: imasim kexec unpack buf -o restored.bin --json")
    up.add_argument("buffer", type=Path, help="the kexec buffer; - for stdin")
    up.add_argument("-o", "--output", type=Path, required=True,
                    help="the binary measurement list restored from it (- for stdout)")
    add_json(up, "what was restored and where the restore stopped")
    up.set_defaults(func=_unpack)


def _pack(args: argparse.Namespace) -> int:
    write_output(args.output, pack_kexec_buffer(read_list(args.list)))
    return 0


def _unpack(args: argparse.Namespace) -> int:
    if args.json and str(args.output) == "-":
        raise UsageError("--json and -o - would both write to stdout")
    data = read_input(args.buffer, _BUFFER, ("kexec-buffer",))
    with explained(args.buffer, data, _BUFFER):
        res = restore_kexec_buffer(data)
    write_output(args.output, res.entries.to_bytes())
    code = 2 if res.stopped and not len(res.entries) else 0  # the next kernel starts empty
    if args.json:
        print(json.dumps({"restored": len(res.entries), "stopped_at": res.stopped_at
                          if res.stopped else None, "reason": str(res.stopped) if res.stopped
                          else None}, indent=1))
    if res.stopped:
        what = "nothing restored" if code else f"{len(res.entries)} entries restored"
        report(f"{'bad input: ' if code else 'warning: '}restore stopped at record "
               f"{res.stopped_at}: {res.stopped} ({what})", code)
    return code
