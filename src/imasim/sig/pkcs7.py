"""crypto/asymmetric_keys/pkcs7_{parser,verify,trust}.c: PKCS#7 SignedData as the kernel reads it.

:func:`parse_pkcs7` keeps the original DER of every part that gets hashed (the signed
attributes, the encapsulated content); :func:`verify_pkcs7` makes the kernel's checks in
the kernel's order (``verify_pkcs7_signature``: parse, ``pkcs7_verify`` for the usage,
then ``pkcs7_validate_trust`` against a keyring), with distinct errors for the kernel's
distinct outcomes:

==========================  =============================================
kernel                      imasim
==========================  =============================================
-EBADMSG (malformed)        :class:`~imasim.errors.ParseError`
-EKEYREJECTED (bad sig)     :class:`~imasim.errors.KeyRejectedError`
-ENOKEY (no trusted key)    :class:`~imasim.errors.KeyNotFoundError`
-ENOPKG (unknown algo)      :class:`~imasim.errors.UnsupportedAlgorithmError`
blacklisted key             :class:`~imasim.errors.RevokedError`
==========================  =============================================

:func:`sign_pkcs7` creates what ``scripts/sign-file`` creates (detached, no signed
attributes, issuer+serial or SKID) and also SignedData with encapsulated content and
signed attributes (for Authenticode and IPE policies).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .._der import (
    NULL,
    OCTET_STRING,
    SEQUENCE,
    SET,
    Tlv,
    check_bounds,
    decode_oid,
    der,
    der_int,
    der_oid,
    parse_tlv,
)
from ..algorithms import HashAlgorithm
from ..errors import (
    KeyNotFoundError,
    KeyRejectedError,
    LimitExceededError,
    ParseError,
    RevokedError,
    UnsupportedAlgorithmError,
)
from ..keys.key import Key
from ..keys.keyring import Blacklist, Keyring
from ..limits import DEFAULT_LIMITS, Limits
from . import _asn1

__all__ = [
    "OID_DATA",
    "OID_MS_INDIRECT_DATA",
    "SignedData",
    "SignerInfo",
    "Usage",
    "VerifiedSignature",
    "parse_pkcs7",
    "sign_pkcs7",
    "verify_pkcs7",
]

OID_SIGNED_DATA: Final = "1.2.840.113549.1.7.2"
OID_DATA: Final = "1.2.840.113549.1.7.1"
OID_MS_INDIRECT_DATA: Final = "1.3.6.1.4.1.311.2.1.4"
OID_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME: Final = "1.2.840.113549.1.9.5"
OID_RSA: Final = "1.2.840.113549.1.1.1"
_DIGESTS: Final = {
    "1.3.14.3.2.26": HashAlgorithm.SHA1,
    "2.16.840.1.101.3.4.2.4": HashAlgorithm.SHA224,
    "2.16.840.1.101.3.4.2.1": HashAlgorithm.SHA256,
    "2.16.840.1.101.3.4.2.2": HashAlgorithm.SHA384,
    "2.16.840.1.101.3.4.2.3": HashAlgorithm.SHA512,
    "1.2.156.10197.1.401": HashAlgorithm.SM3_256,
    "2.16.840.1.101.3.4.2.8": HashAlgorithm.SHA3_256,
    "2.16.840.1.101.3.4.2.9": HashAlgorithm.SHA3_384,
    "2.16.840.1.101.3.4.2.10": HashAlgorithm.SHA3_512,
}
_DIGEST_OIDS: Final = {v: k for k, v in _DIGESTS.items()}
_ECDSA: Final = {
    HashAlgorithm.SHA1: "1.2.840.10045.4.1",
    HashAlgorithm.SHA224: "1.2.840.10045.4.3.1",
    HashAlgorithm.SHA256: "1.2.840.10045.4.3.2",
    HashAlgorithm.SHA384: "1.2.840.10045.4.3.3",
    HashAlgorithm.SHA512: "1.2.840.10045.4.3.4",
}
_SIG_ALGS: Final = {OID_RSA: "rsa", **{v: "ecdsa" for v in _ECDSA.values()}}


class Usage(enum.Enum):
    """enum key_being_used_for."""

    MODULE_SIGNATURE = "module"
    FIRMWARE_SIGNATURE = "firmware"
    KEXEC_PE_SIGNATURE = "kexec-pe"
    UNSPECIFIED_SIGNATURE = "unspecified"


def _crypto_hash(alg: HashAlgorithm) -> hashes.HashAlgorithm:
    table: dict[HashAlgorithm, hashes.HashAlgorithm] = {
        HashAlgorithm.SHA1: hashes.SHA1(), HashAlgorithm.SHA224: hashes.SHA224(),
        HashAlgorithm.SHA256: hashes.SHA256(), HashAlgorithm.SHA384: hashes.SHA384(),
        HashAlgorithm.SHA512: hashes.SHA512(), HashAlgorithm.SHA3_256: hashes.SHA3_256(),
        HashAlgorithm.SHA3_384: hashes.SHA3_384(), HashAlgorithm.SHA3_512: hashes.SHA3_512(),
        HashAlgorithm.SM3_256: hashes.SM3(),
    }
    try:
        return table[alg]
    except KeyError:
        raise UnsupportedAlgorithmError(f"no signature support for {alg.kernel_name}") from None


@dataclass(frozen=True, slots=True)
class SignerInfo:
    """One SignerInfo as pkcs7_parser.c reads it: how it names the signer (``auth_id``),
    the digest and signature algorithms, the signature, the signed attributes exactly as
    received (their DER is what the signature covers) and what they say."""

    version: int
    #: the kernel's auth_ids[0]: serial || issuer contents (v1) or the SKID (v3)
    auth_id: bytes
    by_skid: bool
    digest_alg: HashAlgorithm | None
    digest_oid: str
    sig_alg_oid: str
    signature: bytes
    signed_attrs: bytes | None  # original DER of the [0] IMPLICIT field, tag included
    content_type_attr: str | None
    message_digest: bytes | None
    raw: bytes = field(repr=False)
    #: the signingTime signed attribute (pkcs7_sig_note_signing_time), UTC
    signing_time: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class SignedData:
    """A parsed PKCS#7/CMS SignedData: the encapsulated content (None when detached), the
    certificates it carries (DER) and its SignerInfos; ``raw`` is the message as given."""

    version: int
    content_type: str
    content: bytes | None  # contents octets of the encapsulated content, or None (detached)
    certificates: tuple[bytes, ...]
    signer_infos: tuple[SignerInfo, ...]
    raw: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A SignedData that verified, and the trusted key it chained to."""

    signed_data: SignedData
    signer: SignerInfo
    trusted_key: Key


