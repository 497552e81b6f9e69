"""Signatures the kernel verifies: PKCS#7/CMS, appended module signatures, security.ima,
PE/COFF Authenticode."""

from __future__ import annotations

from .authenticode import (
    AuthenticodeBuilder,
    DigestRules,
    SignMode,
    VerifiedAuthenticode,
    VerifyRules,
    authenticode_digest,
    parse_authenticode,
    sign_pe,
    verify_authenticode,
)
from .modsig import ModuleSignature, parse_modsig, sign_module, split_modsig, verify_modsig
from .pefile import PeImage, build_pe, parse_pe
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
    "AuthenticodeBuilder",
    "DigestRules",
    "ModuleSignature",
    "PeImage",
    "SignMode",
    "SignedData",
    "SignerInfo",
    "Usage",
    "VerifiedAuthenticode",
    "VerifiedSignature",
    "VerifyRules",
    "authenticode_digest",
    "build_pe",
    "parse_authenticode",
    "parse_modsig",
    "parse_pe",
    "parse_pkcs7",
    "sign_module",
    "sign_pe",
    "sign_pkcs7",
    "split_modsig",
    "verify_authenticode",
    "verify_modsig",
    "verify_pkcs7",
]
