"""``imasim attest``: quote + AK + nonce + list (+ reference values) -> report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..attest import ReferenceValues, attest
from ..errors import UsageError
from ..io import read_measurement_list
from ..tpm.marshal import PcrSelection
from ..tpm.verify import parse_pcr_file
from ._args import hex_bytes
from ._progress import track


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "attest", help="verify a quote and a measurement list together",
        epilog="example: imasim attest -u ak.pem -m quote.msg -s quote.sig -f quote.pcrs "
        "-q 0011 --list binary_runtime_measurements --policy runtime-policy.json --json",
        description="Checks the quote (signature, nonce, PCR digest), replays the list "
        "against the quoted PCRs in every bank, checks boot_aggregate, and appraises the "
        "entries against reference values (a Keylime runtime policy). Exit 0 trusted, "
        "1 not trusted, 2 bad input.")
    p.add_argument("-u", "--ak", type=Path, required=True, help="AK public key (PEM or TPM2B)")
    p.add_argument("-m", "--message", type=Path, required=True, help="TPMS_ATTEST file")
    p.add_argument("-s", "--signature", type=Path, required=True, help="TPMT_SIGNATURE file")
    p.add_argument("-f", "--pcrs", type=Path, required=True, help="PCR file (tpm2_quote -o)")
    p.add_argument("-l", "--pcr-list", help="selection, when -f holds raw values")
    p.add_argument("-q", "--nonce", type=hex_bytes, required=True, help="nonce in hex")
    p.add_argument("--list", type=Path, required=True, help="measurement list (binary/ASCII)")
    p.add_argument("--policy", type=Path, help="Keylime runtime policy JSON")
    p.add_argument("--eventlog", type=Path,
                   help="the firmware's TCG event log (binary_bios_measurements): it must "
                   "replay to the quoted PCRs")
    p.add_argument("--measured-boot", type=Path, metavar="REFSTATE",
                   help="judge the event log against a measured-boot reference state "
                   "(Keylime's refstate JSON; Secure Boot expected on)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_attest)


def _attest(args: argparse.Namespace) -> int:
    sel = PcrSelection.from_string(args.pcr_list) if args.pcr_list else None
    _, values = parse_pcr_file(args.pcrs.read_bytes(), sel)
    reference = (ReferenceValues.from_keylime_json(args.policy.read_bytes())
                 if args.policy else None)
    report = attest(quote_attest=args.message.read_bytes(),
                    quote_signature=args.signature.read_bytes(),
                    ak_public=args.ak.read_bytes(), nonce=args.nonce, pcr_values=values,
                    entries=track(read_measurement_list(args.list), "attest"),
                    reference=reference, **_firmware(args))
    print(report.to_json() if args.json else report.summary())
    return 0 if report.trusted else 1


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
