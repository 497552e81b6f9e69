"""``imasim modsig``: appended (module) signatures, as the kernel and sign-file see them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ParseError
from ..sig.modsig import parse_modsig, sign_module, split_modsig, verify_modsig
from ._args import add_json, hash_alg, verdict
from ._io import read_input, write_output
from ._show import signer, signer_line
from ._trust import load_certificate, load_private_key, trust_keyring

_EPILOG = """examples:
  imasim modsig sign --key key.pem --cert cert.der module.ko -o signed.ko
  imasim modsig verify signed.ko --trust cert.der [--json]
  imasim modsig show signed.ko [--json]
  imasim modsig strip signed.ko -o unsigned.ko
exit codes: 0 success (verify: valid), 1 not signed or not valid, 2 bad input or usage
"""
_ANY = "a file (a module or a kernel image, signed or not)"
_SIGNED = "a file with an appended signature"
_RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("modsig", help="sign, verify, show and strip appended signatures",
                       epilog=_EPILOG, formatter_class=_RAW)
    ms = p.add_subparsers(dest="modsig_command", metavar="SUBCOMMAND")
    s = ms.add_parser("sign", help="sign as scripts/sign-file does", formatter_class=_RAW,
                      epilog="example: imasim modsig sign --key key.pem --cert cert.der "
                      "module.ko -o signed.ko")
    s.add_argument("file", type=Path, help="the module to sign (an existing signature is "
                   "replaced); - for stdin")
    s.add_argument("--key", type=Path, required=True, help="the private key (PEM or DER)")
    s.add_argument("--cert", type=Path, required=True,
                   help="the signer's certificate (PEM or DER)")
    s.add_argument("--hash", type=hash_alg, default="sha256", help="digest (default sha256)")
    s.add_argument("-k", "--key-id", action="store_true", help="identify the signer by SKID")
    s.add_argument("-i", "--include-cert", action="store_true",
                   help="put the certificate into the PKCS#7 message")
    s.add_argument("-o", "--output", type=Path, help="where to write (- for stdout; "
                   "default: sign in place)")
    s.set_defaults(func=_sign)
    v = ms.add_parser("verify", help="verify against --trust certificates (exit 0/1/2)",
                      formatter_class=_RAW,
                      epilog="example: imasim modsig verify signed.ko --trust cert.der --json")
    v.add_argument("file", type=Path, help="the signed file; - for stdin")
    v.add_argument("--trust", type=Path, action="append", default=[],
                   help="certificate of the trusted keyring (repeatable)")
    add_json(v)
    v.set_defaults(func=_verify)
    sh = ms.add_parser("show", help="describe the signature", formatter_class=_RAW,
                       epilog="example: imasim modsig show signed.ko --json")
    sh.add_argument("file", type=Path, help="the signed file; - for stdin")
    add_json(sh, "the description")
    sh.set_defaults(func=_show)
    st = ms.add_parser("strip", help="write the file without its signature",
                       formatter_class=_RAW,
                       epilog="example: imasim modsig strip signed.ko -o unsigned.ko")
    st.add_argument("file", type=Path, help="the signed file; - for stdin")
    st.add_argument("-o", "--output", type=Path, required=True,
                    help="where to write the unsigned file (- for stdout)")
    st.set_defaults(func=_strip)


def _sign(args: argparse.Namespace) -> int:
    data = read_input(args.file, _ANY, allow_empty=True)
    split = split_modsig(data)
    payload = split[0] if split else data
    out = sign_module(payload, key=load_private_key(args.key),
                      certificate=load_certificate(args.cert),
                      hash_alg=args.hash, use_key_id=args.key_id,
                      include_certificate=args.include_cert)
    write_output(args.output or args.file, out)
    return 0


def _verify(args: argparse.Namespace) -> int:
    data = read_input(args.file, _SIGNED)
    ring = trust_keyring(args.trust)

    def check() -> tuple[str, dict[str, object]]:
        v = verify_modsig(data, keyring=ring)
        return f"{args.file}: valid, signed by {v.trusted_key.description!r}", {
            "file": str(args.file), "signer": v.trusted_key.description}

    return verdict(args, check)


def _show(args: argparse.Namespace) -> int:
    payload, sig = parse_modsig(read_input(args.file, _SIGNED))
    si = sig.signed_data.signer_infos[0]
    doc = {"file": str(args.file), "payload_size": len(payload), "pkcs7_size": len(sig.pkcs7),
           "certificates": len(sig.signed_data.certificates), "signer": signer(si),
           "hash": si.digest_alg.kernel_name if si.digest_alg else si.digest_oid,
           "signed_attributes": si.signed_attrs is not None}
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"payload: {len(payload)} bytes\nPKCS#7: {len(sig.pkcs7)} bytes, "
          f"{len(sig.signed_data.certificates)} certificate(s)\n"
          f"signer: {signer_line(si)}\nhash: {doc['hash']}\n"
          f"signed attributes: {'yes' if si.signed_attrs else 'no'}")
    return 0


def _strip(args: argparse.Namespace) -> int:
    split = split_modsig(read_input(args.file, _SIGNED))
    if split is None:
        raise ParseError(f"{args.file}: not signed (no appended signature marker)")
    write_output(args.output, split[0])
    return 0
