"""``imasim ipe``: check, evaluate and sign IPE policies; fs-verity and dm-verity digests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import UsageError
from ..ipe import FileProperties, Op, dm_verity_root_hash, evaluate, fsverity_digest
from ..ipe.policy import parse_ipe_policy
from ..sig.pkcs7 import sign_pkcs7

_EPILOG = """examples:
  imasim ipe check policy.pol
  imasim ipe eval policy.pol --op EXECUTE --prop boot_verified=TRUE
  imasim ipe eval policy.pol --op EXECUTE --prop fsverity_digest=sha256:$(...) --json
  imasim ipe sign policy.pol --key key.pem --cert cert.pem -o policy.p7b
  imasim ipe fsverity-digest FILE
  imasim ipe dmverity-roothash IMAGE --salt HEX
exit codes: 0 valid / allowed, 1 denied, 2 bad policy or usage"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("ipe", help="IPE policies: check, eval, sign; verity digests",
                       description="Integrity Policy Enforcement policies as the kernel "
                       "parses and evaluates them.", epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="ipe_command", metavar="SUBCOMMAND")
    c = s.add_parser("check", help="parse a policy; print it normalised, or the error")
    c.add_argument("policy", type=Path)
    c.set_defaults(func=_check)
    e = s.add_parser("eval", help="evaluate one event against a policy")
    e.add_argument("policy", type=Path)
    e.add_argument("--op", required=True, choices=[o.value for o in Op])
    e.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE",
                   help="a property of the file: boot_verified=TRUE, dmverity_signature=TRUE, "
                   "dmverity_roothash=ALG:HEX, fsverity_digest=ALG:HEX, fsverity_signature=TRUE")
    e.add_argument("--no-file", action="store_true", help="an event without a file")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_eval)
    g = s.add_parser("sign", help="sign a policy as `openssl smime -sign -nodetach -noattr` "
                     "does (what new_policy expects)")
    g.add_argument("policy", type=Path)
    g.add_argument("--key", type=Path, required=True)
    g.add_argument("--cert", type=Path, required=True)
    g.add_argument("-o", "--output", type=Path, required=True)
    g.set_defaults(func=_sign)
    f = s.add_parser("fsverity-digest", help="the fs-verity file digest (as `fsverity digest`)")
    f.add_argument("file", type=Path)
    f.set_defaults(func=_fsverity)
    d = s.add_parser("dmverity-roothash", help="the dm-verity root hash (as veritysetup)")
    d.add_argument("image", type=Path)
    d.add_argument("--salt", required=True, help="hex")
    d.set_defaults(func=_roothash)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def _fsverity(args: argparse.Namespace) -> int:
    name, digest = fsverity_digest(args.file.read_bytes())
    print(f"{name}:{digest.hex()}")
    return 0


def _check(args: argparse.Namespace) -> int:
    print(parse_ipe_policy(args.policy.read_bytes()).render(), end="")
    return 0


def _props(items: list[str], no_file: bool) -> FileProperties | None:
    if no_file:
        return None
    kw: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key in ("boot_verified", "dmverity_signature", "fsverity_signature"):
            if value not in ("TRUE", "FALSE"):
                raise UsageError(f"{key} is TRUE or FALSE")
            kw[key] = value == "TRUE"
        elif key in ("dmverity_roothash", "fsverity_digest"):
            alg, _, hexd = value.partition(":")
            try:
                kw[key] = (alg, bytes.fromhex(hexd))
            except ValueError:
                raise UsageError(f"{key} is ALG:HEX") from None
        else:
            raise UsageError(f"unknown property {key!r}")
    if kw.get("dmverity_signature") and "dmverity_roothash" not in kw:
        kw["dmverity_roothash"] = ("sha256", bytes(32))  # a signed volume has a root hash
    if kw.get("fsverity_signature") and "fsverity_digest" not in kw:
        kw["fsverity_digest"] = ("sha256", bytes(32))
    return FileProperties(**kw)


def _eval(args: argparse.Namespace) -> int:
    policy = parse_ipe_policy(args.policy.read_bytes())
    action, match, rule = evaluate(policy, Op(args.op), _props(args.prop, args.no_file))
    if args.json:
        print(json.dumps({"action": action.value, "match": match, "rule": rule}))
    else:
        print(f"{action.value} ({match}: {rule})")
    return 0 if action.value == "ALLOW" else 1


def _sign(args: argparse.Namespace) -> int:
    key = serialization.load_pem_private_key(args.key.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise UsageError("the key must be RSA or ECDSA")
    raw = args.cert.read_bytes()
    cert = (x509.load_pem_x509_certificate(raw) if raw.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(raw))
    text = args.policy.read_bytes()
    parse_ipe_policy(text)  # refuse to sign what the kernel would refuse to load
    args.output.write_bytes(sign_pkcs7(text, key=key, certificate=cert, detached=False,
                                       include_certificate=True))
    return 0


def _roothash(args: argparse.Namespace) -> int:
    try:
        salt = bytes.fromhex(args.salt)
    except ValueError:
        raise UsageError("--salt is hexadecimal") from None
    print(dm_verity_root_hash(args.image.read_bytes(), salt=salt).hex())
    return 0
