"""Kernel keyrings: keys from X.509, restriction callbacks, the blacklist.

The trust of everything the kernel verifies (modules, kexec images, IMA signatures, IPE
policies) is decided by which keys are in which keyring, and a keyring's restriction
decides which keys may enter it.
"""

from __future__ import annotations

from .key import Key, PublicKey, parse_key, verify_signature
from .keyring import (
    Blacklist,
    BlacklistKey,
    EventLog,
    Keyring,
    KeyringEvent,
    Restriction,
    parse_restriction,
    restrict_link_by_builtin_and_secondary_trusted,
    restrict_link_by_builtin_secondary_and_machine,
    restrict_link_by_builtin_trusted,
    restrict_link_by_ca,
    restrict_link_by_ca_max,
    restrict_link_by_digsig,
    restrict_link_by_key_or_keyring,
    restrict_link_by_key_or_keyring_chain,
    restrict_link_by_signature,
    restrict_link_reject,
)

__all__ = [
    "Blacklist",
    "BlacklistKey",
    "EventLog",
    "Key",
    "Keyring",
    "KeyringEvent",
    "PublicKey",
    "Restriction",
    "parse_key",
    "parse_restriction",
    "restrict_link_by_builtin_and_secondary_trusted",
    "restrict_link_by_builtin_secondary_and_machine",
    "restrict_link_by_builtin_trusted",
    "restrict_link_by_ca",
    "restrict_link_by_ca_max",
    "restrict_link_by_digsig",
    "restrict_link_by_key_or_keyring",
    "restrict_link_by_key_or_keyring_chain",
    "restrict_link_by_signature",
    "restrict_link_reject",
    "verify_signature",
]
