"""security/keys and crypto/asymmetric_keys/restrict.c: keyrings with restriction callbacks.

A :class:`Keyring` admits a key only when its restriction (given at creation, or set
once later) allows it, exactly as ``keyring_alloc(..., restrict_link, ...)`` does. A
restriction is any callable ``(dest: Keyring, key: Key, restriction_key: Keyring | Key
| None) -> None`` that raises :class:`~imasim.errors.KeyRejectedError`; the kernel's
are provided under their kernel names. Every decision is recorded in an event log.

>>> from imasim.keys import Key, Keyring, restrict_link_reject
>>> ring = Keyring(".builtin_trusted_keys", restriction=restrict_link_reject)
>>> ring.restriction_name
'restrict_link_reject'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import KeyNotFoundError, KeyRejectedError, PolicyError, RevokedError, UsageError
from .key import Key

__all__ = [
    "Blacklist",
    "EventLog",
    "Keyring",
    "KeyringEvent",
    "Restriction",
    "parse_restriction",
    "restrict_link_by_builtin_and_secondary_trusted",
    "restrict_link_by_builtin_trusted",
    "restrict_link_by_ca",
    "restrict_link_by_digsig",
    "restrict_link_by_key_or_keyring",
    "restrict_link_by_key_or_keyring_chain",
    "restrict_link_reject",
]


@dataclass(frozen=True, slots=True)
class KeyringEvent:
    """One decision: ``admitted`` or not, into which keyring, which key, and why."""

    keyring: str
    key: str
    admitted: bool
    reason: str


@dataclass
class EventLog:
    """Where keyrings record their decisions (owned by a machine, never global)."""

    events: list[KeyringEvent] = field(default_factory=list)

    def record(self, ev: KeyringEvent) -> None:
        self.events.append(ev)


class Restriction(Protocol):
    def __call__(self, dest: Keyring, key: Key, restriction_key: Keyring | Key | None,
                 /) -> None: ...


class Blacklist:
    """The .blacklist keyring: ``tbs:`` key hashes, ``bin:`` binary hashes, revocation certs."""

    def __init__(self) -> None:
        self._tbs: set[bytes] = set()
        self._bin: set[bytes] = set()
        self._revoked: list[Key] = []

    def add_tbs_hash(self, digest: bytes) -> None:
        self._tbs.add(bytes(digest))

    def add_binary_hash(self, digest: bytes) -> None:
        self._bin.add(bytes(digest))

    def add_revocation_certificate(self, key: Key) -> None:
        self._revoked.append(key)

    def is_key_blocked(self, key: Key) -> bool:
        tbs = key.tbs_hash()
        if tbs is not None and tbs in self._tbs:
            return True
        return any(r.ids[:2] == key.ids[:2] for r in self._revoked)

    def check_key(self, key: Key) -> None:
        if self.is_key_blocked(key):
            raise RevokedError(f"key {key.description!r} is blacklisted")

    def is_binary_blocked(self, digest: bytes) -> bool:
        return bytes(digest) in self._bin

    def check_binary_hash(self, digest: bytes) -> None:
        if self.is_binary_blocked(digest):
            raise RevokedError(f"binary hash {digest.hex()} is blacklisted")

    def entries(self) -> list[str]:
        return sorted([f"tbs:{h.hex()}" for h in self._tbs] + [f"bin:{h.hex()}" for h in self._bin])


class Keyring:
    """A keyring: keys, links to other keyrings, and an optional restriction."""

    def __init__(self, name: str, *, restriction: Restriction | None = None,
                 restriction_key: Keyring | Key | None = None,
                 blacklist: Blacklist | None = None, log: EventLog | None = None) -> None:
        self.name = name
        self._keys: list[Key] = []
        self._links: list[Keyring] = []
        self._restriction = restriction
        self._restriction_key = restriction_key
        self.blacklist = blacklist
        self.log = log if log is not None else EventLog()

    # -- restriction ------------------------------------------------------------------
    @property
    def restriction_name(self) -> str | None:
        r = self._restriction
        return None if r is None else getattr(r, "__name__", type(r).__name__)

    def restrict(self, restriction: Restriction | str, restriction_key: Keyring | Key | None
                 = None, *, resolve: Callable[[str], Keyring | Key] | None = None) -> None:
        """KEYCTL_RESTRICT_KEYRING: set the restriction once; it cannot be changed later.

        A string uses the kernel's syntax (``asymmetric:builtin_trusted``,
        ``asymmetric:key_or_keyring:<id>[:chain]``); ``resolve`` maps an id to a key or
        keyring.
        """
        if self._restriction is not None:
            raise UsageError(f"keyring {self.name} is already restricted (EEXIST)")
        if isinstance(restriction, str):
            restriction, restriction_key = parse_restriction(restriction, resolve)
        self._restriction = restriction
        self._restriction_key = restriction_key

    # -- membership -------------------------------------------------------------------
    @property
    def keys(self) -> tuple[Key, ...]:
        return tuple(self._keys)

    @property
    def links(self) -> tuple[Keyring, ...]:
        return tuple(self._links)

    def _admit(self, key: Key) -> None:
        try:
            if self.blacklist is not None:
                self.blacklist.check_key(key)
            if self._restriction is not None:
                self._restriction(self, key, self._restriction_key)
        except (KeyRejectedError, RevokedError) as exc:
            self.log.record(KeyringEvent(self.name, key.description, False, str(exc)))
            raise
        self.log.record(KeyringEvent(self.name, key.description, True,
                                     self.restriction_name or "unrestricted"))

    def add(self, key: Key) -> Key:
        """Add a key (the restriction and the blacklist decide; unchanged on refusal)."""
        self._admit(key)
        if key not in self._keys:
            self._keys.append(key)
        return key

    def link(self, other: Keyring) -> None:
        """Link a keyring: each of its keys must pass this keyring's restriction."""
        for k in other.iter_keys():
            self._admit(k)
        if other not in self._links:
            self._links.append(other)

    def unlink(self, item: Key | Keyring) -> None:
        if isinstance(item, Keyring):
            self._links.remove(item)
        else:
            self._keys.remove(item)

    def clear(self) -> None:
        self._keys.clear()
        self._links.clear()

    def iter_keys(self, _seen: set[int] | None = None) -> Iterator[Key]:
        """Keys of this keyring and of linked keyrings (depth first, as keyring_search)."""
        seen = _seen if _seen is not None else set()
        if id(self) in seen:
            return
        seen.add(id(self))
        yield from self._keys
        for ring in self._links:
            yield from ring.iter_keys(seen)

    # -- search -----------------------------------------------------------------------
    def find_asymmetric_key(self, id_0: bytes | None, id_1: bytes | None = None,
                            id_2: bytes | None = None, *, partial: bool = False) -> Key | None:
        """crypto/asymmetric_keys/asymmetric_type.c: find_asymmetric_key."""
        for k in self.iter_keys():
            if self.blacklist is not None and self.blacklist.is_key_blocked(k):
                continue
            if id_0 is not None and k.matches_id(id_0, partial=partial):
                if id_1 is not None and k.ids[1] != id_1:
                    continue
                return k
            if id_0 is None and id_1 is not None and k.matches_id(id_1, partial=partial):
                return k
            if id_0 is None and id_1 is None and id_2 is not None and k.ids[2] == id_2:
                return k
        return None

    def search(self, spec: str) -> Key:
        """Search as the kernel matches descriptions: ``id:<hex>`` (tail), ``ex:<hex>``."""
        kind, sep, value = spec.partition(":")
        if sep and kind in ("id", "ex"):
            try:
                wanted = bytes.fromhex(value)
            except ValueError:
                raise UsageError(f"bad key id {value!r}") from None
            found = self.find_asymmetric_key(wanted, partial=kind == "id")
        else:
            found = next((k for k in self.iter_keys() if k.description == spec), None)
        if found is None:
            raise KeyNotFoundError(f"no key {spec!r} in {self.name}")
        return found

    def __repr__(self) -> str:
        return f"<Keyring {self.name}: {len(self._keys)} keys, {len(self._links)} links>"

    def _repr_html_(self) -> str:
        """Restriction, links, keys and the last decisions, for notebooks."""
        from .._html import keyring

        return keyring(self)


