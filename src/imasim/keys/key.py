"""crypto/asymmetric_keys/x509_public_key.c: asymmetric keys from X.509 certificates.

A :class:`Key` carries what the kernel derives from a certificate: the description
``"<CN or O>: <SKID hex>"`` (x509_key_preparse, x509_fabricate_name), the key ids
(id[0] = serial || issuer, id[1] = SKID, id[2] = subject, as
asymmetric_key_generate_id builds them from the raw DER contents), and the authority
key identifier used to find the issuer.

>>> from pathlib import Path
>>> pem = Path("tests/vectors/debian/debian-secure-boot-ca.pem").read_bytes()
>>> key = Key.from_certificate(pem)
>>> key.description
'Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1'
>>> key.key_id_v2.hex()
'bb419ea1'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .._der import SEQUENCE, Tlv, check_bounds, decode_oid, parse_tlv
from ..errors import (
    KeyRejectedError,
    ParseError,
    SignatureInvalidError,
    UnsupportedAlgorithmError,
)

__all__ = ["Key", "PublicKey", "parse_key", "verify_signature"]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


_CN: Final = "2.5.4.3"
_O: Final = "2.5.4.10"
_EMAIL: Final = "1.2.840.113549.1.9.1"


def _fabricate_name(subject: bytes) -> str:
    r"""x509_cert_parser.c x509_fabricate_name, on the subject Name's raw contents.

    x509_extract_name_segment keeps the raw contents (whatever the string type) of the
    *last* CN, O and emailAddress, and an empty one counts as absent. With both CN and O,
    the name is "O: CN" unless the CN starts with the whole O, or both are at least 7
    bytes long and share their first 7 bytes (then the CN alone); with one, that one;
    else the emailAddress. The kernel keeps a C string, so it ends at the first NUL.
    """
    values: dict[str, bytes] = {}
    pos = 0
    while pos < len(subject):
        rdn = parse_tlv(subject, pos)
        pos = rdn.end
        for atv in rdn.children():
            oid, value = atv.items(2, "AttributeTypeAndValue")[:2]
            values[decode_oid(oid)] = value.content
    cn, o = values.get(_CN, b""), values.get(_O, b"")
    if cn and o:
        if (len(cn) >= len(o) and cn[:len(o)] == o) or (
                len(cn) >= 7 and len(o) >= 7 and cn[:7] == o[:7]):
            name = cn
        else:
            name = o + b": " + cn
    else:
        name = cn or o or values.get(_EMAIL, b"")
    return name.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Key:
    """An asymmetric key as a keyring holds it. ``ids`` are the kernel's key ids."""

    description: str
    public_key: PublicKey
    ids: tuple[bytes, ...]
    certificate: x509.Certificate | None = field(default=None, compare=False, repr=False)
    der: bytes | None = field(default=None, repr=False)
    skid: bytes | None = None
    #: authority key identifier of the certificate: (issuer+serial id, keyIdentifier)
    auth_ids: tuple[bytes | None, bytes | None] = (None, None)
    is_ca: bool = False
    key_usage_digital_signature: bool | None = None
    key_cert_sign: bool | None = None
    self_signed: bool = False
    #: the raw issuer Name contents: auth_ids[2], the kernel's lookup when there is no
    #: AKID (x509_note_issuer, Linux 5.19+), matched against a key's id[2] (subject)
    issuer_raw: bytes = b""

    @classmethod
    def from_certificate(cls, data: bytes) -> Key:
        """A key from a DER or PEM X.509 certificate (ParseError for a bad one)."""
        try:
            cert = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
                    else x509.load_der_x509_certificate(data))
        except (ValueError, x509.InvalidVersion) as exc:
            raise ParseError(f"not an X.509 certificate: {exc}", field="certificate") from None
        try:
            pub = cert.public_key()
        except UnsupportedAlgorithm as exc:
            raise UnsupportedAlgorithmError(f"certificate key: {exc}") from None
        except ValueError as exc:
            raise ParseError(f"bad certificate public key: {exc}", field="subjectPublicKeyInfo"
                             ) from None
        if not isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise UnsupportedAlgorithmError(f"unsupported key type {type(pub).__name__}")
        der_bytes = cert.public_bytes(serialization.Encoding.DER)
        check_bounds(der_bytes, what="certificate")  # before walking its names in Python
        serial_raw, issuer_raw, subject_raw = _raw_names(der_bytes)
        skid: bytes | None = None
        akid: tuple[bytes | None, bytes | None] = (None, None)
        is_ca = False
        ku_ds: bool | None = None
        ku_cs: bool | None = None
        try:
            for ext in cert.extensions:
                v = ext.value
                if isinstance(v, x509.SubjectKeyIdentifier):
                    skid = v.digest
                elif isinstance(v, x509.AuthorityKeyIdentifier):
                    a0 = None
                    if v.authority_cert_issuer and v.authority_cert_serial_number is not None:
                        iss = v.authority_cert_issuer[0]
                        if isinstance(iss, x509.DirectoryName):
                            name_der = iss.value.public_bytes()
                            a0 = _int_content(v.authority_cert_serial_number) + \
                                parse_tlv(name_der).content
                    akid = (a0, v.key_identifier)
                elif isinstance(v, x509.BasicConstraints):
                    is_ca = v.ca
                elif isinstance(v, x509.KeyUsage):
                    ku_ds, ku_cs = v.digital_signature, v.key_cert_sign
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            raise ParseError(f"bad certificate extension: {exc}", field="extensions") from None
        name = _fabricate_name(subject_raw)
        try:
            cert.signature_hash_algorithm  # noqa: B018 - parse it now, not at first use
        except (ValueError, KeyError, TypeError) as exc:  # cryptography: unknown/odd tags
            raise ParseError(f"bad certificate name: {exc!r}", field="subject") from None
        except UnsupportedAlgorithm as exc:
            raise UnsupportedAlgorithmError(f"certificate signature: {exc}") from None
        tail = skid if skid is not None else serial_raw
        ids = (serial_raw + issuer_raw, skid if skid is not None else b"", subject_raw)
        key = cls(f"{name}: {tail.hex()}", pub, ids, cert, der_bytes, skid, akid, is_ca,
                  ku_ds, ku_cs, False, issuer_raw)
        if key._check_for_self_signed():
            key = replace(key, self_signed=True)
        return key

    def _check_for_self_signed(self) -> bool:
        """x509_check_for_self_signed: issuer == subject, an AKID (if any) naming this
        certificate (both parts when both are given, else EKEYREJECTED), and the
        signature verifying with the certificate's own key."""
        if self.issuer_raw != self.ids[2]:
            return False
        a0, a1 = self.auth_ids
        if a0 is not None or a1 is not None:
            a = a1 is not None and self.skid == a1
            b = a0 is not None and self.ids[0] == a0
            if not a and not b:
                return False
            if a != b and a0 is not None and a1 is not None:
                raise KeyRejectedError("self-signed certificate whose AKID only partly "
                                       "matches (EKEYREJECTED)")
        return self.signed(self)

    @classmethod
    def from_public_key(cls, public_key: PublicKey, *, description: str) -> Key:
        """A key without a certificate (ids from the SHA-1 of the public key, as evmctl)."""
        spki = public_key.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.PKCS1
                                       if isinstance(public_key, rsa.RSAPublicKey)
                                       else serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = hashlib.sha1(spki).digest()
        return cls(description, public_key, (b"", kid, b""), skid=kid)

    @property
    def key_id_v2(self) -> bytes:
        """The 4-byte key id IMA signature v2 headers carry (last 4 bytes of the SKID)."""
        return (self.skid or self.ids[0])[-4:]

    @property
    def pkey_algo(self) -> str:
        """public_key->pkey_algo as x509_cert_parser sets it (``rsa``, ``ecdsa-nist-p256``)."""
        pub = self.public_key
        if isinstance(pub, rsa.RSAPublicKey):
            return "rsa"
        curve = {"secp192r1": "p192", "secp256r1": "p256", "secp384r1": "p384",
                 "secp521r1": "p521"}.get(pub.curve.name, pub.curve.name)
        return f"ecdsa-nist-{curve}"

    def describe(self) -> str:
        """What /proc/keys shows for the key (asymmetric_key_describe + public_key_describe):
        ``"<description>: X509.<pkey_algo> <last 4 bytes of id[1] hex> []"``."""
        tail = f" {self.ids[1][-4:].hex()}" if self.ids[1] else ""
        kind = "X509" if self.certificate is not None else "raw"
        return f"{self.description}: {kind}.{self.pkey_algo}{tail} []"

    def tbs_hash(self) -> bytes | None:
        """The TBSCertificate's digest with the certificate's signature hash (x509_get_sig_params
        hashes it for the signature check): what ``is_hash_blacklisted(.., "tbs")`` looks up,
        so a ``tbs:`` entry names SHA-256 of it for a sha256WithRSAEncryption certificate."""
        if self.certificate is None:
            return None
        alg = self.certificate.signature_hash_algorithm
        h = hashes.Hash(alg if alg is not None else hashes.SHA256())
        h.update(self.certificate.tbs_certificate_bytes)
        return h.finalize()

    def matches_id(self, wanted: bytes, *, partial: bool) -> bool:
        """asymmetric_match_key_ids: asymmetric_key_id_same (``ex:``) or
        asymmetric_key_id_partial (``id:``, the tail) on id[0] and id[1] only (id[2], the
        subject, is matched by ``dn:``, exactly: asymmetric_key_cmp_name, 5.19+)."""
        for kid in self.ids[:2]:
            if not kid:
                continue
            if (kid.endswith(wanted) if partial else kid == wanted):
                return True
        return False

    def verify(self, signature: bytes, data: bytes,
               hash_alg: hashes.HashAlgorithm | utils.Prehashed) -> None:
        verify_signature(self.public_key, signature, data, hash_alg)

    def signed(self, issuer: Key) -> bool:
        """Does ``issuer``'s key verify this certificate's signature?"""
        if self.certificate is None or self.certificate.signature_hash_algorithm is None:
            return False
        try:
            issuer.verify(self.certificate.signature, self.certificate.tbs_certificate_bytes,
                          self.certificate.signature_hash_algorithm)
        except SignatureInvalidError:
            return False
        return True


