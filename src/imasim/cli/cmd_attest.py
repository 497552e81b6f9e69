"""``imasim attest``: quote + AK + nonce + list (+ runtime policy) -> report.

Without a quote (``--pcrs`` alone) every check runs against PCR values nobody vouches
for, and the best verdict is CONSISTENT (exit 0, said as such), never TRUSTED.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..algorithms import HashAlgorithm
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
    p.add_argument("--list", required=True,
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
                   "(Keylime's measured-boot refstate JSON)")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes replaying the banks in parallel (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_attest)


def _quote_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The quote's files (or the quote-less PCR values), read and parsed here so that a
    malformed or wrong file is bad input (exit 2), not a failed verification."""
    from ..io import load_pcrs_json
    from ..tpm.marshal import PcrSelection, parse_attest
    from ..tpm.verify import (
        load_ak_public,
        parse_pcr_file,
        parse_pcrread_yaml,
        read_signature,
    )
    from ._io import explained, read_input

    quote_args = (args.ak, args.message, args.signature, args.pcr_file, args.nonce)
    if any(a is not None for a in quote_args):
        if any(a is None for a in quote_args):
            raise UsageError("a quote needs -u, -m, -s, -f and -q")
        if args.pcrs is not None:
            raise UsageError("--pcrs is for evidence without a quote; the quote has -f")
        halg = args.hash_algorithm or HashAlgorithm.SHA256
        what = "a PCR file (tpm2_quote -o)"
        data = read_input(args.pcr_file, what, ("data", "text"))
        with explained(args.pcr_file, data, what):
            sel = PcrSelection.from_string(args.pcr_list) if args.pcr_list else None
            _, values = parse_pcr_file(data, sel)
        what = "a quote message (TPMS_ATTEST)"
        message = read_input(args.message, what, ("tpm-attest",))
        with explained(args.message, message, what):
            parse_attest(message)
        what = "an AK public key (PEM, DER or TPM2B_PUBLIC)"
        ak = read_input(args.ak, what, ("pem:public key", "pem:rsa public key",
                                         "der-public-key", "der"))
        with explained(args.ak, ak, what):
            load_ak_public(ak)
        what = "a quote signature (TPMT_SIGNATURE or plain)"
        signature = read_input(args.signature, what, ("der",))
        with explained(args.signature, signature, what):
            read_signature(signature, hash_alg=halg)
        return {"quote_attest": message, "quote_signature": signature, "ak_public": ak,
                "nonce": args.nonce, "pcr_values": values, "quote_hash_alg": halg}
    if args.pcrs is not None:
        what = "PCR values (pcrs.json or tpm2_pcrread output)"
        data = read_input(args.pcrs, what, ("json-pcrs", "json", "text", "data"))
        with explained(args.pcrs, data, what):
            if data.lstrip()[:1] == b"{":
                return {"pcr_values": load_pcrs_json(data)}
            return {"pcr_values": parse_pcrread_yaml(data).unauthenticated()}
    raise UsageError("give a quote (-u -m -s -f -q) or PCR values (--pcrs)")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a policy's hundreds of thousands of JSON
    containers are made (each one would count towards a collection that finds nothing)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _attest(args: argparse.Namespace) -> int:
    from ..attest import AttestationStatus, attest, attest_file
    from ..ima.codec import detect_list_kind
    from ..io import is_ascii_list, list_name_hint
    from ..runtime_policy import RuntimePolicy
    from ._io import explained, peek_input, read_input, read_list
    from ._progress import track

    quote = _quote_inputs(args)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    for i in args.ignore_pcr:
        if not 0 <= i < 24:
            raise UsageError(f"--ignore-pcr {i}: a PCR index is 0-23")
    reference = None
    if args.policy is not None:
        what = "a Keylime runtime policy (JSON)"
        data = read_input(args.policy, what, ("json-policy",))
        with explained(args.policy, data, what), _gc_paused():
            reference = RuntimePolicy.from_keylime_json(data)
    keyring = None
    if args.trust:
        from ._trust import trust_keyring

        keyring = trust_keyring(args.trust, ".ima")
    if args.require_signatures and keyring is None:
        raise UsageError("--require-signatures needs --trust CERT")
    options: dict[str, Any] = {
        "reference": reference, "ignore_violations": args.ignore_violations,
        "ignore_pcrs": args.ignore_pcr, **quote, **_firmware(args)}
    streamed = False
    if keyring is None and str(args.list) != "-":
        what = "a binary measurement list"
        head = peek_input(args.list, what, ("binary-list", "per-bank-list", "ascii-list",
                                            "json-list"))
        if not is_ascii_list(head) and head.lstrip()[:1] not in (b"{", b"["):
            # the fused path: matched and appraised in one streaming pass
            with explained(args.list, head, what):
                kind = detect_list_kind(head, digest_alg=args.digest_alg,
                                        hint=list_name_hint(args.list))
                with Path(args.list).open("rb") as f:
                    report = attest_file(f, digest_alg=kind.digest_alg,
                                         byte_order=kind.byte_order, jobs=args.jobs,
                                         **options)
            streamed = True
    if not streamed:
        lst = read_list(args.list, digest_alg=args.digest_alg)
        report = attest(entries=track(lst, "attest"), signature_keyring=keyring,
                        require_signatures=args.require_signatures,
                        digest_alg=lst.digest_alg, **options)
    print(report.to_json() if args.json else report.summary())
    if report.status is AttestationStatus.NOT_TRUSTED:
        print(f"imasim: not trusted: {report.reason}", file=sys.stderr)
        return 1
    return 0


def _firmware(args: argparse.Namespace) -> dict[str, Any]:
    """``--eventlog`` and ``--measured-boot`` as attest() arguments (imported only when given)."""
    if args.eventlog is None:
        if args.measured_boot is not None:
            raise UsageError("--measured-boot needs --eventlog")
        return {}
    from ..errors import ParseError
    from ..eventlog import EventLog
    from ..eventlog.judge import ReferenceState
    from ._io import explained, load_json, read_input

    what = "a TCG event log (binary_bios_measurements)"
    data = read_input(args.eventlog, what, ("eventlog",))
    with explained(args.eventlog, data, what):
        out: dict[str, Any] = {"eventlog": EventLog.parse(data)}
    if args.measured_boot is not None:
        ref_what = "a measured-boot reference state (Keylime refstate JSON)"
        doc = load_json(args.measured_boot, ref_what, ("json",))
        if not isinstance(doc, dict):
            raise ParseError(f"{args.measured_boot} is not a JSON object, expected {ref_what}")
        with explained(args.measured_boot, b"", ref_what):
            out["measured_boot"] = ReferenceState.from_keylime(doc)
    return out
