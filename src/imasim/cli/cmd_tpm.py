"""``imasim tpm``: the software TPM, spelled like tpm2-tools so scripts can switch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParseError, UsageError
from ..tpm.marshal import PcrSelection, SigScheme
from ..tpm.verify import write_pcr_file
from ._args import add_json, hash_alg, hash_algs, hex_bytes, verdict
from ._io import AK_PUBLIC, PCR_FILE, QUOTE_MESSAGE, QUOTE_SIGNATURE, explained, read_input

if TYPE_CHECKING:
    from ..tpm.soft_tpm import SoftTpm

_STATE = "a TPM state file (JSON, from 'imasim tpm init')"

_EPILOG = """examples:
  imasim tpm init --state tpm.json --banks sha1,sha256
  imasim tpm extend --state tpm.json 10:sha256=<64 hex>
  imasim tpm read --state tpm.json sha256:0,10 --json > pcrs.json
  imasim tpm ak --state tpm.json --alg ecc -u ak.pem
  imasim tpm quote --state tpm.json -l sha256:0,10 -q 0011 -m q.msg -s q.sig -o q.pcrs
  imasim tpm checkquote -u ak.pem -m q.msg -s q.sig -f q.pcrs -g sha256 -q 0011 --json
exit codes: 0 success (checkquote: verified), 1 quote not verified, 2 bad input or usage
"""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("tpm", help="a software TPM 2.0 spelled like tpm2-tools",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="A software TPM whose state lives in a JSON file.")
    ts = p.add_subparsers(dest="tpm_command", metavar="SUBCOMMAND")

    def state(q: argparse.ArgumentParser) -> None:
        q.add_argument("--state", type=Path, required=True,
                       help="the TPM state file (JSON, written by 'imasim tpm init')")

    def leaf(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return ts.add_parser(name, help=help, epilog=f"example: imasim tpm {example}",  # type: ignore[no-any-return]
                             formatter_class=argparse.RawDescriptionHelpFormatter)

    i = leaf("init", "a new TPM (Startup CLEAR)", "init --state tpm.json --banks sha1,sha256")
    state(i)
    i.add_argument("--banks", type=hash_algs, default="sha1,sha256",
                   help="PCR banks, comma-separated (default sha1,sha256)")
    i.add_argument("--locality", type=int, default=0, choices=(0, 3),
                   help="startup locality (PCR 0): 0 or 3")
    i.set_defaults(func=_init)
    e = leaf("extend", "as tpm2_pcrextend: PCR:ALG=HEX[,ALG=HEX]...",
             "extend --state tpm.json 10:sha256=$(sha256sum < file | cut -c1-64)")
    state(e)
    e.add_argument("spec", nargs="+", help="PCR:ALG=HEX[,ALG=HEX]... (repeatable)")
    e.add_argument("--locality", type=int, default=0, help="the locality of the command (0-4)")
    e.set_defaults(func=_extend)
    r = leaf("read", "as tpm2_pcrread: [ALG:PCRS[+ALG:PCRS]]",
             "read --state tpm.json sha256:0,10 --json > pcrs.json")
    state(r)
    r.add_argument("selection", nargs="?", help="ALG:PCRS[+ALG:PCRS], e.g. sha256:0,10 "
                   "(default: every PCR of every bank)")
    r.add_argument("--json", action="store_true",
                   help='print {"sha256": {"10": "<hex>"}} (what log check --pcrs reads)')
    r.set_defaults(func=_read)
    z = leaf("reset", "as tpm2_pcrreset: PCR (locality rules apply)",
             "reset --state tpm.json 16")
    state(z)
    z.add_argument("pcr", type=int, help="the PCR to reset (16 and 23 at locality 0)")
    z.add_argument("--locality", type=int, default=0, help="the locality of the command (0-4)")
    z.set_defaults(func=_reset)
    b = leaf("reboot", "power-cycle (Startup CLEAR) or soft reboot (kexec)",
             "reboot --state tpm.json --soft")
    state(b)
    b.add_argument("--soft", action="store_true",
                   help="a kexec: the TPM keeps running, PCRs keep their values")
    b.set_defaults(func=_reboot)
    su = leaf("startup", "_TPM_Init + TPM2_Startup (as tpm2_startup: -c CLEAR, else STATE)",
              "startup --state tpm.json -c")
    state(su)
    su.add_argument("-c", "--clear", action="store_true", help="Startup(CLEAR)")
    su.add_argument("--locality", type=int, choices=(0, 3), help="the startup locality")
    su.set_defaults(func=_startup)
    sd = leaf("shutdown", "TPM2_Shutdown (as tpm2_shutdown: -c CLEAR, else STATE)",
              "shutdown --state tpm.json")
    state(sd)
    sd.add_argument("-c", "--clear", action="store_true", help="Shutdown(CLEAR)")
    sd.set_defaults(func=_shutdown)
    a = leaf("ak", "create an attestation key (as tpm2_createak)",
             "ak --state tpm.json --alg ecc -u ak.pem --json")
    state(a)
    a.add_argument("--alg", choices=("rsa", "ecc"), default="rsa",
                   help="RSA-2048 or ECC P-256 (default rsa)")
    a.add_argument("--scheme", choices=("rsassa", "rsapss", "ecdsa"),
                   help="signature scheme (default: rsassa for RSA, ecdsa for ECC)")
    a.add_argument("--seed", help="derive the key from this text (deterministic)")
    a.add_argument("-u", "--public", type=Path, required=True, help="write the PEM here")
    a.add_argument("--tss", type=Path, help="also write the TPM2B_PUBLIC here")
    add_json(a, "the key's handle and names")
    a.set_defaults(func=_ak)
    q = leaf("quote", "as tpm2_quote",
             "quote --state tpm.json -l sha256:0,10 -q 0011 -m q.msg -s q.sig -o q.pcrs")
    state(q)
    q.add_argument("-c", "--key", help="AK handle (default: the last one created)")
    q.add_argument("-l", "--pcr-list", required=True,
                   help="the PCRs to quote, ALG:PCRS[+ALG:PCRS] (e.g. sha256:0,10)")
    q.add_argument("-q", "--qualification", type=hex_bytes, default=b"", help="nonce in hex")
    q.add_argument("-m", "--message", type=Path, required=True,
                   help="write the TPMS_ATTEST here")
    q.add_argument("-s", "--signature", type=Path, required=True,
                   help="write the TPMT_SIGNATURE here")
    q.add_argument("-o", "--pcr", type=Path, required=True,
                   help="write the PCR values here (tpm2_quote -o format)")
    q.add_argument("-g", "--hash-algorithm", type=hash_alg,
                   help="the signature's hash (default and only choice: the AK's, sha256)")
    add_json(q, "the quoted selection, PCR digest and nonce")
    q.set_defaults(func=_quote)
    c = ts.add_parser(
        "checkquote", help="as tpm2_checkquote (exit 0 verified, 1 not, 2 bad input)",
        description="Verifies a quote as tpm2_checkquote (tpm2-tools 5.7+) does and prints "
        "the PCR values its pcrDigest covers, labelled by the quote's own selection. A PCR "
        "file selecting other PCRs or banks than the quote is refused.",
        epilog="example: imasim tpm checkquote -u ak.pem -m q.msg -s q.sig -f q.pcrs "
        "-g sha256 -q 0011 --json", formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("-u", "--public", type=Path, required=True,
                   help="AK public key: PEM, DER or TPM2B_PUBLIC")
    c.add_argument("-m", "--message", type=Path, required=True, help="TPMS_ATTEST (tpm2_quote -m)")
    c.add_argument("-s", "--signature", type=Path, required=True,
                   help="TPMT_SIGNATURE or plain signature (tpm2_quote -s [-f plain])")
    c.add_argument("-f", "--pcr", type=Path, help="PCR file (tpm2_quote -o, tpm2_pcrread -o)")
    c.add_argument("-l", "--pcr-list", help="selection of a values-only PCR file")
    c.add_argument("-F", "--pcrs-format", default="serialized",
                   choices=("serialized", "values", "marshaled", "yaml"),
                   help="form of -f without -l (yaml: what tpm2_pcrread prints)")
    c.add_argument("-g", "--hash-algorithm", type=hash_alg, default="sha256",
                   help="hash of a plain signature (a TPMT_SIGNATURE names its own)")
    c.add_argument("-q", "--qualification", type=hex_bytes, default=b"",
                   help="the nonce the quote must carry, in hex")
    add_json(c)
    c.set_defaults(func=_checkquote)


def _load(path: Path) -> SoftTpm:
    from ..tpm.soft_tpm import SoftTpm

    data = read_input(path, _STATE, ("json-tpm-state",))
    with explained(path, data, _STATE):
        try:
            return SoftTpm.from_json(data)
        except RecursionError:
            raise ParseError("nested too deeply") from None


def _save(tpm: SoftTpm, path: Path) -> None:
    path.write_text(tpm.to_json())


def _init(args: argparse.Namespace) -> int:
    from ..tpm.soft_tpm import SoftTpm

    _save(SoftTpm(args.banks, startup_locality=args.locality), args.state)
    return 0


def _extend(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    for spec in args.spec:
        pcr_text, sep, rest = spec.partition(":")
        if not sep:
            raise UsageError(f"expected PCR:ALG=HEX, got {spec!r}")
        digests = {}
        try:
            for part in rest.split(","):
                alg, _, hexval = part.partition("=")
                digests[hash_alg(alg)] = bytes.fromhex(hexval)
            pcr = int(pcr_text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"expected PCR:ALG=HEX, got {spec!r} ({exc})") from None
        tpm.extend(pcr, digests, locality=args.locality)
    _save(tpm, args.state)
    return 0


def _read(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    sel = (PcrSelection.from_string(args.selection) if args.selection
           else PcrSelection({a: range(24) for a in tpm.banks}))
    if args.json:
        from ..io import dump_pcrs_json

        print(dump_pcrs_json({a: {i: tpm.read(a, i) for i in idx} for a, idx in sel.items()}))
        return 0
    for alg, idx in sel.items():
        print(f"  {alg.kernel_name}:")
        for i in idx:
            print(f"    {i:<2}: 0x{tpm.read(alg, i).hex().upper()}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    tpm.reset(args.pcr, locality=args.locality)
    _save(tpm, args.state)
    return 0


def _reboot(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    tpm.soft_reboot() if args.soft else tpm.power_cycle()
    _save(tpm, args.state)
    return 0


def _startup(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    tpm.startup(state=not args.clear, locality=args.locality)
    _save(tpm, args.state)
    return 0


def _shutdown(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    tpm.shutdown(state=not args.clear)
    _save(tpm, args.state)
    return 0


def _ak(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    scheme = SigScheme[args.scheme.upper()] if args.scheme else None
    handle = f"ak{len(tpm.keys)}"
    ak = tpm.create_ak(args.alg, seed=args.seed.encode() if args.seed else None, scheme=scheme,
                       handle=handle)
    args.public.write_bytes(ak.public_pem)
    if args.tss:
        args.tss.write_bytes(ak.tpm2b_public)
    _save(tpm, args.state)
    if args.json:
        import json

        print(json.dumps({"handle": handle, "alg": args.alg, "public": str(args.public),
                          "name": ak.name.hex(), "qualified_name": ak.qualified_name.hex()},
                         indent=1))
    else:
        print(f"name: {ak.name.hex()}\nqualified name: {ak.qualified_name.hex()}")
    return 0


def _quote(args: argparse.Namespace) -> int:
    tpm = _load(args.state)
    keys = tpm.keys
    if not keys:
        raise UsageError("no AK: run 'imasim tpm ak' first")
    if args.key and args.key not in keys:
        raise UsageError(f"no AK {args.key!r}; the TPM has {', '.join(keys)}")
    ak = keys[args.key] if args.key else list(keys.values())[-1]
    q = tpm.quote(ak, PcrSelection.from_string(args.pcr_list), args.qualification,
                  hash_alg=args.hash_algorithm)
    args.message.write_bytes(q.attest)
    args.signature.write_bytes(q.signature)
    args.pcr.write_bytes(write_pcr_file(q.selection, [v for _, _, v in q.pcr_values]))
    _save(tpm, args.state)
    if args.json:
        import json

        print(json.dumps({"key": args.key or next(h for h, k in keys.items() if k is ak),
                          "nonce": args.qualification.hex(),
                          "pcrs": {a.kernel_name: {str(i): v.hex() for i, v in b.items()}
                                   for a, b in q.values_by_bank().items()},
                          "message": str(args.message), "signature": str(args.signature),
                          "pcr_file": str(args.pcr)}, indent=1))
    return 0


def _checkquote(args: argparse.Namespace) -> int:
    from ..tpm.verify import parse_pcrread_yaml, read_pcr_file, read_signature, verify_quote

    pcrs = None
    if args.pcr:
        data = read_input(args.pcr, *PCR_FILE)
        if args.pcrs_format == "yaml" and not args.pcr_list:
            pcrs = parse_pcrread_yaml(data)
        else:
            pcrs = read_pcr_file(data, selection=args.pcr_list,
                                 form="serialized" if args.pcrs_format == "yaml"
                                 else args.pcrs_format)
    message = read_input(args.message, *QUOTE_MESSAGE)
    public = read_input(args.public, *AK_PUBLIC)
    signature = read_signature(read_input(args.signature, *QUOTE_SIGNATURE),
                               hash_alg=args.hash_algorithm)

    def check() -> tuple[str, dict[str, Any]]:
        v = verify_quote(message, signature, public, nonce=args.qualification, pcrs=pcrs)
        lines = ["quote verified"]
        if pcrs is not None:
            lines.append("pcrs:")
            for alg, bank in v.pcrs.items():
                lines.append(f"  {alg.kernel_name}:")
                lines += [f"    {i:<2}: 0x{val.hex().upper()}" for i, val in bank.items()]
        return "\n".join(lines), {
            "nonce": args.qualification.hex(), "scheme": v.scheme.name.lower(),
            "hash": v.hash_alg.kernel_name,
            "pcr_select": {a.kernel_name: list(i) for a, i in v.attest.pcr_select.items()},
            "pcr_digest": v.attest.pcr_digest.hex(), "pcr_values_checked": pcrs is not None,
            "pcrs": v.pcrs.to_dict()}

    return verdict(args, check)