# -- restrictions ------------------------------------------------------------------------
def restrict_link_reject(dest: Keyring, key: Key, restriction_key: Keyring | Key | None, /
                         ) -> None:
    """Nothing may be added (the builtin keyring after boot)."""
    raise KeyRejectedError(f"{dest.name} accepts no new keys")


def _signed_by_keyring(key: Key, ring: Keyring) -> bool:
    a0, a1 = key.auth_ids
    for cand in ring.iter_keys():
        if a0 is not None and cand.ids[0] != a0:
            continue
        if a1 is not None and cand.skid != a1:
            continue
        if key.signed(cand):
            return True
    return False


def restrict_link_by_key_or_keyring(dest: Keyring, key: Key,
                                    restriction_key: Keyring | Key | None, /) -> None:
    """Admit a key whose certificate is signed by the given key or a key of the keyring."""
    if restriction_key is None:
        raise KeyRejectedError("no restriction key")
    ring = restriction_key if isinstance(restriction_key, Keyring) else None
    if ring is not None:
        ok = _signed_by_keyring(key, ring)
    else:
        assert isinstance(restriction_key, Key)
        ok = key.signed(restriction_key)
    if not ok:
        raise KeyRejectedError(f"{key.description!r} is not signed by a trusted key")


def restrict_link_by_key_or_keyring_chain(dest: Keyring, key: Key,
                                          restriction_key: Keyring | Key | None, /) -> None:
    """As restrict_link_by_key_or_keyring, but a key already in ``dest`` may sign too."""
    try:
        restrict_link_by_key_or_keyring(dest, key, restriction_key)
    except KeyRejectedError:
        if not _signed_by_keyring(key, dest):
            raise