def _int(t: Tlv, what: str) -> int:
    t.expect(0x02, what)
    if not t.content:
        raise ParseError("empty INTEGER", offset=t.start, field=what)
    return int.from_bytes(t.content, "big", signed=True)


def _attr_values(attrs: Tlv) -> dict[str, list[Tlv]]:
    out: dict[str, list[Tlv]] = {}
    for attr in attrs.children():
        attr.expect(SEQUENCE, "Attribute")
        parts = attr.items(2, "Attribute")
        oid = decode_oid(parts[0])
        values = list(parts[1].expect(SET, "AttributeValues").children())
        if oid in out or len(values) != 1:
            # "Repeated/multivalue AuthAttrs not permitted"
            raise KeyRejectedError(f"repeated or multi-valued signed attribute {oid}")
        out[oid] = values
    return out


def _parse_signer_info(t: Tlv) -> SignerInfo:
    t.expect(SEQUENCE, "SignerInfo")
    items = t.items(5, "SignerInfo")
    version = _int(items[0], "SignerInfo.version")
    sid = items[1]
    if version == 1:
        sid.expect(SEQUENCE, "issuerAndSerialNumber")
        issuer, serial = sid.items(2, "issuerAndSerialNumber")[:2]
        issuer.expect(SEQUENCE, "issuer")
        serial.expect(0x02, "serialNumber")
        auth_id, by_skid = serial.content + issuer.content, False
    elif version == 3:
        sid.expect(0x80, "subjectKeyIdentifier")
        auth_id, by_skid = sid.content, True
    else:
        raise ParseError("unsupported SignerInfo version", offset=items[0].start,
                         field="SignerInfo.version", actual=version)
    dalg = items[2].expect(SEQUENCE, "digestAlgorithm").items(1, "digestAlgorithm")
    digest_oid = decode_oid(dalg[0])
    i = 3
    signed_attrs: bytes | None = None
    ctype = mdigest = None
    stime: datetime.datetime | None = None
    if items[i].tag == 0xA0:
        attrs = items[i]
        signed_attrs = attrs.raw
        values = _attr_values(attrs)
        if OID_SIGNING_TIME in values:
            stime = _decode_time(values[OID_SIGNING_TIME][0])
        if OID_CONTENT_TYPE in values:
            ctype = decode_oid(values[OID_CONTENT_TYPE][0])
        if OID_MESSAGE_DIGEST in values:
            md = values[OID_MESSAGE_DIGEST][0].expect(OCTET_STRING, "messageDigest")
            mdigest = md.content
        if ctype is None or mdigest is None:
            raise ParseError("missing required signed attribute (contentType/messageDigest)",
                             offset=attrs.start, field="authenticatedAttributes")
        i += 1
    if len(items) < i + 2:
        raise ParseError("SignerInfo too short", offset=t.start, field="SignerInfo")
    salg = items[i].expect(SEQUENCE, "signatureAlgorithm").items(1, "signatureAlgorithm")
    sig_oid = decode_oid(salg[0])
    signature = items[i + 1].expect(OCTET_STRING, "signature").content
    return SignerInfo(version, auth_id, by_skid, _DIGESTS.get(digest_oid), digest_oid, sig_oid,
                      signature, signed_attrs, ctype, mdigest, t.raw, signing_time=stime)


