"""The only module that imports pyasn1: a schema check of CMS SignedData (RFC 5652).

imasim's own DER walker (``_der``) reads the structure with exact offsets and keeps the
original bytes; this second pass checks the whole message against the RFC 5652 schema
of pyasn1-modules, so a message that is well-formed TLV but not SignedData is refused.
Every pyasn1 error becomes a :class:`~imasim.errors.ParseError`.

pyasn1 costs about 12 us and 0.7 KB of memory per element and recurses once per level,
so no bytes reach it before :func:`imasim._der.check_bounds` has walked them (iteratively)
against ``Limits.max_asn1_elements`` and ``max_asn1_depth``: a 2 MB SET of 400,000 tiny
entries is refused after 20,000 element headers instead of 20 s and 600 MB of pyasn1.
"""

from __future__ import annotations

from pyasn1.codec.der import decoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc2315, rfc5652

from .._der import check_bounds, decode_oid, parse_tlv
from ..errors import ParseError
from ..limits import DEFAULT_LIMITS, Limits

__all__ = ["check_authenticode_content_info", "check_content_info"]


def check_content_info(der_bytes: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """Decode ContentInfo and its SignedData with the RFC 5652 schema."""
    check_bounds(der_bytes, limits, what="PKCS#7")
    if _is_authenticode(der_bytes):
        _check_authenticode(der_bytes)
        return
    try:
        ci, rest = decoder.decode(der_bytes, asn1Spec=rfc5652.ContentInfo())
        if rest:
            raise ParseError("trailing bytes after ContentInfo", field="ContentInfo")
        _, rest = decoder.decode(bytes(ci["content"]), asn1Spec=rfc5652.SignedData())
    except PyAsn1Error as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ParseError(f"not CMS SignedData: {first[:120]}", field="SignedData") from None
    except RecursionError:
        raise ParseError("ASN.1 nesting too deep", field="SignedData") from None
    if rest:
        raise ParseError("trailing bytes after SignedData", field="SignedData")


# Authenticode (appended by the PE helper): its encapsulated content is a
# SpcIndirectDataContent SEQUENCE, which RFC 5652's ``[0] EXPLICIT OCTET STRING`` eContent
# refuses; PKCS#7 v1.5 (RFC 2315), which Authenticode is built on, has ``[0] EXPLICIT ANY``.
_MS_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"


def _is_authenticode(der_bytes: bytes) -> bool:
    """Is the encapsulated content type SPC_INDIRECT_DATA (1.3.6.1.4.1.311.2.1.4)?"""
    try:
        signed_data = parse_tlv(der_bytes).items(2)[1].items(1)[0]
        encap = signed_data.items(3)[2]
        return decode_oid(encap.items(1)[0]) == _MS_INDIRECT_DATA
    except ParseError:
        return False


def check_authenticode_content_info(der_bytes: bytes, limits: Limits = DEFAULT_LIMITS
                                    ) -> None:
    """Decode an Authenticode ContentInfo and its SignedData with the RFC 2315 schema."""
    check_bounds(der_bytes, limits, what="PKCS#7")
    _check_authenticode(der_bytes)


def _check_authenticode(der_bytes: bytes) -> None:
    try:
        ci, rest = decoder.decode(der_bytes, asn1Spec=rfc2315.ContentInfo())
        if rest:
            raise ParseError("trailing bytes after ContentInfo", field="ContentInfo")
        _sd, rest = decoder.decode(bytes(ci["content"]), asn1Spec=rfc2315.SignedData())
    except PyAsn1Error as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ParseError(f"not PKCS#7 SignedData: {first[:120]}", field="SignedData") from None
    except RecursionError:
        raise ParseError("ASN.1 nesting too deep", field="SignedData") from None
    if rest:
        raise ParseError("trailing bytes after SignedData", field="SignedData")
