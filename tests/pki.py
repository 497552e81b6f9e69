"""Deterministic test PKI: root CA, intermediate CA, leaf signers, strangers (never real keys)."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from imasim.keys import Key

_N = int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)
_T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Signer:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def as_key(self) -> Key:
        return Key.from_certificate(self.der)


def ec_key(seed: str) -> ec.EllipticCurvePrivateKey:
    d = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (_N - 1) + 1
    return ec.derive_private_key(d, ec.SECP256R1())


@cache
def rsa_key(seed: str) -> rsa.RSAPrivateKey:
    from imasim.tpm.soft_tpm import _deterministic_rsa

    return _deterministic_rsa(seed.encode())


def make_cert(name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *,
              issuer: Signer | None = None, ca: bool = False,
              digital_signature: bool = True, serial: int | None = None) -> Signer:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imasim tests")])
    pub = key.public_key()
    signing_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
         .public_key(pub)
         .serial_number(serial or int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big"))
         .not_valid_before(_T0).not_valid_after(_T0 + datetime.timedelta(days=3650))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=digital_signature,
                                      content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=False,
                                      key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                                      decipher_only=False), critical=True))
    if issuer is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.key.public_key()), critical=False)  # type: ignore[arg-type]
    return Signer(key, b.sign(signing_key, hashes.SHA256()))


@cache
def pki() -> dict[str, Signer]:
    root = make_cert("imasim root CA", ec_key("root"), ca=True)
    inter = make_cert("imasim intermediate CA", ec_key("inter"), issuer=root, ca=True)
    leaf = make_cert("imasim leaf signer", ec_key("leaf"), issuer=root)
    chained = make_cert("imasim chained signer", ec_key("chained"), issuer=inter)
    stranger = make_cert("stranger", ec_key("stranger"))
    rsa_leaf = make_cert("imasim rsa module key", rsa_key("rsa-leaf"), issuer=root)
    return {"root": root, "inter": inter, "leaf": leaf, "chained": chained,
            "stranger": stranger, "rsa_leaf": rsa_leaf}
