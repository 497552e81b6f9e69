"""Resource bounds passed to parsers, so untrusted input cannot exhaust memory or time."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Upper bounds a parser enforces (``LimitExceededError`` when one is crossed).

    The defaults follow the kernel where it has a limit: ``MAX_TEMPLATE_NAME_LEN`` is 255,
    ``IMA_TEMPLATE_NUM_FIELDS_MAX`` is 15, template data is capped at ``MAX_TEMPLATE_DATA``
    in ``ima_restore_template_data`` (imasim allows more, since lists are read offline,
    but never more than the input holds).
    """

    max_entries: int = 100_000_000
    max_template_name: int = 255
    max_template_fields: int = 15
    max_template_data: int = 64 * 1024 * 1024
    max_asn1_depth: int = 32
    max_asn1_length: int = 64 * 1024 * 1024
    #: elements in one DER message (PKCS#7, SpcIndirectDataContent), checked by an
    #: iterative walk before any schema decoder sees the bytes: pyasn1 spends about
    #: 12 us and 0.7 KB per element, so 20,000 elements cost at most ~0.25 s and ~15 MB
    max_asn1_elements: int = 20_000
    #: entries in each of a PKCS#7's digestAlgorithms, certificates, crls and signerInfos
    max_pkcs7_entries: int = 256
    max_pe_sections: int = 96
    max_pe_certificates: int = 64
    max_policy_lines: int = 100_000
    max_line_length: int = 1024 * 1024
    max_archive_members: int = 1_000_000
    #: decompressed bytes of all compressed members of one archive together
    max_archive_size: int = 1024 * 1024 * 1024
    #: keywords in one tar pax header (and in the global ones together); ext4 holds at
    #: most a 4 KiB block of xattrs a file, ~200 entries
    max_pax_records: int = 256


DEFAULT_LIMITS = Limits()