def verify_signature(pub: PublicKey, signature: bytes, data: bytes,
                     hash_alg: hashes.HashAlgorithm | utils.Prehashed) -> None:
    """PKCS#1 v1.5 or ECDSA; raises SignatureInvalidError."""
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, data, padding.PKCS1v15(), hash_alg)
        else:
            pub.verify(signature, data, ec.ECDSA(hash_alg))
    except InvalidSignature:
        raise SignatureInvalidError("signature does not verify") from None


def _int_content(v: int) -> bytes:
    return v.to_bytes(v.bit_length() // 8 + 1, "big", signed=True)


def _raw_names(der_bytes: bytes) -> tuple[bytes, bytes, bytes]:
    """The raw serial contents and the issuer/subject Name contents, from the DER."""
    cert = parse_tlv(der_bytes).expect(SEQUENCE, "Certificate")
    tbs = cert.items(1, "Certificate")[0].expect(SEQUENCE, "TBSCertificate")
    items: list[Tlv] = tbs.items(6, "TBSCertificate")
    i = 1 if items[0].tag == 0xA0 else 0
    serial, issuer, subject = items[i], items[i + 2], items[i + 4]
    return serial.content, issuer.content, subject.content


def parse_key(data: bytes) -> Key:
    """Fuzz-friendly alias of :meth:`Key.from_certificate`."""
    return Key.from_certificate(data)
