"""Shared CLI helpers: a keyring from --trust certificates, private keys from files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import ParseError, UsageError
from ..keys.key import Key
from ..keys.keyring import Keyring


def trust_keyring(paths: Sequence[Path], name: str = ".trusted") -> Keyring:
    """A keyring holding the certificates given with --trust (PEM or DER)."""
    if not paths:
        raise UsageError("give at least one --trust CERT")
    ring = Keyring(name)
    for p in paths:
        ring.add(Key.from_certificate(p.read_bytes()))
    return ring


def load_private_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    data = path.read_bytes()
    try:
        key = (serialization.load_pem_private_key(data, None) if b"-----" in data
               else serialization.load_der_private_key(data, None))
    except (ValueError, TypeError) as exc:
        raise ParseError(f"{path}: not an unencrypted private key ({exc})", field="key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise UsageError("only RSA and EC keys can sign")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        return (x509.load_pem_x509_certificate(data) if b"-----" in data
                else x509.load_der_x509_certificate(data))
    except ValueError as exc:
        raise ParseError(f"{path}: not a certificate ({exc})", field="certificate") from None
