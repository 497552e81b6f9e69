"""Signatures the kernel verifies: PKCS#7/CMS, appended module signatures, security.ima."""

from __future__ import annotations

from .modsig import ModuleSignature, parse_modsig, sign_module, split_modsig, verify_modsig
from .pkcs7 import (
    SignedData,
    SignerInfo,
    Usage,
    VerifiedSignature,
    parse_pkcs7,
    sign_pkcs7,
    verify_pkcs7,
)

__all__ = [
    "ModuleSignature",
    "SignedData",
    "SignerInfo",
    "Usage",
    "VerifiedSignature",
    "parse_modsig",
    "parse_pkcs7",
    "sign_module",
    "sign_pkcs7",
    "split_modsig",
    "verify_modsig",
    "verify_pkcs7",
]
