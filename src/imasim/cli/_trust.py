"""Shared CLI helpers: a keyring from --trust certificates, private keys from files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import ParseError, UnsupportedAlgorithmError, UsageError
from ..keys.key import Key
from ..keys.keyring import Keyring
from ._io import CERTIFICATE, PRIVATE_KEY, display_name, explained, read_input

_CERT = "a certificate (PEM or DER)"
_KEY = "an unencrypted private key (PEM or DER)"


def certificate_key(path: Path) -> Key:
    """The key of the certificate at ``path`` (``-``: stdin), refused with one line when
    the file is not a certificate or holds a key imasim cannot use."""
    data = read_input(path, _CERT, CERTIFICATE)
    with explained(path, data, _CERT):
        try:
            return Key.from_certificate(data)
        except UnsupportedAlgorithmError as exc:
            raise ParseError(f"{display_name(path)}: {exc}") from None


def trust_keyring(paths: Sequence[Path], name: str = ".trusted") -> Keyring:
    """A keyring holding the certificates given with --trust (PEM or DER)."""
    if not paths:
        raise UsageError("give at least one --trust CERT")
    ring = Keyring(name)
    for p in paths:
        ring.add(certificate_key(p))
    return ring


def load_private_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    data = read_input(path, _KEY, PRIVATE_KEY)
    try:
        key = (serialization.load_pem_private_key(data, None) if b"-----" in data
               else serialization.load_der_private_key(data, None))
    except (ValueError, TypeError) as exc:
        raise ParseError(f"{display_name(path)}: not an unencrypted private key "
                         f"({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise UsageError(f"{display_name(path)}: only RSA and EC keys can sign")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    data = read_input(path, _CERT, CERTIFICATE)
    try:
        return (x509.load_pem_x509_certificate(data) if b"-----" in data
                else x509.load_der_x509_certificate(data))
    except ValueError as exc:
        raise ParseError(f"{display_name(path)}: not a certificate "
                         f"({' '.join(str(exc).split())[:200]})") from None
