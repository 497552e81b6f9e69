"""``imasim pe``: PE/COFF Authenticode images (kexec kernels, EFI binaries)."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from ..algorithms import HashAlgorithm
from ..errors import UsageError
from ..keys.keyring import Blacklist
from ..sig.authenticode import (
    DigestRules,
    SignMode,
    VerifyRules,
    WrapperRules,
    authenticode_digest,
    parse_authenticode,
    parse_certificate_table,
    sign_pe,
    verify_authenticode,
)
from ..sig.pefile import parse_pe, pe_checksum
from ._args import add_json, hash_alg, verdict
from ._io import read_input, write_output
from ._show import signer, signer_line
from ._trust import load_certificate, load_private_key, trust_keyring

_EPILOG = """examples:
  imasim pe digest vmlinuz --alg sha256
  imasim pe verify vmlinuz --trust debian-secure-boot-ca.pem [--json]
  imasim pe verify vmlinuz --trust mok.pem --platform db.pem      (kexec: secondary, then platform)
  imasim pe sign app.efi --key key.pem --cert cert.pem -o app.signed.efi
  imasim pe sign app.signed.efi --key k2.pem --cert c2.pem --nest -o app.twice.efi
  imasim pe show shimx64.efi.signed [--json]
exit codes: 0 success (verify: valid), 1 not signed or not valid, 2 bad input or usage
"""


_RAW = argparse.RawDescriptionHelpFormatter
_PE = "a PE/COFF image"
_IMAGE = "the PE/COFF image (an EFI binary, a kernel with an EFI stub); - for stdin"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("pe", help="Authenticode PE images: digest, verify, sign, show",
                       epilog=_EPILOG, formatter_class=_RAW)
    ps = p.add_subparsers(dest="pe_command", metavar="SUBCOMMAND")
    d = ps.add_parser("digest", help="print the Authenticode image hash (hex)",
                      formatter_class=_RAW, epilog="example: imasim pe digest vmlinuz --alg "
                      "sha256   (= pesign -h, sbverify, osslsigncode with --rules flat)")
    d.add_argument("file", type=Path, help=_IMAGE)
    d.add_argument("--alg", type=hash_alg, default="sha256",
                   help="sha1, sha224, sha256, sha384, sha512")
    d.add_argument("--rules", choices=[r.value for r in DigestRules], default="kernel",
                   help="kernel (= pesign, sbsign, the spec) or flat (= osslsigncode)")
    add_json(d, "the digest")
    d.set_defaults(func=_digest)
    v = ps.add_parser("verify", help="verify as kexec_file_load does (exit 0/1/2)",
                      formatter_class=_RAW,
                      epilog="example: imasim pe verify vmlinuz --trust mok.pem --platform "
                      "db.pem --json")
    v.add_argument("file", type=Path, help=_IMAGE)
    v.add_argument("--trust", type=Path, action="append", default=[],
                   help="certificate of the secondary keyring (repeatable)")
    v.add_argument("--platform", type=Path, action="append", default=[],
                   help="certificate of the .platform keyring, tried on -ENOKEY")
    v.add_argument("--rules", choices=[r.value for r in VerifyRules], default="kernel",
                   help="kernel (the first signature, as kexec) or uefi (any signature, "
                   "with the dbx hashes)")
    v.add_argument("--dbx", action="append", default=[], metavar="HEX",
                   help="an image hash on the blacklist (bin:), checked with --rules uefi")
    v.add_argument("--strict-wrapper", action="store_true",
                   help="the wrapper length check of kernels before 6.3")
    add_json(v)
    v.set_defaults(func=_verify)
    s = ps.add_parser("sign", help="sign as sbsign does (--nest: as osslsigncode -nest)",
                      formatter_class=_RAW,
                      epilog="example: imasim pe sign app.efi --key key.pem --cert cert.pem "
                      "-o app.signed.efi")
    s.add_argument("file", type=Path, help=_IMAGE)
    s.add_argument("--key", type=Path, required=True, help="the private key (PEM or DER)")
    s.add_argument("--cert", type=Path, required=True,
                   help="the signer's certificate (PEM or DER)")
    s.add_argument("--hash", type=hash_alg, default="sha256",
                   help="the Authenticode digest (default sha256)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--nest", action="store_true", help="add a nested signature")
    how.add_argument("--append", action="store_true", help="add a WIN_CERTIFICATE entry")
    how.add_argument("--replace", action="store_true", help="drop existing signatures")
    s.add_argument("--no-signing-time", action="store_true",
                   help="leave out the signingTime attribute (reproducible output)")
    s.add_argument("-o", "--output", type=Path, required=True,
                   help="the signed image (- for stdout)")
    s.set_defaults(func=_sign)
    sh = ps.add_parser("show", help="headers, sections, certificate table, signatures",
                       formatter_class=_RAW,
                       epilog="example: imasim pe show shimx64.efi.signed --json")
    sh.add_argument("file", type=Path, help=_IMAGE)
    add_json(sh, "the description")
    sh.set_defaults(func=_show)


def _digest(args: argparse.Namespace) -> int:
    digest = authenticode_digest(read_input(args.file, _PE, ("pe",)), args.alg,
                                 rules=DigestRules(args.rules)).hex()
    if args.json:
        print(json.dumps({"file": str(args.file), "hash": args.alg.kernel_name,
                          "rules": args.rules, "digest": digest}, indent=1))
    else:
        print(digest)
    return 0


def _verify(args: argparse.Namespace) -> int:
    if not args.trust and not args.platform:
        raise UsageError("give at least one --trust or --platform CERT")
    rings = []
    if args.trust:
        rings.append(trust_keyring(args.trust, ".secondary_trusted_keys"))
    if args.platform:
        rings.append(trust_keyring(args.platform, ".platform"))
    blacklist = Blacklist()
    for h in args.dbx:
        try:
            blacklist.add_binary_hash(bytes.fromhex(h))
        except ValueError:
            raise UsageError(f"--dbx {h!r} is not hex") from None
    data = read_input(args.file, _PE, ("pe",))

    def check() -> tuple[str, dict[str, object]]:
        v = verify_authenticode(
            data, keyrings=rings, blacklist=blacklist, rules=VerifyRules(args.rules),
            wrapper=WrapperRules.STRICT if args.strict_wrapper else WrapperRules.RELAXED)
        signer = v.signature.trusted_key.description
        return (f"{args.file}: valid, {v.digest_alg.kernel_name} {v.digest.hex()}, signed by "
                f"{signer!r} in {v.keyring}"), {
            "file": str(args.file), "hash": v.digest_alg.kernel_name, "digest": v.digest.hex(),
            "signer": signer, "keyring": v.keyring}

    return verdict(args, check)


def _sign(args: argparse.Namespace) -> int:
    mode = (SignMode.NEST if args.nest else SignMode.APPEND if args.append
            else SignMode.REPLACE if args.replace else SignMode.NEW)
    when = None if args.no_signing_time else datetime.datetime.now(datetime.UTC)
    out = sign_pe(read_input(args.file, _PE, ("pe",)), key=load_private_key(args.key),
                  certificate=load_certificate(args.cert),
                  hash_alg=args.hash, mode=mode, signing_time=when)
    write_output(args.output, out)
    return 0


def _show(args: argparse.Namespace) -> int:
    data = read_input(args.file, _PE, ("pe",))
    img = parse_pe(data)
    csum = pe_checksum(data, img.checksum_offset)
    d = img.certificate_directory
    doc: dict[str, Any] = {
        "file": str(args.file), "magic": img.magic.name, "machine": img.machine,
        "subsystem": img.subsystem, "size": len(data), "size_of_headers": img.size_of_headers,
        "checksum": img.checksum, "checksum_computed": csum,
        "section_table_offset": img.section_table_offset,
        "spec_section_table_offset": img.spec_section_table_offset,
        "sections": [{"name": s.name_text, "pointer_to_raw_data": s.pointer_to_raw_data,
                      "size_of_raw_data": s.size_of_raw_data,
                      "virtual_address": s.virtual_address, "virtual_size": s.virtual_size}
                     for s in img.sections],
        "certificate_table": ({"offset": d.virtual_address, "size": d.size}
                              if d is not None and img.is_signed else None),
        "authenticode": {a.kernel_name: authenticode_digest(img, a).hex()
                         for a in (HashAlgorithm.SHA256,)},
        "win_certificates": [{"offset": wc.offset, "length": wc.length,
                              "revision": wc.revision, "type": wc.certificate_type}
                             for wc in parse_certificate_table(img)],
        "signatures": []}
    sigs = parse_authenticode(img)
    for sig in sigs:
        spc = sig.indirect_data
        doc["signatures"].append({
            "entry": sig.entry, "nested": sig.nested,
            "hash": spc.digest_alg.kernel_name if spc.digest_alg else spc.digest_oid,
            "digest": spc.digest.hex(),
            "certificates": len(sig.signed_data.certificates),
            "signer": signer(sig.signed_data.signer_infos[0])})
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{args.file}: {img.magic.name}, machine {img.machine:#06x}, "
          f"subsystem {img.subsystem}, {len(data)} bytes")
    print(f"SizeOfHeaders {img.size_of_headers:#x}, CheckSum {img.checksum:#010x} "
          f"(computed {csum:#010x}{'' if csum == img.checksum else ', differs'})")
    if img.section_table_offset != img.spec_section_table_offset:
        print(f"note: SizeOfOptionalHeader puts the section table at "
              f"{img.spec_section_table_offset:#x}; the kernel reads it at "
              f"{img.section_table_offset:#x}")
    print("sections:")
    for s in img.sections:
        print(f"  {s.name_text:<8} raw {s.pointer_to_raw_data:#010x} +{s.size_of_raw_data:#x}"
              f"  va {s.virtual_address:#x} +{s.virtual_size:#x}")
    if doc["certificate_table"] is not None:
        print(f"certificate table: {d.virtual_address:#x} +{d.size:#x}")  # type: ignore[union-attr]
    for name, value in doc["authenticode"].items():
        print(f"authenticode {name}: {value}")
    for i, wc in enumerate(doc["win_certificates"]):
        print(f"WIN_CERTIFICATE[{i}] at {wc['offset']:#x}: dwLength {wc['length']}, revision "
              f"{wc['revision']:#06x}, type {wc['type']:#06x}")
    for sig, shown in zip(sigs, doc["signatures"], strict=True):
        where = f"[{sig.entry}]" + (f" nested[{sig.nested}]" if sig.nested else "")
        print(f"signature {where}: {shown['hash']} {shown['digest']}, "
              f"{shown['certificates']} certificate(s), signer "
              f"{signer_line(sig.signed_data.signer_infos[0])}")
    return 0
