"""pkcs7_verify_one and pkcs7_verify_sig_chain rules: the signingTime window of the
embedded signer, and the errors of the embedded-certificate chain walk."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from imasim.errors import KeyNotFoundError, KeyRejectedError
from imasim.keys import Keyring
from imasim.sig import build_pe, sign_pe, verify_authenticode
from pe.pe_support import rsa_chain
from pki import Signer, rsa_key

IMAGE = build_pe(b"kernel")


def _ring(*signers: Signer) -> Keyring:
    ring = Keyring(".secondary_trusted_keys")
    for s in signers:
        ring.add(s.as_key())
    return ring


@pytest.mark.parametrize("when, ok", [
    (datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC), True),    # inside 2025..2035
    (datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC), False),   # before notBefore
    (datetime.datetime(2049, 1, 1, tzinfo=datetime.UTC), False),   # after notAfter
])
def test_signing_time_must_lie_in_the_signers_validity(when: datetime.datetime,
                                                       ok: bool) -> None:
    c = rsa_chain()
    signed = sign_pe(IMAGE, key=c["direct"].key, certificate=c["direct"].cert,
                     signing_time=when)
    if ok:
        verify_authenticode(signed, keyrings=[_ring(c["root"])])
    else:
        with pytest.raises(KeyRejectedError, match="validity window"):
            verify_authenticode(signed, keyrings=[_ring(c["root"])])


def _impostor(real: Signer) -> Signer:
    """A CA certificate with the real one's subject and SKID but another key."""
    key = rsa_key("impostor")
    ski = real.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(real.cert.subject)
            .issuer_name(real.cert.issuer).public_key(key.public_key())
            .serial_number(real.cert.serial_number)
            .not_valid_before(real.cert.not_valid_before_utc)
            .not_valid_after(real.cert.not_valid_after_utc)
            .add_extension(ski, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return Signer(key, cert)


def test_an_embedded_issuer_whose_signature_fails_is_key_rejected() -> None:
    """The kernel returns public_key_verify_signature's -EKEYREJECTED from the chain walk,
    not -ENOKEY: the message is refused even though the signer itself verified."""
    c = rsa_chain()
    good = sign_pe(IMAGE, key=c["leaf"].key, certificate=c["leaf"].cert,
                   extra_certificates=[c["inter"].cert])
    verify_authenticode(good, keyrings=[_ring(c["root"])])
    bad = sign_pe(IMAGE, key=c["leaf"].key, certificate=c["leaf"].cert,
                  extra_certificates=[_impostor(c["inter"]).cert])
    with pytest.raises(KeyRejectedError, match="not signed by its embedded issuer"):
        verify_authenticode(bad, keyrings=[_ring(c["root"])])


def test_a_missing_issuer_ends_the_chain_and_trust_decides() -> None:
    c = rsa_chain()
    alone = sign_pe(IMAGE, key=c["leaf"].key, certificate=c["leaf"].cert)
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(alone, keyrings=[_ring(c["root"])])
    verify_authenticode(alone, keyrings=[_ring(c["inter"])])
