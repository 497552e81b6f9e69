"""``imasim demo``: the whole story on built-in defaults."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..demo import run_demo
from ..io import write_artifacts

_EPILOG = """examples:
  imasim demo                  the story as a table, in about a second
  imasim demo --json           the same as a JSON report
  imasim demo --out demo       and keep the artifacts in demo/
exit codes: 0 the story checks out, 1 a step did not turn out as it should

after `imasim demo --out demo`, the real tools read the artifacts:
  tpm2_checkquote -u demo/ak.pem -m demo/quote.msg -s demo/quote.sig -f demo/quote.pcrs \\
      -g sha256 -q $(cat demo/nonce.hex)
  imasim log check demo/binary_runtime_measurements --pcrs demo/pcrs.json
  imasim attest -u demo/ak.pem -m demo/quote.msg -s demo/quote.sig -f demo/quote.pcrs \\
      -q $(cat demo/nonce.hex) --list demo/binary_runtime_measurements \\
      --policy demo/runtime-policy.json
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("demo", help="run the whole story: boot, appraise, kexec, attest",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="A machine with a software TPM boots, IMA measures and "
                       "appraises its files and modules, it kexecs into a signed kernel "
                       "carrying its list, and a verifier checks a quote against the "
                       "replayed list; then a tampered list and a stale quote are caught.")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--out", type=Path, help="write the artifacts (lists, TPM state, quote "
                   "files, audit log, runtime policy) to this directory")
    p.set_defaults(func=_demo)


def _colour(ok: bool, text: str) -> str:
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\033[{32 if ok else 31}m{text}\033[0m"


def _demo(args: argparse.Namespace) -> int:
    rep = run_demo()
    if args.out:
        write_artifacts(args.out, rep.artifacts)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1))
    else:
        print("imasim demo: a simulated Linux machine, its TPM and a remote verifier\n")
        for n, s in enumerate(rep.steps, 1):
            mark = _colour(s.ok, "ok  " if s.ok else "FAIL")
            print(f"{n:2}. [{mark}] {s.title}\n           -> {s.outcome}")
        if args.out:
            print(f"\nartifacts written to {args.out}/ ({len(rep.artifacts)} files); "
                  "see `imasim demo --help` for the commands that read them")
        print("\n" + _colour(rep.ok, "the story checks out" if rep.ok else "SOMETHING IS OFF"))
    return 0 if rep.ok else 1
