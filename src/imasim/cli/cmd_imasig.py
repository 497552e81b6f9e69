"""``imasim imasig``: security.ima signatures, as evmctl writes them and the kernel checks them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ParseError, UsageError
from ..keys.key import Key
from ..sig.xattr import parse_xattr, sign_xattr, verify_xattr
from ._args import add_json, hash_alg, verdict
from ._trust import load_private_key, trust_keyring

_EPILOG = """examples:
  imasim imasig sign --key key.pem --cert cert.der FILE --sig FILE.sig
  imasim imasig verify FILE --sig FILE.sig --trust cert.der [--json]
  imasim imasig show FILE.sig
(without --sig, verify and sign use the file's security.ima extended attribute)
exit codes: 0 success (verify: valid), 1 signature not valid, 2 bad input or usage
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("imasig", help="sign, verify and show security.ima signatures",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ss = p.add_subparsers(dest="imasig_command", metavar="SUBCOMMAND")
    s = ss.add_parser("sign", help="as evmctl ima_sign (signature v2, or --v3)")
    s.add_argument("file", type=Path)
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--cert", type=Path, help="the key id comes from its SKID (default: "
                   "SHA-1 of the public key, as evmctl)")
    s.add_argument("-a", "--hash", type=hash_alg, default="sha256")
    s.add_argument("--v3", action="store_true")
    s.add_argument("--sig", type=Path, help="write here instead of the xattr")
    s.set_defaults(func=_sign)
    v = ss.add_parser("verify", help="verify with the key found by key id (exit 0/1/2)")
    v.add_argument("file", type=Path)
    v.add_argument("--sig", type=Path)
    v.add_argument("--trust", type=Path, action="append", default=[],
                   help="certificate of the .ima keyring (repeatable)")
    add_json(v)
    v.set_defaults(func=_verify)
    sh = ss.add_parser("show", help="decode a security.ima value")
    sh.add_argument("value", type=Path)
    sh.set_defaults(func=_show)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _read_value(file: Path, sig: Path | None) -> bytes:
    if sig is not None:
        return sig.read_bytes()
    try:
        return os.getxattr(file, "security.ima")
    except OSError as exc:
        raise UsageError(f"{file}: no security.ima xattr ({exc.strerror}); use --sig") from None


def _sign(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    if args.cert:
        keyid = Key.from_certificate(args.cert.read_bytes()).key_id_v2
    else:
        keyid = Key.from_public_key(key.public_key(), description="key").key_id_v2
    alg = args.hash
    value = sign_xattr(alg.hash(args.file.read_bytes()), key=key, keyid=keyid, hash_alg=alg,
                       version=3 if args.v3 else 2)
    if args.sig:
        args.sig.write_bytes(value)
    else:
        os.setxattr(args.file, "security.ima", value)
    return 0


def _verify(args: argparse.Namespace) -> int:
    v = parse_xattr(_read_value(args.file, args.sig))
    if v.hash_algo is None:
        raise ParseError("no hash algorithm", field="hash_algo")
    digest, ring, alg = v.hash_algo.hash(args.file.read_bytes()), trust_keyring(args.trust,
                                                                                ".ima"), v.hash_algo

    def check() -> tuple[str, dict[str, object]]:
        key = verify_xattr(v, digest, keyring=ring)
        return f"{args.file}: valid, signed by {key.description!r}", {
            "file": str(args.file), "signer": key.description, "version": v.version,
            "keyid": v.keyid.hex(), "hash": alg.kernel_name, "digest": digest.hex()}

    return verdict(args, check)


def _show(args: argparse.Namespace) -> int:
    v = parse_xattr(args.value.read_bytes())
    print(f"type: {v.kind.name} ({v.kind.value:#04x})")
    if v.hash_algo is not None:
        print(f"hash: {v.hash_algo.kernel_name}")
    if v.is_signature:
        print(f"version: {v.version}\nkeyid: {v.keyid.hex()}\nsignature: {len(v.signature)} bytes")
    else:
        print(f"digest: {v.digest.hex()}")
    return 0


