"""``imasim runtime-policy``: make Keylime runtime policies, as ``keylime-policy`` does."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._args import hash_alg


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("runtime-policy", help="make Keylime runtime policies",
                       description="Keylime runtime policies (reference values for "
                       "imasim attest --policy and Keylime's verifier).",
                       epilog="example: imasim runtime-policy create --list "
                       "ascii_runtime_measurements -o policy.json\n"
                       "exit codes: 0 written, 2 bad input or usage",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = s.add_parser(
        "create", help="a policy from measurement lists and/or a root file system",
        epilog="example: imasim runtime-policy create --list ascii_runtime_measurements "
        "--keyrings --ima-buf -o policy.json",
        description="What `keylime-policy create runtime` makes: the file digests of the "
        "ima-ng/ima-sig entries of --list, the digests of the keys measured into each "
        "keyring (--keyrings) and of other ima-buf entries (--ima-buf), the files of "
        "--rootfs (regular files owned by root, outside /sys /run /proc /dev /var /tmp ...), "
        "exclude patterns and verification keys.")
    c.add_argument("--list", action="append", default=[],
                   help="measurement list (binary, ASCII or JSON; '-' for standard input; "
                   "repeatable)")
    c.add_argument("--rootfs", type=Path, help="root file system to hash")
    c.add_argument("--skip-path", action="append", default=[],
                   help="folder under --rootfs not to hash (repeatable)")
    c.add_argument("--algo", type=hash_alg, default=None,
                   help="digest algorithm for --rootfs (default sha256)")
    c.add_argument("--keyrings", action="store_true",
                   help="add the keys measured into keyrings (ima-buf entries holding a key)")
    c.add_argument("--ima-buf", action="store_true",
                   help="add the other ima-buf entries (kexec-cmdline, critical data)")
    c.add_argument("--ignored-keyrings", action="append", default=[],
                   help="keyring not to judge (repeatable; '*' for all)")
    c.add_argument("--excludelist", type=Path,
                   help="file of exclude regular expressions, one a line")
    c.add_argument("--add-verification-key", type=Path, action="append", default=[],
                   dest="keys", help="certificate whose key may sign files (repeatable)")
    c.add_argument("-o", "--output", default="-", help="output file (default: standard "
                   "output)")
    c.set_defaults(func=_create)


def _create(args: argparse.Namespace) -> int:
    from ..algorithms import HashAlgorithm
    from ..errors import UsageError
    from ..io import KEYLIME_BASE_EXCLUDE_DIRS, tree_digests
    from ..keys.key import Key
    from ..runtime_policy import create_runtime_policy
    from ._io import read_list, write_output

    if not args.list and args.rootfs is None:
        raise UsageError("give --list and/or --rootfs")
    entries = [e for path in args.list for e in read_list(path)]
    files = None
    if args.rootfs is not None:
        if not args.rootfs.is_dir():
            raise UsageError(f"--rootfs {args.rootfs}: not a folder")
        files = tree_digests(args.rootfs, args.algo or HashAlgorithm.SHA256,
                             skip=(*KEYLIME_BASE_EXCLUDE_DIRS, *args.skip_path))
    excludes: list[str] = []
    if args.excludelist is not None:
        excludes = [line.strip() for line in
                    args.excludelist.read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    policy = create_runtime_policy(
        entries, file_digests=files, keyrings=args.keyrings, ima_buf=args.ima_buf,
        ignored_keyrings=args.ignored_keyrings, excludes=excludes,
        verification_keys=[Key.from_certificate(p.read_bytes()) for p in args.keys])
    write_output(args.output, (policy.to_keylime_json() + "\n").encode())
    return 0