def _decode_time(t: Tlv) -> datetime.datetime:
    """UTCTime or GeneralizedTime as x509_decode_time reads them (``...Z`` only)."""
    if t.tag not in (0x17, 0x18):
        raise ParseError("signingTime is not a UTCTime or GeneralizedTime",
                         offset=t.start, field="signingTime", actual=hex(t.tag))
    text = bytes(t.content).decode("ascii", errors="replace")
    fmt = "%y%m%d%H%M%SZ" if t.tag == 0x17 else "%Y%m%d%H%M%SZ"
    try:
        when = datetime.datetime.strptime(text, fmt)
    except ValueError:
        raise ParseError("bad signingTime", offset=t.start, field="signingTime",
                         actual=text) from None
    if t.tag == 0x17 and when.year >= 2050:  # RFC 5280: YY >= 50 is 19YY
        when = when.replace(year=when.year - 100)
    return when.replace(tzinfo=datetime.UTC)


def _entries(t: Tlv, what: str, limits: Limits) -> list[Tlv]:
    """The children of a SET OF, no more than ``limits.max_pkcs7_entries``."""
    out = t.items(0, what)
    if len(out) > limits.max_pkcs7_entries:
        raise LimitExceededError(f"too many {what} entries", offset=t.start, field=what,
                                 expected=f"<= {limits.max_pkcs7_entries}", actual=len(out))
    return out


