"""Readable renderings the ``show`` commands share: a PKCS#7 signer as a DN, not hex DER."""

from __future__ import annotations

from typing import Any

from .._der import SEQUENCE, Tlv, decode_oid, parse_tlv
from ..errors import ParseError
from ..sig.pkcs7 import SignerInfo

_SHORT = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
          "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.12": "title",
          "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
          "1.2.840.113549.1.9.1": "emailAddress"}
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be",
            0x1C: "utf-32-be"}


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out.replace("\x00", "\\00")


def name_text(name: Tlv) -> str:
    """An X.501 Name as text (``C=UK, O=Example, CN=Signing key``), RDNs in the order the
    certificate holds them (as ``openssl x509 -issuer`` prints them), values escaped as
    RFC 4514 says."""
    rdns: list[str] = []
    for rdn in name.children():
        parts = []
        for atv in rdn.children():
            oid_t, value = atv.expect(SEQUENCE, "AttributeTypeAndValue").items(
                2, "AttributeTypeAndValue")[:2]
            oid = decode_oid(oid_t)
            codec = _STRINGS.get(value.tag)
            text = (value.content.decode(codec, "replace") if codec
                    else "#" + value.raw.hex())
            parts.append(f"{_SHORT.get(oid, oid)}={_escape(text)}")
        rdns.append("+".join(parts))
    return ", ".join(rdns)


def signer(si: SignerInfo) -> dict[str, Any]:
    """How a SignerInfo names its signer: issuer DN and serial, or the SKID."""
    if si.by_skid:
        return {"by": "skid", "skid": si.auth_id.hex()}
    try:
        sid = parse_tlv(si.raw).items(2, "SignerInfo")[1]
        issuer, serial = sid.items(2, "issuerAndSerialNumber")[:2]
        return {"by": "issuer+serial", "issuer": name_text(issuer),
                "serial": format(int.from_bytes(serial.content, "big"), "x")}
    except ParseError:  # parse_pkcs7 accepted it, so this is only for a hand-made SignerInfo
        return {"by": "issuer+serial", "auth_id": si.auth_id.hex()}


def signer_line(si: SignerInfo) -> str:
    s = signer(si)
    if s["by"] == "skid":
        return f"SKID {s['skid']}"
    if "issuer" in s:
        return f"issuer {s['issuer']}, serial {s['serial']}"
    return f"issuer+serial {s['auth_id']}"
