"""``imasim ipe``: check, evaluate and sign IPE policies; fs-verity and dm-verity digests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..ipe import FileProperties, Op, dm_verity_root_hash, evaluate, fsverity_digest
from ..ipe.policy import parse_ipe_policy
from ..sig.pkcs7 import sign_pkcs7
from ._args import add_json
from ._io import explained, read_input, write_output
from ._trust import load_certificate, load_private_key

_EPILOG = """examples:
  imasim ipe check policy.pol
  imasim ipe eval policy.pol --op EXECUTE --prop boot_verified=TRUE
  imasim ipe eval policy.pol --op EXECUTE --prop fsverity_digest=sha256:$(...) --json
  imasim ipe sign policy.pol --key key.pem --cert cert.pem -o policy.p7b
  imasim ipe fsverity-digest FILE
  imasim ipe dmverity-roothash IMAGE --salt HEX
exit codes: 0 valid / allowed, 1 denied, 2 bad policy or usage"""


_RAW = argparse.RawDescriptionHelpFormatter
_POLICY = "an IPE policy (text)"
_POLICY_HELP = "the policy text, as written to /sys/kernel/security/ipe/new_policy; - for stdin"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("ipe", help="IPE policies: check, eval, sign; verity digests",
                       description="Integrity Policy Enforcement policies as the kernel "
                       "parses and evaluates them.", epilog=_EPILOG, formatter_class=_RAW)
    s = p.add_subparsers(dest="ipe_command", metavar="SUBCOMMAND")
    c = s.add_parser("check", help="parse a policy; print it normalised, or the error",
                     formatter_class=_RAW, epilog="example: imasim ipe check policy.pol")
    c.add_argument("policy", type=Path, help=_POLICY_HELP)
    add_json(c, "the policy's name, version and normalised text")
    c.set_defaults(func=_check)
    e = s.add_parser("eval", help="evaluate one event against a policy", formatter_class=_RAW,
                     epilog="example: imasim ipe eval policy.pol --op EXECUTE --prop "
                     "boot_verified=TRUE --json")
    e.add_argument("policy", type=Path, help=_POLICY_HELP)
    e.add_argument("--op", required=True, choices=[o.value for o in Op],
                   help="the operation of the event")
    e.add_argument("--prop", action="append", default=[], metavar="KEY=VALUE",
                   help="a property of the file: boot_verified=TRUE, dmverity_signature=TRUE, "
                   "dmverity_roothash=ALG:HEX, fsverity_digest=ALG:HEX, fsverity_signature=TRUE")
    e.add_argument("--no-file", action="store_true", help="an event without a file")
    add_json(e, "the decision")
    e.set_defaults(func=_eval)
    g = s.add_parser("sign", help="sign a policy as `openssl smime -sign -nodetach -noattr` "
                     "does (what new_policy expects)", formatter_class=_RAW,
                     epilog="example: imasim ipe sign policy.pol --key key.pem --cert "
                     "cert.pem -o policy.p7b")
    g.add_argument("policy", type=Path, help=_POLICY_HELP)
    g.add_argument("--key", type=Path, required=True, help="the private key (PEM or DER)")
    g.add_argument("--cert", type=Path, required=True,
                   help="the signer's certificate (PEM or DER)")
    g.add_argument("-o", "--output", type=Path, required=True,
                   help="the signed policy, PKCS#7 DER (- for stdout)")
    g.set_defaults(func=_sign)
    f = s.add_parser("fsverity-digest", help="the fs-verity file digest (as `fsverity digest`)",
                     formatter_class=_RAW, epilog="example: imasim ipe fsverity-digest "
                     "/usr/bin/true")
    f.add_argument("file", type=Path, help="the file (any content); - for stdin")
    add_json(f, "the digest")
    f.set_defaults(func=_fsverity)
    d = s.add_parser("dmverity-roothash", help="the dm-verity root hash (as veritysetup)",
                     formatter_class=_RAW, epilog="example: imasim ipe dmverity-roothash "
                     "rootfs.img --salt 00ff")
    d.add_argument("image", type=Path, help="the data device image; - for stdin")
    d.add_argument("--salt", required=True, help="the salt, in hex (as veritysetup --salt)")
    add_json(d, "the root hash")
    d.set_defaults(func=_roothash)


def _print(args: argparse.Namespace, text: str, doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=1) if args.json else text)


def _policy(path: Path) -> tuple[bytes, Any]:
    data = read_input(path, _POLICY, ("ipe-policy",))
    with explained(path, data, _POLICY):
        return data, parse_ipe_policy(data)


def _fsverity(args: argparse.Namespace) -> int:
    name, digest = fsverity_digest(read_input(args.file, "a file", allow_empty=True))
    _print(args, f"{name}:{digest.hex()}", {"file": str(args.file), "hash": name,
                                           "digest": digest.hex()})
    return 0


def _check(args: argparse.Namespace) -> int:
    _, policy = _policy(args.policy)
    text = policy.render()
    if args.json:
        print(json.dumps({"valid": True, "name": policy.name, "version": policy.version_text,
                          "policy": text}, indent=1))
    else:
        print(text, end="")
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
    _, policy = _policy(args.policy)
    action, match, rule = evaluate(policy, Op(args.op), _props(args.prop, args.no_file))
    _print(args, f"{action.value} ({match}: {rule})",
           {"action": action.value, "match": match, "rule": rule})
    return 0 if action.value == "ALLOW" else 1


def _sign(args: argparse.Namespace) -> int:
    key, cert = load_private_key(args.key), load_certificate(args.cert)
    text, _ = _policy(args.policy)  # refuse to sign what the kernel would refuse to load
    write_output(args.output, sign_pkcs7(text, key=key, certificate=cert, detached=False,
                                         include_certificate=True))
    return 0


def _roothash(args: argparse.Namespace) -> int:
    try:
        salt = bytes.fromhex(args.salt)
    except ValueError:
        raise UsageError("--salt is hexadecimal") from None
    root = dm_verity_root_hash(read_input(args.image, "a data device image"), salt=salt).hex()
    _print(args, root, {"image": str(args.image), "salt": salt.hex(), "root_hash": root})
    return 0