def parse_pkcs7(data: bytes | bytearray | memoryview, *,
                limits: Limits = DEFAULT_LIMITS) -> SignedData:
    """pkcs7_parse_message. Only :class:`ParseError` (and KeyRejectedError for repeated
    signed attributes, as the kernel's -EKEYREJECTED) escape.

    Bounded before anything is decoded: :func:`imasim._der.check_bounds` walks the
    ContentInfo once (at most ``limits.max_asn1_elements`` elements, ``max_asn1_depth``
    deep), then each of digestAlgorithms, certificates, crls and signerInfos holds at
    most ``limits.max_pkcs7_entries``; only then does the pyasn1 schema check run.
    """
    buf = bytes(data)
    check_bounds(buf, limits, what="PKCS#7")
    top = parse_tlv(buf).expect(SEQUENCE, "ContentInfo")
    # lib/asn1_decoder.c stops at the end of the top-level element (ASN1_OP_COMPLETE does
    # not look at what follows), so bytes after the ContentInfo are ignored, not refused
    ci = top.items(2, "ContentInfo")
    if decode_oid(ci[0]) != OID_SIGNED_DATA:
        raise ParseError("not signedData", offset=ci[0].start, field="contentType")
    sd = ci[1].expect(0xA0, "content").items(1, "content")[0].expect(SEQUENCE, "SignedData")
    parts = sd.items(4, "SignedData")
    version = _int(parts[0], "SignedData.version")
    if version not in (1, 3):
        raise ParseError("unsupported SignedData version", offset=parts[0].start,
                         field="SignedData.version", actual=version)
    _entries(parts[1].expect(SET, "digestAlgorithms"), "digestAlgorithms", limits)
    enc = parts[2].expect(SEQUENCE, "encapContentInfo").items(1, "encapContentInfo")
    ctype = decode_oid(enc[0])
    if ctype not in (OID_DATA, OID_MS_INDIRECT_DATA):
        raise ParseError("unsupported content type", offset=enc[0].start, field="contentType",
                         actual=ctype)
    content: bytes | None = None
    if len(enc) > 1:
        inner = enc[1].expect(0xA0, "eContent").items(1, "eContent")[0]
        content = inner.content
    certs: list[bytes] = []
    rest = parts[3:]
    if rest and rest[0].tag == 0xA0:
        for c in _entries(rest[0], "certificates", limits):
            c.expect(SEQUENCE, "Certificate")
            certs.append(c.raw)
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:
        _entries(rest[0], "crls", limits)
        rest = rest[1:]
    if not rest:
        raise ParseError("SignedData has no signerInfos", offset=sd.start, field="signerInfos")
    sis = tuple(_parse_signer_info(s) for s in
                _entries(rest[0].expect(SET, "signerInfos"), "signerInfos", limits))
    if not sis:
        raise ParseError("no SignerInfo", offset=rest[0].start, field="signerInfos")
    if len({s.signed_attrs is None for s in sis}) > 1:
        raise ParseError("inconsistently supplied authAttrs", offset=rest[0].start,
                         field="signerInfos")
    for s in sis:
        if (s.version == 1) != (version == 1):
            raise ParseError("SignerInfo version does not match SignedData version",
                             offset=sd.start, field="SignerInfo.version")
        if ctype == OID_MS_INDIRECT_DATA and s.signed_attrs is None:
            raise ParseError("Authenticode requires AuthAttrs", offset=sd.start,
                             field="authenticatedAttributes")
        if s.content_type_attr is not None and s.content_type_attr != ctype:
            raise ParseError("contentType attribute differs from the content type",
                             offset=sd.start, field="contentType")
    _asn1.check_content_info(buf[:top.end], limits)
    return SignedData(version, ctype, content, tuple(certs), sis, buf)


