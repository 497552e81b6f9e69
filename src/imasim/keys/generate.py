"""Deterministic test keys and certificates, for simulations that must give the same bytes
on every run (the demo, scenario files, tests).

A key is derived from a seed string, so a scenario that names its keys gets the same
signatures, key ids and measurement lists everywhere. These are **test keys**: anyone
who knows the seed has the private key.

>>> ca_key = derive_ec_key("vendor-ca")
>>> ca = make_certificate("Vendor CA", ca_key, ca=True)
>>> leaf = make_certificate("Vendor signer", derive_ec_key("signer"), issuer=(ca, ca_key))
>>> leaf.issuer == ca.subject, derive_ec_key("vendor-ca").private_numbers() == \\
...     ca_key.private_numbers()
(True, True)
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["NOT_BEFORE", "derive_ec_key", "make_certificate"]

_N: Final = int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)
#: the validity start of every generated certificate (ten years from here)
NOT_BEFORE: Final = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def derive_ec_key(seed: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key whose scalar is SHA-256(seed) reduced into [1, n-1]."""
    d = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (_N - 1) + 1
    return ec.derive_private_key(d, ec.SECP256R1())


def make_certificate(cn: str, key: ec.EllipticCurvePrivateKey, *,
                     issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                     ca: bool = False, organization: str = "imasim demo") -> x509.Certificate:
    """An X.509 v3 certificate for ``key`` (self-signed unless ``issuer`` is given) with a
    subject key identifier, basic constraints and, when issued, an authority key
    identifier: what the kernel needs to chain it and name it ``"<CN>: <SKID>"``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer[0].subject if issuer else name).public_key(key.public_key())
         .serial_number(int.from_bytes(hashlib.sha1(cn.encode()).digest()[:8], "big"))
         .not_valid_before(NOT_BEFORE).not_valid_after(NOT_BEFORE + datetime.timedelta(days=3650))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if issuer:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer[1].public_key()), False)
    return b.sign(issuer[1] if issuer else key, hashes.SHA256(), ecdsa_deterministic=True)
