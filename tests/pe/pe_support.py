"""Shared helpers of the PE tests: generated images, signers, keyrings, the Debian cache."""

from __future__ import annotations

import datetime
import hashlib
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from imasim.keys import Keyring
from pe.make_pe import SectionSpec, default_sections, make_pe
from pki import Signer, make_cert, pki, rsa_key
from tools import IN_CI

__all__ = ["DEBIAN_DIR", "SectionSpec", "cross_signed", "debian_image", "default_sections",
           "make_pe", "pki", "ring", "rsa_chain", "unsigned"]

DEBIAN_DIR = Path(__file__).parent.parent / "vectors" / "pe" / "debian"


@cache
def unsigned() -> bytes:
    """The default generated image: PE32+, .text + .data, 0x1000 bytes."""
    return make_pe()


def ring(*signers: Signer, name: str = ".secondary_trusted_keys") -> Keyring:
    r = Keyring(name)
    for s in signers:
        r.add(s.as_key())
    return r


@cache
def rsa_chain() -> dict[str, Signer]:
    """RSA root -> intermediate -> leaf (sbsign/sbverify/osslsigncode are happiest with RSA)."""
    root = make_cert("pe root CA", rsa_key("pe-root"), ca=True)
    inter = make_cert("pe intermediate CA", rsa_key("pe-inter"), issuer=root, ca=True)
    leaf = make_cert("pe signer", rsa_key("pe-leaf"), issuer=inter)
    direct = make_cert("pe direct signer", rsa_key("pe-direct"), issuer=root)
    stranger = make_cert("pe stranger", rsa_key("pe-stranger"))
    return {"root": root, "inter": inter, "leaf": leaf, "direct": direct,
            "stranger": stranger}


@cache
def cross_signed() -> Signer:
    """The intermediate's subject, key and SKID, but issued by the stranger: a certificate
    that cannot chain to the real root although its key signed the leaf."""
    c = rsa_chain()
    inter, stranger = c["inter"], c["stranger"]
    pub = inter.key.public_key()
    t0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(inter.cert.subject)
            .issuer_name(stranger.cert.subject).public_key(pub)
            .serial_number(int.from_bytes(hashlib.sha1(b"cross").digest()[:8], "big"))
            .not_valid_before(t0).not_valid_after(t0 + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                stranger.key.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(stranger.key, hashes.SHA256()))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return Signer(inter.key, cert)


def debian_image(name: str) -> bytes:
    """A real Debian image fetched by fetch_debian_images.sh (skip locally, fail in CI)."""
    path = DEBIAN_DIR / name
    if not path.exists():
        message = f"{path} missing: run tests/pe/fetch_debian_images.sh"
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run must fetch them)")
        pytest.skip(message)
    return path.read_bytes()