# -- verification -----------------------------------------------------------------------
def _signed_digest(sd: SignedData, si: SignerInfo, data: bytes | None,
                   content_digest: bytes | None = None) -> bytes:
    if si.digest_alg is None:
        raise UnsupportedAlgorithmError(f"digest algorithm {si.digest_oid}")
    if content_digest is not None:
        if len(content_digest) != si.digest_alg.digest_size:
            raise ParseError("content digest has the wrong size for the signer's algorithm",
                             field="content_digest", expected=si.digest_alg.digest_size,
                             actual=len(content_digest))
        d1 = content_digest
    else:
        content = data if data is not None else sd.content
        if content is None:
            raise ParseError("no content to verify (detached signature without data)",
                             field="content")
        d1 = si.digest_alg.hash(content)
    if si.signed_attrs is None:
        return d1
    md = si.message_digest or b""
    if len(md) != len(d1):
        raise ParseError("messageDigest has the wrong size", field="messageDigest")
    if md != d1:
        raise KeyRejectedError("messageDigest does not match the content")
    return si.digest_alg.hash(b"\x31" + si.signed_attrs[1:])


def _verify_with(key: Key | x509.Certificate, si: SignerInfo, digest: bytes) -> None:
    pub = key.public_key if isinstance(key, Key) else key.public_key()
    assert si.digest_alg is not None
    pre = utils.Prehashed(_crypto_hash(si.digest_alg))
    kind = _SIG_ALGS.get(si.sig_alg_oid)
    if kind is None:
        raise UnsupportedAlgorithmError(f"signature algorithm {si.sig_alg_oid}")
    try:
        if kind == "rsa" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(si.signature, digest, padding.PKCS1v15(), pre)
        elif kind == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(si.signature, digest, ec.ECDSA(pre))
        else:
            raise KeyRejectedError("the key type does not match the signature algorithm")
    except InvalidSignature:
        raise KeyRejectedError("PKCS#7 signature does not verify") from None


def verify_pkcs7(
    signed_data: SignedData | bytes,
    data: bytes | None = None,
    *,
    keyring: Keyring,
    usage: Usage = Usage.UNSPECIFIED_SIGNATURE,
    blacklist: Blacklist | None = None,
    content_digest: bytes | None = None,
) -> VerifiedSignature:
    """verify_pkcs7_signature: raises one of the errors in the module docstring.

    ``content_digest`` stands for the detached content when only its digest is known (in
    the signer's digest algorithm), as in an ima-modsig entry's ``d-modsig`` field."""
    sd = parse_pkcs7(signed_data) if isinstance(signed_data, bytes) else signed_data
    if data is not None and sd.content is not None:
        raise ParseError("PKCS#7 signature with non-detached data", field="content")
    has_attrs = sd.signer_infos[0].signed_attrs is not None
    want_type = OID_MS_INDIRECT_DATA if usage is Usage.KEXEC_PE_SIGNATURE else OID_DATA
    if sd.content_type != want_type:
        raise KeyRejectedError(f"content type {sd.content_type} not allowed for {usage.value}")
    if usage is Usage.MODULE_SIGNATURE and has_attrs:
        raise KeyRejectedError("Invalid module sig (has authattrs)")
    if usage is Usage.FIRMWARE_SIGNATURE and not has_attrs:
        raise KeyRejectedError("Firmware sig must have authattrs")
    bl = blacklist if blacklist is not None else keyring.blacklist
    embedded = []
    for der_cert in sd.certificates:
        try:
            embedded.append(Key.from_certificate(der_cert))
        except UnsupportedAlgorithmError:
            continue
    result: VerifiedSignature | None = None
    unsupported = False
    for si in sd.signer_infos:
        try:
            digest = _signed_digest(sd, si, data, content_digest)
        except UnsupportedAlgorithmError:
            unsupported = True
            continue
        # pkcs7_find_key: an embedded certificate by issuer+serial only
        signer = next((k for k in embedded if not si.by_skid and k.ids[0] == si.auth_id), None)
        chain: list[Key] = []
        if signer is not None:
            _check_signing_time(si, signer)
            _verify_with(signer, si, digest)
            chain = _embedded_chain(signer, embedded)
        if bl is not None:
            for k in chain:
                if bl.is_key_blocked(k):
                    raise RevokedError(f"certificate {k.description!r} is blacklisted")
        trusted = _validate_trust(sd, si, digest, chain, keyring)
        if bl is not None and bl.is_revoked(trusted):  # is_key_on_revocation_list
            raise RevokedError(f"key {trusted.description!r} is revoked")
        if result is None:
            result = VerifiedSignature(sd, si, trusted)
    if result is None:
        if unsupported:
            raise UnsupportedAlgorithmError("no SignerInfo with a supported algorithm")
        raise KeyNotFoundError("no trusted key")
    return result


