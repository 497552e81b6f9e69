"""``imasim imasig``: security.ima signatures, as evmctl writes them and the kernel checks them."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ParseError, UnsupportedAlgorithmError, UsageError
from ..sig.xattr import XattrValue, parse_xattr, sign_xattr, verify_xattr
from ._args import add_json, hash_alg, verdict
from ._io import display_name, read_input, write_output
from ._trust import certificate_key, load_private_key, trust_keyring

_EPILOG = """examples:
  imasim imasig sign --key key.pem --cert cert.der FILE --sig FILE.sig
  imasim imasig verify FILE --sig FILE.sig --trust cert.der [--json]
  imasim imasig show FILE.sig [--json]
(without --sig, verify and sign use the file's security.ima extended attribute)
exit codes: 0 success (verify: valid), 1 signature not valid, 2 bad input or usage
"""
_RAW = argparse.RawDescriptionHelpFormatter
_VALUE = "a security.ima value (as evmctl or getfattr -e hex writes it, in binary)"
_CONTENT = "the file's content"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("imasig", help="sign, verify and show security.ima signatures",
                       epilog=_EPILOG, formatter_class=_RAW)
    ss = p.add_subparsers(dest="imasig_command", metavar="SUBCOMMAND")
    s = ss.add_parser("sign", help="as evmctl ima_sign (signature v2, or --v3)",
                      formatter_class=_RAW,
                      epilog="example: imasim imasig sign --key key.pem --cert cert.der FILE "
                      "--sig FILE.sig")
    s.add_argument("file", type=Path, help="the file whose content is signed")
    s.add_argument("--key", type=Path, required=True, help="the private key (PEM or DER)")
    s.add_argument("--cert", type=Path, help="the key id comes from its SKID (default: "
                   "SHA-1 of the public key, as evmctl)")
    s.add_argument("-a", "--hash", type=hash_alg, default="sha256",
                   help="digest of the content (default sha256)")
    s.add_argument("--v3", action="store_true",
                   help="signature version 3 (signs the hash of struct ima_file_id)")
    s.add_argument("--sig", type=Path, help="write here (- for stdout) instead of the xattr")
    s.set_defaults(func=_sign)
    v = ss.add_parser("verify", help="verify with the key found by key id (exit 0/1/2)",
                      formatter_class=_RAW,
                      epilog="example: imasim imasig verify FILE --sig FILE.sig --trust "
                      "cert.der --json")
    v.add_argument("file", type=Path, help="the file whose content was signed")
    v.add_argument("--sig", type=Path, help="the security.ima value (default: the file's "
                   "xattr); - for stdin")
    v.add_argument("--trust", type=Path, action="append", default=[],
                   help="certificate of the .ima keyring (repeatable)")
    add_json(v)
    v.set_defaults(func=_verify)
    sh = ss.add_parser("show", help="decode a security.ima value", formatter_class=_RAW,
                       epilog="example: imasim imasig show FILE.sig --json")
    sh.add_argument("value", type=Path, help="the security.ima value; - for stdin")
    add_json(sh, "the decoded value")
    sh.set_defaults(func=_show)


def _parse(path: Path, data: bytes) -> XattrValue:
    try:
        return parse_xattr(data)
    except UnsupportedAlgorithmError as exc:  # decoding: an unknown algorithm is bad input
        raise ParseError(f"{display_name(path)}: {exc}") from None


def _read_value(file: Path, sig: Path | None) -> XattrValue:
    if sig is not None:
        return _parse(sig, read_input(sig, _VALUE, ("data",)))
    try:
        value = os.getxattr(file, "security.ima")
    except OSError as exc:
        raise UsageError(f"{file}: no security.ima xattr ({exc.strerror}); use --sig") from None
    return _parse(file, value)


def _sign(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    if args.cert:
        keyid = certificate_key(args.cert).key_id_v2
    else:
        from ..keys.key import Key

        keyid = Key.from_public_key(key.public_key(), description="key").key_id_v2
    alg = args.hash
    content = read_input(args.file, _CONTENT, allow_empty=True)
    value = sign_xattr(alg.hash(content), key=key, keyid=keyid, hash_alg=alg,
                       version=3 if args.v3 else 2)
    if args.sig:
        write_output(args.sig, value)
    else:
        os.setxattr(args.file, "security.ima", value)
    return 0


def _verify(args: argparse.Namespace) -> int:
    v = _read_value(args.file, args.sig)
    if v.hash_algo is None:
        raise ParseError("no hash algorithm", field="hash_algo")
    alg = v.hash_algo
    digest = alg.hash(read_input(args.file, _CONTENT, allow_empty=True))
    ring = trust_keyring(args.trust, ".ima")

    def check() -> tuple[str, dict[str, object]]:
        key = verify_xattr(v, digest, keyring=ring)
        return f"{args.file}: valid, signed by {key.description!r}", {
            "file": str(args.file), "signer": key.description, "version": v.version,
            "keyid": v.keyid.hex(), "hash": alg.kernel_name, "digest": digest.hex()}

    return verdict(args, check)


def _show(args: argparse.Namespace) -> int:
    v = _parse(args.value, read_input(args.value, _VALUE, ("data",)))
    doc: dict[str, Any] = {"type": v.kind.name, "type_value": v.kind.value,
                           "hash": v.hash_algo.kernel_name if v.hash_algo else None}
    if v.is_signature:
        doc.update(version=v.version, keyid=v.keyid.hex(), signature_size=len(v.signature))
    else:
        doc["digest"] = v.digest.hex()
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"type: {v.kind.name} ({v.kind.value:#04x})")
    if v.hash_algo is not None:
        print(f"hash: {v.hash_algo.kernel_name}")
    if v.is_signature:
        print(f"version: {v.version}\nkeyid: {v.keyid.hex()}\nsignature: {len(v.signature)} bytes")
    else:
        print(f"digest: {v.digest.hex()}")
    return 0
