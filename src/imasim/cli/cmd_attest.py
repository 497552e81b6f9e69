"""``imasim attest``: quote + AK + nonce + list (+ runtime policy) -> report.

Without a quote (``--pcrs`` alone) every check runs against PCR values nobody vouches
for, and the best verdict is CONSISTENT (exit 0, said as such), never TRUSTED.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ._args import hash_alg, hex_bytes


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "attest", help="verify a quote and a measurement list together",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  imasim attest -u ak.pem -m quote.msg -s quote.sig -f quote.pcrs -q 0011 \\\n"
        "      --list binary_runtime_measurements --policy runtime-policy.json --json\n"
        "  imasim attest --pcrs pcrs.json --list binary_runtime_measurements "
        "--policy runtime-policy.json   # no quote: unauthenticated",
        description="Checks the quote (signature, nonce, PCR digest: only the PCRs it covers "
        "are used), replays the list against them in every bank (entries in a PCR the "
        "quote does not cover fail), checks boot_aggregate against the quoted PCRs 0-9, and "
        "appraises the verified entries against a Keylime runtime policy and signature "
        "keys. Exit 0 trusted (or, without a quote, consistent), 1 not trusted, 2 bad input.")
    q = p.add_argument_group("the quote (as tpm2_quote writes it; tpm2_checkquote's options)")
    q.add_argument("-u", "--ak", type=Path, help="AK public key (PEM, DER or TPM2B_PUBLIC)")
    q.add_argument("-m", "--message", type=Path, help="TPMS_ATTEST file (tpm2_quote -m)")
    q.add_argument("-s", "--signature", type=Path,
                   help="TPMT_SIGNATURE or plain signature file (tpm2_quote -s)")
    q.add_argument("-f", "--pcr-file", type=Path, dest="pcr_file",
                   help="PCR file (tpm2_quote -o)")
    q.add_argument("-l", "--pcr-list", help="selection, when -f holds raw values "
                   "(e.g. sha256:0,1,2,10)")
    q.add_argument("-q", "--nonce", type=hex_bytes, help="the verifier's nonce, in hex")
    q.add_argument("-g", "--hash-algorithm", type=hash_alg, default=None,
                   help="hash of a plain signature (tpm2_quote -f plain; default sha256)")
    p.add_argument("--pcrs", type=Path, help="without a quote: PCR values read from the "
                   "machine (imasim log replay --json shape, or tpm2_pcrread output)")
    p.add_argument("--list", type=Path, required=True,
                   help="measurement list (binary, ASCII, or a 6.10+ per-bank list)")
    p.add_argument("--digest-alg", type=hash_alg, help="the list's template-digest "
                   "algorithm (default: found from the list; sha256 for "
                   "binary_runtime_measurements_sha256)")
    p.add_argument("--policy", type=Path, help="Keylime runtime policy JSON")
    p.add_argument("--trust", type=Path, action="append", default=[],
                   help="certificate whose key may sign files (repeatable; PEM or DER)")
    p.add_argument("--require-signatures", action="store_true",
                   help="every file entry must carry a signature that verifies")
    p.add_argument("--ignore-violations", action="store_true",
                   help="do not fail on violations (evmctl's --ignore-violations; Keylime "
                   "fails them)")
    p.add_argument("--ignore-pcr", type=int, action="append", default=[],
                   help="PCR whose entries need not be covered by the quote (repeatable)")
    p.add_argument("--eventlog", type=Path,
                   help="the firmware's TCG event log (binary_bios_measurements): it must "
                   "replay to the quoted PCRs")
    p.add_argument("--measured-boot", type=Path, metavar="REFSTATE",
                   help="judge the event log against a measured-boot reference state "
                   "(Keylime's refstate JSON; Secure Boot expected on)")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes replaying the banks in parallel (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_attest)


def _attest(args: argparse.Namespace) -> int:
    from ..attest import AttestationStatus, attest, attest_file
    from ..ima.codec import detect_list_kind
    from ..io import is_ascii_list, list_name_hint, load_pcrs_json, read_measurement_list
    from ..runtime_policy import RuntimePolicy
    from ..tpm.marshal import PcrSelection
    from ..tpm.verify import parse_pcr_file, parse_pcrread_yaml
    from ._progress import track
    from ._trust import trust_keyring

    quote_args = (args.ak, args.message, args.signature, args.pcr_file, args.nonce)
    quote: dict[str, Any] = {}
    if any(a is not None for a in quote_args):
        if any(a is None for a in quote_args):
            raise UsageError("a quote needs -u, -m, -s, -f and -q")
        if args.pcrs is not None:
            raise UsageError("--pcrs is for evidence without a quote; the quote has -f")
        sel = PcrSelection.from_string(args.pcr_list) if args.pcr_list else None
        _, values = parse_pcr_file(args.pcr_file.read_bytes(), sel)
        quote = {"quote_attest": args.message.read_bytes(),
                 "quote_signature": args.signature.read_bytes(),
                 "ak_public": args.ak.read_bytes(), "nonce": args.nonce,
                 "pcr_values": values}
        if args.hash_algorithm is not None:
            quote["quote_hash_alg"] = args.hash_algorithm
    elif args.pcrs is not None:
        data = args.pcrs.read_bytes()
        if data.lstrip()[:1] == b"{":
            quote = {"pcr_values": load_pcrs_json(data)}
        else:  # tpm2_pcrread's YAML
            quote = {"pcr_values": parse_pcrread_yaml(data).unauthenticated()}
    else:
        raise UsageError("give a quote (-u -m -s -f -q) or PCR values (--pcrs)")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    for i in args.ignore_pcr:
        if not 0 <= i < 24:
            raise UsageError(f"--ignore-pcr {i}: a PCR index is 0-23")
    reference = (RuntimePolicy.from_keylime_json(args.policy.read_bytes())
                 if args.policy else None)
    keyring = trust_keyring(args.trust, ".ima") if args.trust else None
    if args.require_signatures and keyring is None:
        raise UsageError("--require-signatures needs --trust CERT")
    options: dict[str, Any] = {
        "reference": reference, "ignore_violations": args.ignore_violations,
        "ignore_pcrs": args.ignore_pcr, **quote, **_firmware(args)}
    with args.list.open("rb") as f:
        head = f.read(1 << 16)
        if keyring is None and not is_ascii_list(head):
            # the fused path: matched and appraised in one streaming pass
            kind = detect_list_kind(head, digest_alg=args.digest_alg,
                                    hint=list_name_hint(args.list))
            f.seek(0)
            report = attest_file(f, digest_alg=kind.digest_alg, byte_order=kind.byte_order,
                                 jobs=args.jobs, **options)
        else:
            lst = read_measurement_list(args.list, digest_alg=args.digest_alg)
            report = attest(entries=track(lst, "attest"), signature_keyring=keyring,
                            require_signatures=args.require_signatures,
                            digest_alg=lst.digest_alg, **options)
    print(report.to_json() if args.json else report.summary())
    return 0 if report.status is not AttestationStatus.NOT_TRUSTED else 1


def _firmware(args: argparse.Namespace) -> dict[str, Any]:
    """``--eventlog`` and ``--measured-boot`` as attest() arguments (imported only when given)."""
    if args.eventlog is None:
        if args.measured_boot is not None:
            raise UsageError("--measured-boot needs --eventlog")
        return {}
    import json

    from ..errors import ParseError
    from ..eventlog import EventLog
    from ..eventlog.judge import ReferenceState

    out: dict[str, Any] = {"eventlog": EventLog.parse(args.eventlog.read_bytes())}
    if args.measured_boot is not None:
        try:
            doc = json.loads(args.measured_boot.read_bytes())
        except ValueError as exc:
            raise ParseError(f"measured-boot reference state is not JSON: {exc}",
                             field="measured-boot") from None
        if not isinstance(doc, dict):
            raise ParseError("the reference state must be a JSON object", field="measured-boot")
        out["measured_boot"] = ReferenceState.from_keylime(doc)
    return out