def restrict_link_by_builtin_trusted(dest: Keyring, key: Key,
                                     restriction_key: Keyring | Key | None, /) -> None:
    """The key must be signed by a key in ``restriction_key`` (.builtin_trusted_keys)."""
    restrict_link_by_key_or_keyring(dest, key, restriction_key)


def restrict_link_by_builtin_and_secondary_trusted(
        dest: Keyring, key: Key, restriction_key: Keyring | Key | None, /) -> None:
    """Signed by a builtin or secondary key. ``restriction_key`` is the keyring to search:
    the builtin keyring for .secondary_trusted_keys itself (whose own keys also vouch),
    the secondary keyring (which links the builtin one) for any other keyring."""
    try:
        restrict_link_by_key_or_keyring(dest, key, restriction_key)
    except KeyRejectedError:
        if dest.name != ".secondary_trusted_keys" or not _signed_by_keyring(key, dest):
            raise


def restrict_link_by_ca(dest: Keyring, key: Key, restriction_key: Keyring | Key | None, /
                        ) -> None:
    """Only self-signed CA certificates with keyCertSign (the .machine keyring, 6.4+)."""
    if not key.self_signed or not key.is_ca or key.key_cert_sign is False:
        raise KeyRejectedError(f"{key.description!r} is not a self-signed CA")


def restrict_link_by_digsig(dest: Keyring, key: Key, restriction_key: Keyring | Key | None, /
                            ) -> None:
    """keyUsage must allow digitalSignature and not be a CA (the .ima rule of 6.4+)."""
    if key.is_ca or key.key_usage_digital_signature is False:
        raise KeyRejectedError(f"{key.description!r} is not a digital-signature key")
    restrict_link_by_builtin_and_secondary_trusted(dest, key, restriction_key)


_NAMED: dict[str, Restriction] = {
    "builtin_trusted": restrict_link_by_builtin_trusted,
    "builtin_and_secondary_trusted": restrict_link_by_builtin_and_secondary_trusted,
}


def parse_restriction(text: str, resolve: Callable[[str], Keyring | Key] | None = None
                      ) -> tuple[Restriction, Keyring | Key | None]:
    """KEYCTL_RESTRICT_KEYRING syntax: ``asymmetric:<name>[:<id>[:chain]]``."""
    parts = text.split(":")
    if len(parts) < 2 or parts[0] != "asymmetric":
        raise PolicyError("restriction must start with 'asymmetric:'", token=text[:60])
    name = parts[1]
    if name in _NAMED and len(parts) == 2:
        if resolve is None:
            raise UsageError(f"{name} needs a resolver for the builtin keyring")
        return _NAMED[name], resolve(".builtin_trusted_keys")
    if name == "key_or_keyring" and len(parts) in (3, 4):
        if len(parts) == 4 and parts[3] != "chain":
            raise PolicyError("expected ':chain'", token=parts[3])
        if resolve is None:
            raise UsageError("key_or_keyring needs a resolver for the key id")
        target = resolve(parts[2])
        return ((restrict_link_by_key_or_keyring_chain if len(parts) == 4
                 else restrict_link_by_key_or_keyring), target)
    raise PolicyError("unknown restriction", token=text[:60])
