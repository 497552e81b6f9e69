"""crypto/asymmetric_keys/verify_pefile.c, mscode_parser.c: the Authenticode digest, verify, sign.

The image hash (:func:`authenticode_digest`) is computed over memoryview slices of the
image, never over copies. :class:`DigestRules` selects whose ranges are hashed; both skip
the CheckSum field and the certificate directory entry:

======================  ================================================================
``DigestRules.KERNEL``  ``pefile_digest_pe_contents``, the Authenticode specification's
                        ``SUM_OF_BYTES_HASHED`` rule, and what pesign and sbsign/sbverify
                        hash: the headers, the sections with raw data in canonical order,
                        then ``file[H + ΣSizeOfRawData : L - certs.size]``. The
                        certificate table is *assumed* to end the file, so bytes appended
                        after it shift the hashed window, and bytes in a gap between
                        sections are not hashed.
``DigestRules.FLAT``    osslsigncode (2.9, ``pe_digest_calc``): the file in order up to
                        the certificate table's file offset (or its end when unsigned),
                        ignoring the section table: gaps between sections are hashed,
                        bytes after the table are not, and an unsigned image whose length
                        is not a multiple of 8 is hashed as if padded with zeros to 8.
======================  ================================================================

For a well-formed image (contiguous sections, the table last, the length 8-aligned as
every signer leaves it) both give the same digest.

:func:`verify_authenticode` is ``verify_pefile_signature`` as ``kexec_file_load`` calls
it (``VerifyRules.KERNEL``): only the first WIN_CERTIFICATE, the wrapper checks, the
PKCS#7 checks and trust (one keyring after the other, moving on only on -ENOKEY, as
``kexec_kernel_verify_pe_sig`` goes from the secondary to the platform keyring), then
SpcIndirectDataContent and the image digest. ``VerifyRules.UEFI`` is the firmware's
(EDK2 ``DxeImageVerificationHandler``) way: every WIN_CERTIFICATE entry is looked at,
and one whose signer (or an embedded issuer above it) is in dbx, or whose image hash (in
that entry's algorithm) is in dbx, rejects the image even when another entry verified;
otherwise any entry that verifies admits it. As in EDK2, nested signatures (osslsigncode
``-nest``, an unsigned attribute) are not looked at, and an entry whose PKCS#7 or hash
algorithm cannot be read is skipped.

=========================================  =================================================
kernel                                     imasim
=========================================  =================================================
-ELIBBAD (headers, wrapper)                :class:`~imasim.errors.ParseError`
-ENODATA (unsigned)                        :class:`~imasim.errors.UnsignedError`
-ENOTSUPP (WIN_CERTIFICATE type/revision)  :class:`~imasim.errors.UnsupportedAlgorithmError`
-EMSGSIZE (PKCS#7 length of 3+ octets)     :class:`~imasim.errors.LimitExceededError`
-EBADMSG (PKCS#7, SpcIndirectDataContent)  :class:`~imasim.errors.ParseError`
-ENOPKG (sha1 image digest)                :class:`~imasim.errors.UnsupportedAlgorithmError`
-ENOKEY / -EKEYREJECTED (PKCS#7)           as :func:`imasim.sig.pkcs7.verify_pkcs7`
-EKEYREJECTED (image digest differs)       :class:`~imasim.errors.DigestMismatchError`
=========================================  =================================================

:class:`AuthenticodeBuilder` signs as sbsign does (one WIN_CERTIFICATE: PKCS#7 SignedData
with SpcIndirectDataContent, signed attributes contentType, messageDigest, SpcSpOpusInfo
and optionally signingTime; the image padded to 8 bytes, ``dwLength`` unpadded, the
directory size rounded up to 8) and adds further signatures either as osslsigncode
``-nest`` does (an unsigned attribute 1.3.6.1.4.1.311.2.4.1 of the first SignerInfo) or
as another WIN_CERTIFICATE entry (sbsign on a signed image); it updates the certificate
table entry and the PE CheckSum.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from .._der import (
    NULL,
    OCTET_STRING,
    SEQUENCE,
    SET,
    Tlv,
    check_bounds,
    decode_oid,
    der,
    der_oid,
    parse_tlv,
)
from ..algorithms import HashAlgorithm
from ..errors import (
    DigestMismatchError,
    KeyNotFoundError,
    KeyRejectedError,
    LimitExceededError,
    ParseError,
    RevokedError,
    TruncatedError,
    UnsignedError,
    UnsupportedAlgorithmError,
    UsageError,
)
from ..keys.keyring import Blacklist, Keyring
from ..limits import DEFAULT_LIMITS, Limits
from .pefile import PeImage, parse_pe, pe_checksum
from .pkcs7 import (
    OID_MS_INDIRECT_DATA,
    SignedData,
    Usage,
    VerifiedSignature,
    _signer_chains,
    parse_pkcs7,
    sign_pkcs7,
    verify_pkcs7,
)

__all__ = [
    "OID_NESTED_SIGNATURE",
    "OID_SPC_PE_IMAGE_DATA",
    "AuthenticodeBuilder",
    "AuthenticodeSignature",
    "DigestRules",
    "SignMode",
    "SpcIndirectDataContent",
    "VerifiedAuthenticode",
    "VerifyRules",
    "WinCertificate",
    "WrapperRules",
    "authenticode_digest",
    "authenticode_ranges",
    "blacklist_hash",
    "parse_authenticode",
    "parse_certificate_table",
    "parse_spc_indirect_data",
    "sign_pe",
    "strip_sig_wrapper",
    "verify_authenticode",
]

OID_SPC_INDIRECT_DATA: Final = OID_MS_INDIRECT_DATA  # 1.3.6.1.4.1.311.2.1.4
OID_SPC_STATEMENT_TYPE: Final = "1.3.6.1.4.1.311.2.1.11"
OID_SPC_SP_OPUS_INFO: Final = "1.3.6.1.4.1.311.2.1.12"
OID_SPC_PE_IMAGE_DATA: Final = "1.3.6.1.4.1.311.2.1.15"
OID_SPC_INDIVIDUAL_SP_KEY_PURPOSE: Final = "1.3.6.1.4.1.311.2.1.21"
OID_NESTED_SIGNATURE: Final = "1.3.6.1.4.1.311.2.4.1"
OID_SIGNED_DATA: Final = "1.2.840.113549.1.7.2"
OID_SIGNING_TIME: Final = "1.2.840.113549.1.9.5"

WIN_CERT_REVISION_1_0: Final = 0x0100
WIN_CERT_REVISION_2_0: Final = 0x0200
WIN_CERT_TYPE_X509: Final = 0x0001
WIN_CERT_TYPE_PKCS_SIGNED_DATA: Final = 0x0002
WIN_CERTIFICATE_HEADER: Final = 8

_HASH_OIDS: Final = {
    "1.3.14.3.2.26": HashAlgorithm.SHA1,
    "2.16.840.1.101.3.4.2.4": HashAlgorithm.SHA224,
    "2.16.840.1.101.3.4.2.1": HashAlgorithm.SHA256,
    "2.16.840.1.101.3.4.2.2": HashAlgorithm.SHA384,
    "2.16.840.1.101.3.4.2.3": HashAlgorithm.SHA512,
}
_OID_OF: Final = {v: k for k, v in _HASH_OIDS.items()}
#: mscode_note_digest_algo: the image digests the kernel accepts
_KERNEL_IMAGE_DIGESTS: Final = frozenset({HashAlgorithm.SHA224, HashAlgorithm.SHA256,
                                          HashAlgorithm.SHA384, HashAlgorithm.SHA512})
#: hash OIDs the kernel's OID registry knows but mscode refuses (-ENOPKG, not -EBADMSG)
_KNOWN_HASH_OIDS: Final = frozenset({"1.3.14.3.2.26", "1.2.840.113549.2.5",
                                     "1.2.840.113549.2.4", "1.2.156.10197.1.401",
                                     "2.16.840.1.101.3.4.2.8", "2.16.840.1.101.3.4.2.9",
                                     "2.16.840.1.101.3.4.2.10"})


class DigestRules(enum.Enum):
    """Which bytes after the last section the image hash covers (module docstring)."""

    KERNEL = "kernel"
    FLAT = "flat"


class WrapperRules(enum.Enum):
    """pefile_strip_sig_wrapper's length check.

    ``RELAXED``: ``dwLength`` must not exceed the table size (6.3, "verify_pefile: relax
    wrapper length check", backported to the stable trees in 2023). ``STRICT``: older
    kernels, ``round_up(dwLength, 8)`` must equal the table size, so a second
    WIN_CERTIFICATE entry makes the image unverifiable.
    """

    RELAXED = "relaxed"
    STRICT = "strict"


class VerifyRules(enum.Enum):
    """Whose verification: the kernel's (kexec) or the UEFI firmware's (db/dbx)."""

    KERNEL = "kernel"
    UEFI = "uefi"


class SignMode(enum.Enum):
    """How :func:`sign_pe` adds a signature."""

    NEW = "new"  # an unsigned image gets one WIN_CERTIFICATE (sbsign)
    REPLACE = "replace"  # drop the existing table, then as NEW
    APPEND = "append"  # one more WIN_CERTIFICATE entry (sbsign on a signed image)
    NEST = "nest"  # nested in the first signature (osslsigncode -nest)


# -- the image hash ---------------------------------------------------------------------
def _image(image: PeImage | bytes | bytearray | memoryview) -> PeImage:
    return image if isinstance(image, PeImage) else parse_pe(image)


def _c_name(img: PeImage, offset: int) -> bytes:
    """What strcmp() sees at a section name: the bytes up to the first NUL (a name of
    eight non-NUL bytes runs on into the fields after it, as in C)."""
    tail = bytes(img.raw[offset:offset + 64])
    cut = tail.find(b"\0")
    return tail if cut < 0 else tail[:cut]


def _canonical_sections(img: PeImage) -> list[int]:
    """pefile_compare_shdrs insertion sort: indices in canonical order (stable)."""
    secs = img.sections
    return sorted(range(len(secs)), key=lambda i: (
        secs[i].pointer_to_raw_data, secs[i].virtual_address,
        _c_name(img, secs[i].offset), secs[i].virtual_size, secs[i].size_of_raw_data))


def authenticode_ranges(image: PeImage | bytes | bytearray | memoryview, *,
                        rules: DigestRules = DigestRules.KERNEL
                        ) -> tuple[tuple[int, int], ...]:
    """The ``(offset, length)`` ranges the image hash covers, in hashing order.

    With ``DigestRules.FLAT`` a final ``(-1, n)`` range stands for ``n`` zero bytes of
    padding.
    """
    img = _image(image)
    d = img.certificate_directory
    if d is None:
        raise ParseError("no certificate table directory entry (NumberOfRvaAndSizes < 5)",
                         offset=img.optional_header_offset, field="NumberOfRvaAndSizes",
                         expected="> 4", actual=img.number_of_rva_and_sizes)
    c, h, n = img.checksum_offset, img.size_of_headers, len(img.raw)
    table = d.size if img.is_signed else 0
    if rules is DigestRules.FLAT:
        end = d.virtual_address if img.is_signed else n
        ranges = [(0, c), (c + 4, d.offset - c - 4), (d.offset + 8, end - d.offset - 8)]
        if not img.is_signed and end % 8:
            ranges.append((-1, 8 - end % 8))
        return tuple((o, ln) for o, ln in ranges if ln > 0)
    ranges = [(0, c), (c + 4, d.offset - c - 4), (d.offset + 8, h - d.offset - 8)]
    hashed = h
    for i in _canonical_sections(img):
        s = img.sections[i]
        if s.size_of_raw_data == 0:
            continue
        ranges.append((s.pointer_to_raw_data, s.size_of_raw_data))
        hashed += s.size_of_raw_data
    if n > hashed:
        if hashed + table > n:
            raise ParseError("sections and certificate table exceed the file",
                             offset=d.offset, field="certificate_table",
                             expected=f"size <= {n - hashed}", actual=table)
        ranges.append((hashed, n - hashed - table))
    return tuple((o, ln) for o, ln in ranges if ln > 0)


def authenticode_digest(image: PeImage | bytes | bytearray | memoryview,
                        alg: HashAlgorithm = HashAlgorithm.SHA256, *,
                        rules: DigestRules = DigestRules.KERNEL) -> bytes:
    """The Authenticode image hash (pefile_digest_pe), over memoryview slices.

    >>> from imasim.sig.pefile import _example
    >>> authenticode_digest(_example()).hex()[:16]
    '01310579b067b2c3'
    """
    img = _image(image)
    h = alg.new()
    raw = img.raw
    for off, ln in authenticode_ranges(img, rules=rules):
        h.update(bytes(ln) if off < 0 else raw[off:off + ln])
    return h.digest()


def blacklist_hash(image: PeImage | bytes | bytearray | memoryview,
                   alg: HashAlgorithm = HashAlgorithm.SHA256) -> str:
    """The ``bin:`` description naming this image on the blacklist (a dbx
    EFI_CERT_SHA256 entry holds the Authenticode sha256 of the image)."""
    return "bin:" + authenticode_digest(image, alg).hex()


# -- WIN_CERTIFICATE --------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class WinCertificate:
    """WIN_CERTIFICATE (PE format, "The Attribute Certificate Table")."""

    offset: int  # file offset of the entry
    length: int  # dwLength, header included
    revision: int
    certificate_type: int
    certificate: bytes = field(repr=False)  # bCertificate: dwLength - 8 bytes

    def to_bytes(self) -> bytes:
        return (self.length.to_bytes(4, "little") + self.revision.to_bytes(2, "little")
                + self.certificate_type.to_bytes(2, "little") + self.certificate)


def parse_certificate_table(image: PeImage | bytes | bytearray | memoryview, *,
                            limits: Limits = DEFAULT_LIMITS) -> tuple[WinCertificate, ...]:
    """Every WIN_CERTIFICATE entry; entries start 8-byte aligned (round_up(dwLength, 8))."""
    img = _image(image)
    d = img.certificate_directory
    if d is None or not img.is_signed:
        return ()
    out: list[WinCertificate] = []
    pos, end = d.virtual_address, d.virtual_address + d.size
    while pos < end:
        if len(out) >= limits.max_pe_certificates:
            raise LimitExceededError("too many WIN_CERTIFICATE entries", offset=pos,
                                     field="WIN_CERTIFICATE",
                                     expected=f"<= {limits.max_pe_certificates}")
        if end - pos < WIN_CERTIFICATE_HEADER:
            raise TruncatedError("WIN_CERTIFICATE header truncated", offset=pos,
                                 field="dwLength", expected=8, actual=end - pos)
        length = int.from_bytes(img.raw[pos:pos + 4], "little")
        if length < WIN_CERTIFICATE_HEADER or length > end - pos:
            raise ParseError("WIN_CERTIFICATE length outside the table", offset=pos,
                             field="dwLength", expected=f"8..{end - pos}", actual=length)
        out.append(WinCertificate(
            offset=pos, length=length,
            revision=int.from_bytes(img.raw[pos + 4:pos + 6], "little"),
            certificate_type=int.from_bytes(img.raw[pos + 6:pos + 8], "little"),
            certificate=bytes(img.raw[pos + 8:pos + length])))
        pos += (length + 7) & ~7
    return tuple(out)


def _pkcs7_tlv(sig: memoryview | bytes, offset: int) -> int:
    """pefile_strip_sig_wrapper's look at the PKCS#7 header: the TLV length."""
    if sig[0] != SEQUENCE:
        raise ParseError("signature data is not PKCS#7", offset=offset, field="bCertificate",
                         expected="0x30", actual=hex(sig[0]))
    first = sig[1]
    if first < 0x80:
        length = first + 2
    elif first == 0x80:
        return len(sig)  # indefinite length: the kernel passes the whole remainder on
    elif first == 0x81:
        length = sig[2] + 3
    elif first == 0x82:
        length = ((sig[2] << 8) | sig[3]) + 4
    else:
        raise LimitExceededError("PKCS#7 length field too long", offset=offset + 1,
                                 field="bCertificate", expected="<= 2 length octets",
                                 actual=first & 0x7F)
    if length > len(sig):
        raise ParseError("PKCS#7 longer than the WIN_CERTIFICATE", offset=offset,
                         field="bCertificate", expected=f"<= {len(sig)}", actual=length)
    return length


def strip_sig_wrapper(image: PeImage | bytes | bytearray | memoryview, *,
                      wrapper: WrapperRules = WrapperRules.RELAXED) -> bytes:
    """pefile_strip_sig_wrapper: the PKCS#7 the kernel verifies (first entry only)."""
    img = _image(image)
    d = img.certificate_directory
    if d is None or not img.is_signed:
        raise UnsignedError("unsigned PE binary")
    pos, size = d.virtual_address, d.size
    if size < WIN_CERTIFICATE_HEADER:
        raise TruncatedError("signature wrapper too short", offset=d.offset,
                             field="certificate_table", expected=">= 8", actual=size)
    raw = img.raw
    length = int.from_bytes(raw[pos:pos + 4], "little")
    revision = int.from_bytes(raw[pos + 4:pos + 6], "little")
    ctype = int.from_bytes(raw[pos + 6:pos + 8], "little")
    if wrapper is WrapperRules.STRICT and (length + 7) & ~7 != size:
        raise ParseError("signature wrapper length wrong", offset=pos, field="dwLength",
                         expected=f"round_up(dwLength, 8) == {size}", actual=length)
    if length > size:
        raise ParseError("signature wrapper bigger than the table", offset=pos,
                         field="dwLength", expected=f"<= {size}", actual=length)
    if revision != WIN_CERT_REVISION_2_0:
        raise UnsupportedAlgorithmError(f"WIN_CERTIFICATE revision {revision:#x} is not 2.0")
    if ctype != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
        raise UnsupportedAlgorithmError(f"WIN_CERTIFICATE type {ctype:#x} is not PKCS")
    if length < WIN_CERTIFICATE_HEADER + 4:
        raise KeyRejectedError("signature data missing")
    sig = raw[pos + 8:pos + length]
    return bytes(sig[:_pkcs7_tlv(sig, pos + 8)])


# -- SpcIndirectDataContent -------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SpcIndirectDataContent:
    """SpcIndirectDataContent (Authenticode spec; the kernel's mscode.asn1)."""

    data_type: str  # SpcAttributeTypeAndOptionalValue.type
    data_value: bytes | None = field(repr=False)  # its value, raw DER (SpcPeImageData)
    digest_oid: str
    digest_alg: HashAlgorithm | None
    digest: bytes
    raw: bytes = field(repr=False)  # the whole SEQUENCE

    def to_bytes(self) -> bytes:
        return self.raw

    @property
    def content_octets(self) -> bytes:
        """What the PKCS#7 messageDigest covers: the SEQUENCE without tag and length."""
        return parse_tlv(self.raw).content

    @classmethod
    def create(cls, digest: bytes, alg: HashAlgorithm = HashAlgorithm.SHA256
               ) -> SpcIndirectDataContent:
        """The encoding sbsign (and osslsigncode, bar its flags) writes: SpcPeImageData
        with empty flags and the file link ``<<<Obsolete>>>`` as a BMPString."""
        if alg not in _OID_OF:
            raise UsageError(f"no Authenticode OID for {alg.kernel_name}")
        if len(digest) != alg.digest_size:
            raise UsageError("digest size does not match the algorithm")
        obsolete = "<<<Obsolete>>>".encode("utf-16-be")
        pe_image_data = der(SEQUENCE, der(0x03, b"\x00")
                            + der(0xA0, der(0xA2, der(0x80, obsolete))))
        data = der(SEQUENCE, der_oid(OID_SPC_PE_IMAGE_DATA) + pe_image_data)
        dinfo = der(SEQUENCE, der(SEQUENCE, der_oid(_OID_OF[alg]) + der(NULL, b""))
                    + der(OCTET_STRING, digest))
        return parse_spc_indirect_data(der(SEQUENCE, data + dinfo))


def parse_spc_indirect_data(data: bytes, *, limits: Limits = DEFAULT_LIMITS
                            ) -> SpcIndirectDataContent:
    """SpcIndirectDataContent DER (the full SEQUENCE). Only ParseError escapes; the walk
    is bounded first (:func:`imasim._der.check_bounds`)."""
    buf = bytes(data)
    check_bounds(buf, limits, what="SpcIndirectDataContent")
    top = parse_tlv(buf).expect(SEQUENCE, "SpcIndirectDataContent")
    if top.end != len(buf):
        raise ParseError("trailing bytes after SpcIndirectDataContent", offset=top.end,
                         field="SpcIndirectDataContent")
    parts = _exact(top, 2, "SpcIndirectDataContent")
    attr = _exact(parts[0].expect(SEQUENCE, "SpcAttributeTypeAndOptionalValue"), 0,
                  "SpcAttributeTypeAndOptionalValue")
    if not 1 <= len(attr) <= 2:
        raise ParseError("SpcAttributeTypeAndOptionalValue has the wrong number of elements",
                         offset=parts[0].start, field="SpcAttributeTypeAndOptionalValue")
    dtype = decode_oid(attr[0])
    dinfo = _exact(parts[1].expect(SEQUENCE, "DigestInfo"), 2, "DigestInfo")
    algid = dinfo[0].expect(SEQUENCE, "digestAlgorithm").items(1, "digestAlgorithm")
    if len(algid) > 2:
        raise ParseError("digestAlgorithm has too many elements", offset=dinfo[0].start,
                         field="digestAlgorithm")
    doid = decode_oid(algid[0])
    digest = dinfo[1].expect(OCTET_STRING, "digest").content
    return SpcIndirectDataContent(
        data_type=dtype, data_value=attr[1].raw if len(attr) > 1 else None, digest_oid=doid,
        digest_alg=_HASH_OIDS.get(doid), digest=digest, raw=buf)


def _exact(t: Tlv, n: int, what: str) -> list[Tlv]:
    items = t.items(0, what)
    if n and len(items) != n:
        raise ParseError(f"{what} has {len(items)} elements, expected {n}", offset=t.start,
                         field=what, expected=n, actual=len(items))
    return items


def _mscode_parse(content: bytes | None) -> SpcIndirectDataContent:
    """mscode_parse with the kernel's rules: content type and digest algorithm."""
    if content is None:
        raise ParseError("PKCS#7 has no content", field="content")  # -ENODATA
    spc = parse_spc_indirect_data(der(SEQUENCE, content))
    if spc.data_type not in (OID_SPC_PE_IMAGE_DATA, OID_SPC_INDIVIDUAL_SP_KEY_PURPOSE):
        raise ParseError("unexpected content type in SpcIndirectDataContent",
                         field="contentType", actual=spc.data_type)
    if spc.data_value is None:
        raise ParseError("SpcAttributeTypeAndOptionalValue without parameters",
                         field="parameters")
    if spc.digest_alg in _KERNEL_IMAGE_DIGESTS:
        return spc
    if spc.digest_oid in _KNOWN_HASH_OIDS:
        raise UnsupportedAlgorithmError(f"image digest algorithm {spc.digest_oid}")
    raise ParseError("unknown image digest algorithm", field="digestAlgorithm",
                     actual=spc.digest_oid)


# -- reading every signature ------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticodeSignature:
    """One signature: WIN_CERTIFICATE entry ``entry``; ``nested`` 0 for the entry's own
    SignedData, n for its n-th nested signature (unsigned attribute 1.3.6.1.4.1.311.2.4.1)."""

    entry: int
    nested: int
    certificate: WinCertificate = field(repr=False)
    signed_data: SignedData = field(repr=False)
    indirect_data: SpcIndirectDataContent


def _nested_pkcs7(sd: SignedData) -> list[bytes]:
    """ContentInfo DER of each nested signature in the first SignerInfo's unsigned attrs."""
    si = parse_tlv(sd.signer_infos[0].raw)
    items = si.items(0, "SignerInfo")
    out: list[bytes] = []
    if items and items[-1].tag == 0xA1:
        for attr in items[-1].children():
            parts = attr.expect(SEQUENCE, "Attribute").items(2, "Attribute")
            if decode_oid(parts[0]) == OID_NESTED_SIGNATURE:
                out.extend(v.raw for v in parts[1].expect(SET, "AttributeValues").children())
    return out


def parse_authenticode(image: PeImage | bytes | bytearray | memoryview, *,
                       limits: Limits = DEFAULT_LIMITS) -> tuple[AuthenticodeSignature, ...]:
    """Every signature of the image: each WIN_CERTIFICATE entry, then its nested ones.

    This reads what Windows and osslsigncode read; the kernel looks at the first only.
    """
    out: list[AuthenticodeSignature] = []
    for i, wc in enumerate(parse_certificate_table(image, limits=limits)):
        if wc.certificate_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA or len(wc.certificate) < 4:
            continue
        try:
            der_sd = wc.certificate[:_pkcs7_tlv(wc.certificate, wc.offset + 8)]
            sd = parse_pkcs7(der_sd)
            blobs = [der_sd, *_nested_pkcs7(sd)]
            for n, blob in enumerate(blobs):
                sdn = sd if n == 0 else parse_pkcs7(blob)
                if sdn.content is None:
                    raise ParseError("Authenticode SignedData without content",
                                     field="content")
                spc = parse_spc_indirect_data(der(SEQUENCE, sdn.content))
                out.append(AuthenticodeSignature(entry=i, nested=n, certificate=wc,
                                                 signed_data=sdn, indirect_data=spc))
        except ParseError as exc:
            raise exc.with_path(f"certificate[{i}]") from None
    return tuple(out)


# -- verification -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedAuthenticode:
    """An image whose signature verified: which keyring and key, which digest."""

    signature: VerifiedSignature
    indirect_data: SpcIndirectDataContent
    keyring: str
    digest: bytes
    digest_alg: HashAlgorithm
    entry: int = 0


def _verify_entry(img: PeImage, pkcs7: bytes, keyrings: Sequence[Keyring],
                  blacklist: Blacklist | None, rules: DigestRules,
                  entry: int) -> VerifiedAuthenticode:
    if not keyrings:
        raise UsageError("no keyring to verify against")
    sd = parse_pkcs7(pkcs7)
    verified: VerifiedSignature | None = None
    ring = keyrings[0]
    for ring in keyrings:
        try:
            verified = verify_pkcs7(sd, None, keyring=ring, usage=Usage.KEXEC_PE_SIGNATURE,
                                    blacklist=blacklist)
            break
        except KeyNotFoundError:
            if ring is keyrings[-1]:
                raise
    assert verified is not None
    spc = _mscode_parse(sd.content)
    assert spc.digest_alg is not None
    if len(spc.digest) != spc.digest_alg.digest_size:
        raise ParseError("image digest has the wrong size", field="digest",
                         expected=spc.digest_alg.digest_size, actual=len(spc.digest))
    digest = authenticode_digest(img, spc.digest_alg, rules=rules)
    if digest != spc.digest:
        raise DigestMismatchError(f"image digest {digest.hex()} differs from the signed "
                                  f"{spc.digest.hex()}")
    return VerifiedAuthenticode(signature=verified, indirect_data=spc, keyring=ring.name,
                                digest=digest, digest_alg=spc.digest_alg, entry=entry)


def verify_authenticode(
    data: PeImage | bytes | bytearray | memoryview,
    *,
    keyrings: Sequence[Keyring],
    blacklist: Blacklist | None = None,
    rules: VerifyRules = VerifyRules.KERNEL,
    wrapper: WrapperRules = WrapperRules.RELAXED,
) -> VerifiedAuthenticode:
    """verify_pefile_signature (``rules=KERNEL``), or the firmware's check (``UEFI``).

    ``keyrings`` are tried in order while the answer is -ENOKEY: pass
    ``(secondary, platform)`` for kexec_file_load. The errors are in the module docstring.
    """
    img = _image(data)
    if rules is VerifyRules.KERNEL:
        pkcs7 = strip_sig_wrapper(img, wrapper=wrapper)
        return _verify_entry(img, pkcs7, keyrings, blacklist, DigestRules.KERNEL, 0)
    # EDK2 DxeImageVerificationHandler: an unsigned image is refused (imasim keeps no db
    # of image hashes), after the dbx check of its SHA-256 hash
    entries = parse_certificate_table(img)
    if not entries:
        if blacklist is not None:
            _check_image_hash(img, HashAlgorithm.SHA256, blacklist)
        raise UnsignedError("unsigned PE binary")
    verified: VerifiedAuthenticode | None = None
    failure: Exception | None = None
    for i, wc in enumerate(entries):
        if wc.revision != WIN_CERT_REVISION_2_0 or \
                wc.certificate_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            continue
        try:  # HashPeImageByType: an entry that cannot be read is skipped ("continue")
            pkcs7 = wc.certificate[:_pkcs7_tlv(wc.certificate, wc.offset + 8)]
            sd = parse_pkcs7(pkcs7)
            alg = _mscode_parse(sd.content).digest_alg
        except (ParseError, UnsupportedAlgorithmError) as exc:
            failure = exc
            continue
        assert alg is not None
        if blacklist is not None:  # IsForbiddenByDbx: the loop stops, the image is refused
            for chain in _signer_chains(sd):
                for key in chain:
                    if blacklist.is_key_blocked(key):
                        raise RevokedError(f"WIN_CERTIFICATE {i}: certificate "
                                           f"{key.description!r} is in dbx")
        if verified is None:  # IsAllowedByDb, only until one entry verified
            try:
                verified = _verify_entry(img, pkcs7, keyrings, blacklist, DigestRules.KERNEL,
                                         i)
            except RevokedError:
                raise
            except (ParseError, KeyNotFoundError, KeyRejectedError, DigestMismatchError,
                    UnsupportedAlgorithmError) as exc:
                failure = exc
        if blacklist is not None:  # the image hash in this entry's algorithm
            _check_image_hash(img, alg, blacklist)
    if verified is not None:
        return verified
    if failure is None:
        raise UnsupportedAlgorithmError("no WIN_CERTIFICATE entry of type PKCS")
    raise failure


def _check_image_hash(img: PeImage, alg: HashAlgorithm, dbx: Blacklist) -> None:
    digest = authenticode_digest(img, alg)
    if dbx.is_binary_blocked(digest):
        raise RevokedError(f"image hash {digest.hex()} is in dbx")


# -- signing ----------------------------------------------------------------------------
_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _der_time(t: datetime.datetime) -> bytes:
    t = t.astimezone(datetime.UTC)
    if 1950 <= t.year < 2050:
        return der(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    return der(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


def _make_pkcs7(digest: bytes, alg: HashAlgorithm, key: _PrivateKey,
                certificate: x509.Certificate, signing_time: datetime.datetime | None,
                extra_certificates: Sequence[x509.Certificate] = ()) -> bytes:
    spc = SpcIndirectDataContent.create(digest, alg)
    extra = [der(SEQUENCE, der_oid(OID_SPC_SP_OPUS_INFO) + der(SET, der(SEQUENCE, b"")))]
    if signing_time is not None:
        extra.append(der(SEQUENCE, der_oid(OID_SIGNING_TIME)
                         + der(SET, _der_time(signing_time))))
    p7 = sign_pkcs7(spc.content_octets, key=key, certificate=certificate, hash_alg=alg,
                    detached=False, include_certificate=True, signed_attributes=True,
                    content_type=OID_SPC_INDIRECT_DATA, encapsulated=spc.raw,
                    extra_signed_attributes=extra)
    if extra_certificates:
        p7 = _add_certificates(p7, [c.public_bytes(Encoding.DER) for c in extra_certificates])
    return p7


def _add_certificates(outer: bytes, certs: Sequence[bytes]) -> bytes:
    """Append certificates to SignedData.certificates (sbsign ``--addcert``)."""
    ci = parse_tlv(outer).expect(SEQUENCE, "ContentInfo")
    ci_items = ci.items(2, "ContentInfo")
    sd = ci_items[1].items(1, "content")[0].expect(SEQUENCE, "SignedData")
    items = sd.items(4, "SignedData")
    head, rest = [x.raw for x in items[:3]], items[3:]
    if rest[0].tag == 0xA0:
        certs_field = der(0xA0, rest[0].content + b"".join(certs))
        rest = rest[1:]
    else:
        certs_field = der(0xA0, b"".join(certs))
    new_sd = der(SEQUENCE, b"".join([*head, certs_field, *(x.raw for x in rest)]))
    return der(SEQUENCE, ci_items[0].raw + der(0xA0, new_sd))


def _rebuild(t: Tlv, children: Sequence[bytes]) -> bytes:
    return der(t.tag, b"".join(children))


def _nest_into(outer: bytes, nested: bytes) -> bytes:
    """Add ``nested`` (a ContentInfo) as unsigned attribute 1.3.6.1.4.1.311.2.4.1 of the
    first SignerInfo of ``outer``; everything else keeps its bytes."""
    ci = parse_tlv(outer).expect(SEQUENCE, "ContentInfo")
    ci_items = ci.items(2, "ContentInfo")
    explicit = ci_items[1].expect(0xA0, "content")
    sd = explicit.items(1, "content")[0].expect(SEQUENCE, "SignedData")
    sd_items = sd.items(4, "SignedData")
    sis = sd_items[-1].expect(SET, "signerInfos")
    si_list = sis.items(1, "signerInfos")
    first = si_list[0]
    f_items = first.items(5, "SignerInfo")
    if f_items[-1].tag == 0xA1:
        attrs = f_items[-1]
        existing = [a.raw for a in attrs.children()]
        nested_attr = None
        for k, a in enumerate(attrs.children()):
            parts = a.items(2, "Attribute")
            if decode_oid(parts[0]) == OID_NESTED_SIGNATURE:
                values = [v.raw for v in parts[1].children()]
                nested_attr = k
                existing[k] = der(SEQUENCE, parts[0].raw + der(SET, b"".join(
                    [*values, nested])))
        if nested_attr is None:
            existing.append(der(SEQUENCE, der_oid(OID_NESTED_SIGNATURE) + der(SET, nested)))
        new_first = _rebuild(first, [x.raw for x in f_items[:-1]]
                             + [der(0xA1, b"".join(existing))])
    else:
        new_first = _rebuild(first, [x.raw for x in f_items] + [der(0xA1, der(
            SEQUENCE, der_oid(OID_NESTED_SIGNATURE) + der(SET, nested)))])
    new_sis = _rebuild(sis, [new_first] + [s.raw for s in si_list[1:]])
    new_sd = _rebuild(sd, [x.raw for x in sd_items[:-1]] + [new_sis])
    return _rebuild(ci, [ci_items[0].raw, der(0xA0, new_sd)] + [x.raw for x in ci_items[2:]])


def _win_certificate(pkcs7: bytes) -> bytes:
    body = (len(pkcs7) + 8).to_bytes(4, "little") + WIN_CERT_REVISION_2_0.to_bytes(
        2, "little") + WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_bytes(2, "little") + pkcs7
    return body + bytes(-len(body) % 8)


def _finish(body: bytearray, img: PeImage, table: bytes) -> bytes:
    """Append the table, point directory entry 4 at it, and set the CheckSum."""
    d = img.certificate_directory
    assert d is not None
    va = len(body) if table else 0
    body[d.offset:d.offset + 8] = va.to_bytes(4, "little") + len(table).to_bytes(4, "little")
    out = body + table
    out[img.checksum_offset:img.checksum_offset + 4] = pe_checksum(
        out, img.checksum_offset).to_bytes(4, "little")
    return bytes(out)


def sign_pe(
    data: bytes | bytearray | memoryview,
    *,
    key: _PrivateKey,
    certificate: x509.Certificate,
    hash_alg: HashAlgorithm = HashAlgorithm.SHA256,
    mode: SignMode = SignMode.NEW,
    signing_time: datetime.datetime | None = None,
    extra_certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign a PE image and return the new image (see :class:`SignMode`).

    ``extra_certificates`` are added to the PKCS#7 after the signer's (sbsign
    ``--addcert``: intermediate certificates).
    """
    img = parse_pe(data)
    d = img.certificate_directory
    if d is None:
        raise UsageError("the image has no certificate table directory entry")
    if img.is_signed and d.virtual_address + d.size != len(img.raw):
        raise UsageError("the certificate table is not at the end of the image")
    if mode in (SignMode.NEW, SignMode.REPLACE):
        if img.is_signed and mode is SignMode.NEW:
            raise UsageError("the image is already signed (use APPEND, NEST or REPLACE)")
        end = d.virtual_address if img.is_signed else len(img.raw)
        body = bytearray(img.raw[:end])
        body += bytes(-len(body) % 8)  # sbsign pads the image to 8 bytes
        unsigned = bytearray(body)
        unsigned[d.offset:d.offset + 8] = bytes(8)
        digest = authenticode_digest(bytes(unsigned), hash_alg)
        pkcs7 = _make_pkcs7(digest, hash_alg, key, certificate, signing_time,
                            extra_certificates)
        return _finish(body, img, _win_certificate(pkcs7))
    if not img.is_signed:
        raise UsageError(f"{mode.value}: the image has no signature yet")
    entries = parse_certificate_table(img)
    digest = authenticode_digest(img, hash_alg)
    pkcs7 = _make_pkcs7(digest, hash_alg, key, certificate, signing_time, extra_certificates)
    body = bytearray(img.raw[:d.virtual_address])
    if mode is SignMode.APPEND:
        table = bytes(img.certificate_table)
        table += bytes(-len(table) % 8) + _win_certificate(pkcs7)
        return _finish(body, img, table)
    first = entries[0]
    outer = first.certificate[:_pkcs7_tlv(first.certificate, first.offset + 8)]
    new_first = _win_certificate(_nest_into(outer, pkcs7))
    rest = b"".join(e.to_bytes() + bytes(-e.length % 8) for e in entries[1:])
    return _finish(body, img, new_first + rest)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticodeBuilder:
    """Immutable builder: ``AuthenticodeBuilder().add_signer(k, c).sign(image)``.

    The first signer signs as sbsign does; each further signer is nested into the first
    signature as osslsigncode ``-nest`` does (``append=True``: a new WIN_CERTIFICATE
    entry instead, as sbsign does on a signed image).
    """

    hash_alg: HashAlgorithm = HashAlgorithm.SHA256
    signers: tuple[tuple[_PrivateKey, x509.Certificate, HashAlgorithm], ...] = ()
    time: datetime.datetime | None = None
    append: bool = False

    def hash_algorithm(self, alg: HashAlgorithm) -> AuthenticodeBuilder:
        return replace(self, hash_alg=alg)

    def signing_time(self, t: datetime.datetime) -> AuthenticodeBuilder:
        return replace(self, time=t)

    def add_signer(self, key: _PrivateKey, certificate: x509.Certificate, *,
                   hash_alg: HashAlgorithm | None = None) -> AuthenticodeBuilder:
        return replace(self, signers=(*self.signers, (key, certificate,
                                                      hash_alg or self.hash_alg)))

    def sign(self, image: bytes | bytearray | memoryview) -> bytes:
        if not self.signers:
            raise UsageError("no signer")
        out = bytes(image)
        for n, (key, cert, alg) in enumerate(self.signers):
            mode = SignMode.NEW if n == 0 else (SignMode.APPEND if self.append
                                                else SignMode.NEST)
            out = sign_pe(out, key=key, certificate=cert, hash_alg=alg, mode=mode,
                          signing_time=self.time)
        return out
