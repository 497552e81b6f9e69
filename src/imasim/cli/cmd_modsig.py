"""``imasim modsig``: appended (module) signatures, as the kernel and sign-file see them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ParseError
from ..sig.modsig import parse_modsig, sign_module, split_modsig, verify_modsig
from ._args import add_json, hash_alg, verdict
from ._trust import load_certificate, load_private_key, trust_keyring

_EPILOG = """examples:
  imasim modsig sign --key key.pem --cert cert.der module.ko -o signed.ko
  imasim modsig verify signed.ko --trust cert.der [--json]
  imasim modsig show signed.ko
  imasim modsig strip signed.ko -o unsigned.ko
exit codes: 0 success (verify: valid), 1 not signed or not valid, 2 bad input or usage
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("modsig", help="sign, verify, show and strip appended signatures",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ms = p.add_subparsers(dest="modsig_command", metavar="SUBCOMMAND")
    s = ms.add_parser("sign", help="sign as scripts/sign-file does")
    s.add_argument("file", type=Path)
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--cert", type=Path, required=True)
    s.add_argument("--hash", type=hash_alg, default="sha256")
    s.add_argument("-k", "--key-id", action="store_true", help="identify the signer by SKID")
    s.add_argument("-i", "--include-cert", action="store_true")
    s.add_argument("-o", "--output", type=Path, help="default: sign in place")
    s.set_defaults(func=_sign)
    v = ms.add_parser("verify", help="verify against --trust certificates (exit 0/1/2)")
    v.add_argument("file", type=Path)
    v.add_argument("--trust", type=Path, action="append", default=[],
                   help="certificate of the trusted keyring (repeatable)")
    add_json(v)
    v.set_defaults(func=_verify)
    sh = ms.add_parser("show", help="describe the signature")
    sh.add_argument("file", type=Path)
    sh.set_defaults(func=_show)
    st = ms.add_parser("strip", help="write the file without its signature")
    st.add_argument("file", type=Path)
    st.add_argument("-o", "--output", type=Path, required=True)
    st.set_defaults(func=_strip)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _sign(args: argparse.Namespace) -> int:
    data = args.file.read_bytes()
    split = split_modsig(data)
    payload = split[0] if split else data
    out = sign_module(payload, key=load_private_key(args.key),
                      certificate=load_certificate(args.cert),
                      hash_alg=args.hash, use_key_id=args.key_id,
                      include_certificate=args.include_cert)
    (args.output or args.file).write_bytes(out)
    return 0


def _verify(args: argparse.Namespace) -> int:
    data = args.file.read_bytes()
    ring = trust_keyring(args.trust)

    def check() -> tuple[str, dict[str, object]]:
        v = verify_modsig(data, keyring=ring)
        return f"{args.file}: valid, signed by {v.trusted_key.description!r}", {
            "file": str(args.file), "signer": v.trusted_key.description}

    return verdict(args, check)


def _show(args: argparse.Namespace) -> int:
    payload, sig = parse_modsig(args.file.read_bytes())
    si = sig.signed_data.signer_infos[0]
    print(f"payload: {len(payload)} bytes\nPKCS#7: {len(sig.pkcs7)} bytes, "
          f"{len(sig.signed_data.certificates)} certificate(s)\n"
          f"signer: {'SKID' if si.by_skid else 'issuer+serial'} {si.auth_id.hex()}\n"
          f"hash: {si.digest_alg.kernel_name if si.digest_alg else si.digest_oid}\n"
          f"signed attributes: {'yes' if si.signed_attrs else 'no'}")
    return 0


def _strip(args: argparse.Namespace) -> int:
    split = split_modsig(args.file.read_bytes())
    if split is None:
        print(f"{args.file}: not signed", file=sys.stderr)
        raise ParseError("no appended signature", field="marker")
    args.output.write_bytes(split[0])
    return 0