def _signer_chains(sd: SignedData) -> list[list[Key]]:
    """For each SignerInfo with an embedded certificate (matched by issuer+serial, or by
    SKID): that certificate and the embedded issuers above it, as OpenSSL builds the
    chain for EDK2's ``Pkcs7GetSigners`` (a link that does not verify ends the chain).
    Nothing is verified against the content: this is what dbx is compared with."""
    embedded: list[Key] = []
    for der_cert in sd.certificates:
        try:
            embedded.append(Key.from_certificate(der_cert))
        except (ParseError, UnsupportedAlgorithmError):
            continue
    chains: list[list[Key]] = []
    for si in sd.signer_infos:
        signer = next((k for k in embedded if (k.skid == si.auth_id if si.by_skid
                                               else k.ids[0] == si.auth_id)), None)
        if signer is None:
            continue
        try:
            chains.append(_embedded_chain(signer, embedded))
        except KeyRejectedError:
            chains.append([signer])
    return chains


def _check_signing_time(si: SignerInfo, signer: Key) -> None:
    """pkcs7_verify_one: a signingTime outside the embedded signer's validity is
    -EKEYREJECTED (the kernel cannot trust its clock, so it checks nothing else)."""
    cert = signer.certificate
    if si.signing_time is None or cert is None:
        return
    if not cert.not_valid_before_utc <= si.signing_time <= cert.not_valid_after_utc:
        raise KeyRejectedError("Message signed outside of X.509 validity window")


def _embedded_chain(signer: Key, embedded: Sequence[Key]) -> list[Key]:
    """pkcs7_verify_sig_chain: follow the issuers among the embedded certificates. An
    issuer found by issuer+serial whose SKID differs from the authority keyIdentifier, or
    whose signature on the child does not verify, is -EKEYREJECTED; no issuer, a loop or a
    self-signed certificate ends the chain."""
    chain = [signer]
    cur = signer
    while not cur.self_signed:
        a0, a1 = cur.auth_ids
        if a0 is not None:
            up = next((k for k in embedded if k.ids[0] == a0), None)
            if up is not None and a1 is not None and up.skid != a1:
                raise KeyRejectedError("X.509 chain contains auth-skid nonmatch")
        elif a1 is not None:
            up = next((k for k in embedded if k.skid is not None and k.skid == a1), None)
        else:
            up = None
        if up is None or up in chain:
            break
        if not cur.signed(up):
            raise KeyRejectedError(f"{cur.description!r} is not signed by its embedded "
                                   f"issuer {up.description!r}")
        chain.append(up)
        cur = up
    return chain


def _validate_trust(sd: SignedData, si: SignerInfo, digest: bytes, chain: Sequence[Key],
                    keyring: Keyring) -> Key:
    """pkcs7_validate_trust_one."""
    child: Key | None = None
    for x in chain:
        found = keyring.find_asymmetric_key(x.ids[0], x.skid or None)
        if found is not None:
            if child is None:
                _verify_with(found, si, digest)
            elif not child.signed(found):
                raise KeyRejectedError("certificate signature does not verify with the "
                                       "trusted key")
            return found
        if x.self_signed:
            raise KeyNotFoundError(f"unknown root {x.description!r}")
        child = x
    if chain:
        top = chain[-1]
        a0, a1 = top.auth_ids
        if a0 is not None or a1 is not None:
            found = keyring.find_asymmetric_key(a0, a1) if a0 is not None else \
                keyring.find_asymmetric_key(None, a1)
            if found is not None:
                if not top.signed(found):
                    raise KeyRejectedError("top certificate does not verify with the key")
                return found
    # the "direct signer" path: every sign-file module signature takes it
    found = keyring.find_asymmetric_key(si.auth_id)
    if found is None:
        raise KeyNotFoundError("no key in the keyring for the signer")
    _verify_with(found, si, digest)
    return found


# -- creation ---------------------------------------------------------------------------
def _alg_id(oid: str, *, null: bool) -> bytes:
    return der(SEQUENCE, der_oid(oid) + (der(NULL, b"") if null else b""))


def sign_pkcs7(
    content: bytes,
    *,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
    detached: bool = True,
    use_key_id: bool = False,
    include_certificate: bool = False,
    signed_attributes: bool = False,
    content_type: str = OID_DATA,
    encapsulated: bytes | None = None,
    extra_signed_attributes: Sequence[bytes] = (),
    unsigned_attributes: Sequence[bytes] = (),
) -> bytes:
    """Create SignedData DER.

    The defaults are sign-file's: detached, no signed attributes, signer identified by
    issuer and serial (``use_key_id`` for the SKID, as ``sign-file -k``), no certificate
    (``include_certificate`` as ``-i``). ``encapsulated`` is the full DER placed in
    ``[0] eContent`` when not detached (default: an OCTET STRING of ``content``); the
    digest is over ``content`` (the contents octets, as the kernel hashes).
    """
    md_oid = _DIGEST_OIDS[hash_alg]
    cert_der = certificate.public_bytes(serialization.Encoding.DER)
    serial_raw, issuer_raw, _ = _raw_cert_names(cert_der)
    if use_key_id:
        skid = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        sid, version = der(0x80, skid.value.digest), 3
    else:
        sid = der(SEQUENCE, der(SEQUENCE, issuer_raw) + der(0x02, serial_raw))
        version = 1
    d1 = hash_alg.hash(content)
    attrs_der = b""
    to_sign = d1
    if signed_attributes:
        attrs = [
            der(SEQUENCE, der_oid(OID_CONTENT_TYPE) + der(SET, der_oid(content_type))),
            *extra_signed_attributes,
            der(SEQUENCE, der_oid(OID_MESSAGE_DIGEST) + der(SET, der(OCTET_STRING, d1))),
        ]
        attrs.sort()  # DER SET OF order
        body = b"".join(attrs)
        attrs_der = der(0xA0, body)
        to_sign = hash_alg.hash(der(SET, body))
    pre = utils.Prehashed(_crypto_hash(hash_alg))
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(to_sign, padding.PKCS1v15(), pre)
        sig_alg = _alg_id(OID_RSA, null=True)
    else:
        sig = key.sign(to_sign, ec.ECDSA(pre, deterministic_signing=True))
        sig_alg = _alg_id(_ECDSA[hash_alg], null=False)
    unsigned = der(0xA1, b"".join(unsigned_attributes)) if unsigned_attributes else b""
    signer_info = der(SEQUENCE, der_int(version) + sid + _alg_id(md_oid, null=False)
                      + attrs_der + sig_alg + der(OCTET_STRING, sig) + unsigned)
    if detached:
        encap = der(SEQUENCE, der_oid(content_type))
    else:
        inner = encapsulated if encapsulated is not None else der(OCTET_STRING, content)
        encap = der(SEQUENCE, der_oid(content_type) + der(0xA0, inner))
    certs = der(0xA0, cert_der) if include_certificate else b""
    signed = der(SEQUENCE, der_int(version) + der(SET, _alg_id(md_oid, null=False)) + encap
                 + certs + der(SET, signer_info))
    return der(SEQUENCE, der_oid(OID_SIGNED_DATA) + der(0xA0, signed))


def _raw_cert_names(cert_der: bytes) -> tuple[bytes, bytes, bytes]:
    from ..keys.key import _raw_names

    return _raw_names(cert_der)
