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

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Protocol

from ..errors import (
    KeyNotFoundError,
    KeyRejectedError,
    PermissionDeniedError,
    PolicyError,
    RevokedError,
    UsageError,
)
from .key import Key

__all__ = [
    "BLACKLIST_KEYRING_PERM",
    "KERNEL_KEYRING_PERM",
    "USER_KEYRING_PERM",
    "Blacklist",
    "BlacklistKey",
    "EventLog",
    "KernelKeyrings",
    "KeyNeed",
    "KeyPerm",
    "Keyring",
    "KeyringEvent",
    "Restriction",
    "key_permission",
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
    "vet_blacklist_description",
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


class KeyPerm(enum.IntFlag):
    """include/linux/key.h key_perm_t: what the possessor (POS), the owner (USR), the
    group (GRP) and others (OTH) may do with a key or keyring."""

    POS_VIEW = 0x01000000
    POS_READ = 0x02000000
    POS_WRITE = 0x04000000
    POS_SEARCH = 0x08000000
    POS_LINK = 0x10000000
    POS_SETATTR = 0x20000000
    POS_ALL = 0x3F000000
    USR_VIEW = 0x00010000
    USR_READ = 0x00020000
    USR_WRITE = 0x00040000
    USR_SEARCH = 0x00080000
    USR_LINK = 0x00100000
    USR_SETATTR = 0x00200000
    USR_ALL = 0x003F0000
    GRP_VIEW = 0x00000100
    GRP_READ = 0x00000200
    GRP_WRITE = 0x00000400
    GRP_SEARCH = 0x00000800
    GRP_LINK = 0x00001000
    GRP_SETATTR = 0x00002000
    OTH_VIEW = 0x00000001
    OTH_READ = 0x00000002
    OTH_WRITE = 0x00000004
    OTH_SEARCH = 0x00000008
    OTH_LINK = 0x00000010
    OTH_SETATTR = 0x00000020


class KeyNeed(enum.IntFlag):
    """enum key_need_perm: the permission an operation needs (keyctl link needs WRITE on
    the keyring and LINK on what is linked; add_key and clear need WRITE)."""

    VIEW = 0x01
    READ = 0x02
    WRITE = 0x04
    SEARCH = 0x08
    LINK = 0x10
    SETATTR = 0x20


#: security/keys/key.c key_create_or_update with KEY_PERM_UNDEF, for a keyring made by
#: user space (``keyctl newring``): its possessor may do anything but nothing more
USER_KEYRING_PERM: Final = (KeyPerm.POS_VIEW | KeyPerm.POS_SEARCH | KeyPerm.POS_LINK |
                            KeyPerm.POS_SETATTR | KeyPerm.POS_READ | KeyPerm.POS_WRITE |
                            KeyPerm.USR_VIEW)
#: certs/system_keyring.c and security/integrity/digsig.c: the kernel's keyrings are
#: ``(KEY_POS_ALL & ~KEY_POS_SETATTR) | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH``,
#: plus KEY_USR_WRITE where user space may add keys (.secondary_trusted_keys, .ima, .evm)
KERNEL_KEYRING_PERM: Final = ((KeyPerm.POS_ALL & ~KeyPerm.POS_SETATTR) | KeyPerm.USR_VIEW |
                              KeyPerm.USR_READ | KeyPerm.USR_SEARCH)
#: certs/blacklist.c blacklist_init (5.19+): the possessor may view, read, write and
#: search, root (the owner) view, read and search; CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE adds
#: KEY_USR_WRITE, the only way user space can add to it
BLACKLIST_KEYRING_PERM: Final = (KeyPerm.POS_VIEW | KeyPerm.POS_READ | KeyPerm.POS_WRITE |
                                 KeyPerm.POS_SEARCH | KeyPerm.USR_VIEW | KeyPerm.USR_READ |
                                 KeyPerm.USR_SEARCH)
#: certs/blacklist.c BLACKLIST_KEY_PERM: what blacklist_key_instantiate gives every hash,
#: built in or added: view and search, never write (so it can be neither updated nor
#: replaced)
_BLACKLIST_KEY_PERM: Final = (KeyPerm.POS_SEARCH | KeyPerm.POS_VIEW | KeyPerm.USR_SEARCH |
                              KeyPerm.USR_VIEW)
#: include/linux/key.h KEY_MAX_DESC_SIZE (add_key's strndup_user bound, NUL included)
_KEY_MAX_DESC_SIZE: Final = 4096
#: security/keys/keyctl.c: add_key refuses a payload above 1 MiB - 1 (EINVAL)
_KEY_MAX_PAYLOAD: Final = 1024 * 1024 - 1
#: certs/blacklist.c MAX_HASH_LEN: hex digits of the longest hash (SHA-512)
_MAX_HASH_LEN: Final = 128


def key_permission(name: str, perm: int, owner: int, possessed: bool, need: KeyNeed, *,
                   uid: int = 0) -> None:
    """security/keys/permission.c key_task_permission for a user-space process of ``uid``
    (its gid the same) on a key or keyring ``name`` with ``perm`` owned by ``owner``: the
    owner's or others' bits, plus the possessor's when the process possesses it;
    PermissionDeniedError (-EACCES) if ``need`` is missing."""
    kperm = (perm >> 16 if owner == uid else perm) & 0x3F
    if possessed:
        kperm |= perm >> 24 & 0x3F
    if need & ~kperm:
        raise PermissionDeniedError(f"{name}: permission {KeyNeed(need & ~kperm)!r} denied "
                                    "(EACCES)")


def vet_blacklist_description(description: str) -> None:
    """certs/blacklist.c blacklist_vet_description (5.19+, "certs: Make
    blacklist_vet_description() more strict"): ``tbs:`` or ``bin:``, then lowercase hex
    digits. A character that is not one among the first 128 of the hash, no digit or an
    odd number of them is EINVAL; 128 good digits followed by anything is ENOPKG (the
    length is judged after the characters, as the kernel's loop does). PolicyError.

    >>> vet_blacklist_description("bin:" + "ab" * 32)
    >>> vet_blacklist_description("bin:AB")
    Traceback (most recent call last):
    ...
    imasim.errors.PolicyError: blacklist hash digits must be lowercase hex (EINVAL) (token 'bin:AB')
    """
    raw = description.encode()
    prefix, sep, value = raw.partition(b":")
    token = description[:80]
    if not sep or prefix not in (b"tbs", b"bin"):
        raise PolicyError("a blacklist description is tbs:<hex> or bin:<hex> (EINVAL)",
                          token=token)
    head = value[:_MAX_HASH_LEN]
    if head.strip(b"0123456789abcdef"):
        raise PolicyError("blacklist hash digits must be lowercase hex (EINVAL)", token=token)
    if len(value) > _MAX_HASH_LEN:
        raise PolicyError("blacklist hash longer than 128 hex digits (ENOPKG)", token=token)
    if not value or len(value) % 2:
        raise PolicyError("blacklist hash must be an even number of hex digits (EINVAL)",
                          token=token)


@dataclass(frozen=True, slots=True)
class BlacklistKey:
    """A key of the kernel's ``blacklist`` type as user space adds it:
    ``keyctl add blacklist DESCRIPTION PAYLOAD %:.blacklist``. The description is the hash
    (``bin:<hex>`` of a file, ``tbs:<hex>`` of a certificate's TBSCertificate); with
    CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE the payload is a detached PKCS#7 signature (DER)
    of the description's bytes by a key of .builtin_trusted_keys."""

    description: str
    payload: bytes = b""


class KernelKeyrings:
    """The kernel's global keyring pointers (certs/system_keyring.c builtin_trusted_keys,
    secondary_trusted_keys, machine_trusted_keys, platform_trusted_keys): the system
    restrictions compare keyrings with these by identity, never by name, so a keyring
    user space names ``.machine`` is not the machine keyring."""

    def __init__(self) -> None:
        self.builtin: Keyring | None = None
        self.secondary: Keyring | None = None
        self.machine: Keyring | None = None
        self.platform: Keyring | None = None


class Restriction(Protocol):
    """``key_restrict_link_func_t``: raise KeyRejectedError to refuse ``key`` (a
    :class:`Key` being added or linked, or a :class:`Keyring` being linked)."""

    def __call__(self, dest: Keyring, key: Key | Keyring,
                 restriction_key: Keyring | Key | None, /) -> None: ...


class Blacklist:
    """The .blacklist keyring: ``tbs:`` key hashes, ``bin:`` binary hashes, revocation
    certificates. ``perm`` is the keyring's key_perm_t (root owns it, no process possesses
    it) and ``auth_update`` is CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE: together they decide
    what user space may add (:meth:`add_key`)."""

    def __init__(self, *, perm: int = BLACKLIST_KEYRING_PERM, auth_update: bool = False
                 ) -> None:
        self.perm, self.auth_update = int(perm), auth_update
        self._tbs: set[bytes] = set()
        self._bin: set[bytes] = set()
        self._revoked: list[Key] = []
        self._user: list[str] = []

    def add_tbs_hash(self, digest: bytes) -> None:
        self._tbs.add(bytes(digest))

    def add_entry(self, description: str) -> None:
        """A ``tbs:<hex>`` or ``bin:<hex>`` key the kernel adds itself (built in:
        CONFIG_SYSTEM_BLACKLIST_HASH_LIST, UEFI dbx), its description vetted by
        :func:`vet_blacklist_description` (PolicyError)."""
        vet_blacklist_description(description)
        kind, _, value = description.partition(":")
        (self.add_tbs_hash if kind == "tbs" else self.add_binary_hash)(bytes.fromhex(value))

    def add_key(self, key: Key | BlacklistKey, *, builtin: Keyring | None, uid: int = 0
                ) -> None:
        """add_key(2) into .blacklist from user space, checked in the kernel's order
        (security/keys/keyctl.c add_key, key.c __key_create_or_update, certs/blacklist.c):

        1. add_key copies the description and payload: 4096 bytes of description or more
           than 1 MiB - 1 of payload is EINVAL;
        2. WRITE on the keyring (lookup_user_key): EACCES unless the kernel has
           CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE (KEY_USR_WRITE, for root only);
        3. no description is EINVAL;
        4. restrict_link_for_blacklist: any other key type (an X.509 certificate, a
           :class:`Key`) is EOPNOTSUPP;
        5. a hash that is already there would be updated, which needs WRITE on that key,
           which no blacklist key has: EACCES;
        6. blacklist_vet_description: EINVAL or ENOPKG (:func:`vet_blacklist_description`);
        7. blacklist_key_instantiate: the payload must be a detached PKCS#7 signature of
           the description that verifies against ``builtin`` (.builtin_trusted_keys only,
           not the secondary keyring; VERIFYING_UNSPECIFIED_SIGNATURE), the revocation
           list and the ``tbs:`` hashes applying.

        Only then is the hash added (for good: nothing removes it until reboot). A refusal
        changes nothing."""
        from ..sig.pkcs7 import Usage, verify_pkcs7

        if isinstance(key, Key):
            key_permission(".blacklist", self.perm, 0, False, KeyNeed.WRITE, uid=uid)
            raise KeyRejectedError(".blacklist takes only keys of the blacklist type "
                                   "(restrict_link_for_blacklist: EOPNOTSUPP)")
        raw = key.description.encode()
        if b"\0" in raw:
            raise UsageError("a key description is a C string (no NUL)")
        if len(raw) >= _KEY_MAX_DESC_SIZE or len(key.payload) > _KEY_MAX_PAYLOAD:
            raise PolicyError("description or payload too long for add_key (EINVAL)",
                              token=key.description[:80])
        key_permission(".blacklist", self.perm, 0, False, KeyNeed.WRITE, uid=uid)
        if not raw:
            raise PolicyError("a blacklist key needs a description (EINVAL)")
        if key.description in self.entries():  # __key_update of the existing key
            key_permission(key.description, _BLACKLIST_KEY_PERM, 0, False, KeyNeed.WRITE,
                           uid=uid)
        vet_blacklist_description(key.description)
        if not self.auth_update:  # unreachable through the kernel's own permissions
            raise PermissionDeniedError("blacklist_key_instantiate without "
                                        "CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE (EPERM)")
        if builtin is None:
            raise KeyNotFoundError("no .builtin_trusted_keys to verify against (ENOKEY)")
        verify_pkcs7(key.payload, raw, keyring=builtin, usage=Usage.UNSPECIFIED_SIGNATURE,
                     blacklist=self)
        kind, _, value = key.description.partition(":")
        (self._tbs if kind == "tbs" else self._bin).add(bytes.fromhex(value))
        self._user.append(key.description)

    def keyctl_clear(self, *, uid: int = 0) -> None:
        """keyctl_keyring_clear: WRITE on the keyring (EACCES without AUTH_UPDATE), then
        KEY_FLAG_KEEP (blacklist_init's KEY_ALLOC_SET_KEEP) refuses: EPERM. Never clears."""
        key_permission(".blacklist", self.perm, 0, False, KeyNeed.WRITE, uid=uid)
        raise PermissionDeniedError(".blacklist is kept (KEY_FLAG_KEEP: EPERM)")

    def added_by_user(self) -> tuple[str, ...]:
        """The descriptions user space added (:meth:`add_key`), in order."""
        return tuple(self._user)

    def add_binary_hash(self, digest: bytes) -> None:
        self._bin.add(bytes(digest))

    def add_revocation_certificate(self, key: Key) -> None:
        self._revoked.append(key)

    def is_key_blocked(self, key: Key) -> bool:
        """Is this certificate refused when it is parsed (x509_get_sig_params: its
        ``tbs:`` hash; or a revocation certificate of the same key)? The kernel asks when
        a certificate becomes a key (x509_key_preparse: EKEYREJECTED) and for the
        certificates a PKCS#7 message carries; a key already in a keyring is not parsed
        again, so a ``tbs:`` hash added later does not stop it (see :meth:`is_revoked`)."""
        tbs = key.tbs_hash()
        if tbs is not None and tbs in self._tbs:
            return True
        return self.is_revoked(key)

    def is_revoked(self, key: Key) -> bool:
        """is_key_on_revocation_list: a revocation certificate (CONFIG_SYSTEM_REVOCATION_LIST)
        of this key, which every PKCS#7 verification consults, whenever it was added."""
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
                 blacklist: Blacklist | None = None, log: EventLog | None = None,
                 perm: int = USER_KEYRING_PERM, uid: int = 0, possessed: bool = True,
                 kernel: KernelKeyrings | None = None) -> None:
        self.name = name
        #: key_perm_t, the owner's uid, and whether the simulated user-space process
        #: possesses the keyring (it made it); the kernel's keyrings nobody possesses
        self.perm, self.uid, self.possessed = int(perm), uid, possessed
        #: the kernel whose global keyrings the system restrictions compare against
        self.kernel = kernel
        self._keys: list[Key] = []
        self._links: list[Keyring] = []
        self._restriction = restriction
        self._restriction_key = restriction_key
        self.blacklist = blacklist
        self.log = log if log is not None else EventLog()

    # -- permissions ------------------------------------------------------------------
    def check_permission(self, need: KeyNeed, *, uid: int = 0) -> None:
        """:func:`key_permission` on this keyring (the kernel's keyrings nobody
        possesses): -EACCES if ``need`` is missing."""
        key_permission(self.name, self.perm, self.uid, self.possessed, need, uid=uid)

    # -- restriction ------------------------------------------------------------------
    @property
    def restriction_name(self) -> str | None:
        r = self._restriction
        return None if r is None else getattr(r, "__name__", type(r).__name__)

    def restrict(self, restriction: Restriction | str | None = None,
                 restriction_key: Keyring | Key | None = None, *,
                 resolve: Callable[[str], Keyring | Key] | None = None) -> None:
        """security/keys/keyring.c keyring_restrict (KEYCTL_RESTRICT_KEYRING): set the
        restriction once; it can be neither lifted nor replaced later (EEXIST).

        ``None`` is ``keyctl restrict_keyring <id>`` without a type: restrict_link_reject.
        A string is the asymmetric type's syntax (``asymmetric:builtin_trusted``,
        ``asymmetric:builtin_and_secondary_trusted``,
        ``asymmetric:key_or_keyring:<serial>[:chain]``, see :func:`parse_restriction`);
        ``resolve`` maps a serial (8 hex digits, as /proc/keys prints it) or a system
        keyring's name to a key or keyring. A restriction whose keyring chain leads back
        to this keyring is refused (EDEADLK). On error nothing changes.
        """
        what = f"restriction {restriction if isinstance(restriction, str) else ''}".rstrip()
        try:
            if self._restriction is not None:
                raise UsageError(f"keyring {self.name} is already restricted (EEXIST)")
            if restriction is None:
                restriction, restriction_key = restrict_link_reject, None
            elif isinstance(restriction, str):
                restriction, restriction_key = parse_restriction(restriction, resolve)
            rk = restriction_key
            seen: set[int] = set()
            # keyring_detect_restriction_cycle
            while isinstance(rk, Keyring) and id(rk) not in seen:
                if rk is self:
                    raise UsageError(f"restriction of {self.name} leads back to it (EDEADLK)")
                seen.add(id(rk))
                rk = rk._restriction_key
        except (UsageError, PolicyError, KeyNotFoundError) as exc:
            self.log.record(KeyringEvent(self.name, what, False, str(exc)))
            raise
        self._restriction = restriction
        self._restriction_key = restriction_key
        self.log.record(KeyringEvent(self.name, what, True,
                                     f"restricted by {self.restriction_name}"))

    # -- membership -------------------------------------------------------------------
    @property
    def keys(self) -> tuple[Key, ...]:
        return tuple(self._keys)

    @property
    def links(self) -> tuple[Keyring, ...]:
        return tuple(self._links)

    def _admit(self, item: Key | Keyring) -> None:
        what = item.description if isinstance(item, Key) else f"keyring {item.name}"
        try:
            if self.blacklist is not None and isinstance(item, Key):
                self.blacklist.check_key(item)
            if self._restriction is not None:
                self._restriction(self, item, self._restriction_key)
        except (KeyRejectedError, RevokedError) as exc:
            self.log.record(KeyringEvent(self.name, what, False, str(exc)))
            raise
        self.log.record(KeyringEvent(self.name, what, True,
                                     self.restriction_name or "unrestricted"))

    def add(self, key: Key) -> Key:
        """key_create_or_update: the blacklist (``tbs:`` hash or revocation certificate:
        EKEYREJECTED) and the restriction decide; the keyring is unchanged on refusal."""
        self._admit(key)
        if key not in self._keys:
            self._keys.append(key)
        return key

    def add_certificate(self, data: bytes) -> Key:
        """Parse a DER or PEM certificate and :meth:`add` it (``keyctl padd asymmetric``); a
        certificate that does not parse (EBADMSG) or whose algorithm is unsupported
        (ENOPKG) is recorded as refused and re-raised, the keyring unchanged."""
        from ..errors import ParseError, UnsupportedAlgorithmError

        try:
            key = Key.from_certificate(data)
        except (ParseError, UnsupportedAlgorithmError, KeyRejectedError) as exc:
            self.log.record(KeyringEvent(self.name, "<unparsed certificate>", False, str(exc)))
            raise
        return self.add(key)

    def link(self, other: Keyring) -> None:
        """key_link: the restriction sees the keyring itself (the kernel's asymmetric
        restrictions refuse keyrings, EOPNOTSUPP, except the builtin keyring into
        .secondary_trusted_keys); an unrestricted keyring links anything but a keyring
        through which it would reach itself (keyring_detect_cycle: EDEADLK)."""
        if any(ring is self for ring in other._reachable()):
            exc = UsageError(f"linking {other.name} into {self.name} makes a cycle (EDEADLK)")
            self.log.record(KeyringEvent(self.name, f"keyring {other.name}", False, str(exc)))
            raise exc
        self._admit(other)
        if other not in self._links:
            self._links.append(other)

    def unlink(self, item: Key | Keyring) -> None:
        """KEYCTL_UNLINK: KeyNotFoundError (ENOENT) when ``item`` is not linked here."""
        members: list[Key] | list[Keyring] = self._links if isinstance(item, Keyring) \
            else self._keys
        if item not in members:
            raise KeyNotFoundError(f"{item!r} is not in {self.name} (ENOENT)")
        members.remove(item)  # type: ignore[arg-type]

    def clear(self) -> None:
        self._keys.clear()
        self._links.clear()

    def _reachable(self) -> Iterator[Keyring]:
        """This keyring and every keyring linked from it, each once."""
        seen: set[int] = set()
        stack: list[Keyring] = [self]
        while stack:
            ring = stack.pop()
            if id(ring) not in seen:
                seen.add(id(ring))
                yield ring
                stack.extend(ring._links)

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
        """crypto/asymmetric_keys/asymmetric_type.c find_asymmetric_key: id_0 (partial or
        exact on id[0]/id[1]) with id_1 then matching id[1] exactly, else id_1, else id_2
        exactly on id[2] (the ``dn:`` lookup). The blacklist is not consulted: a key whose
        certificate it blocks never entered a keyring, and one that entered before its
        ``tbs:`` hash was added stays (keyring_search knows no blacklist)."""
        for k in self.iter_keys():
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
        """asymmetric_key_match_preparse: ``id:<hex>`` (the tail of id[0] or id[1]),
        ``ex:<hex>`` (one of them exactly), ``dn:<hex>`` (the subject, id[2], exactly),
        else the description exactly."""
        if not spec:
            raise UsageError("empty key description (EINVAL)")
        kind, sep, value = spec.partition(":")
        if sep and kind in ("id", "ex", "dn"):
            # asymmetric_key_hex_to_key_id: an even number of hex digits, nothing else
            if not value or len(value) % 2 or value.strip("0123456789abcdefABCDEF"):
                raise UsageError(f"bad key id {value[:80]!r} (EINVAL)")
            wanted = bytes.fromhex(value)
            found = (self.find_asymmetric_key(None, None, wanted) if kind == "dn" else
                     self.find_asymmetric_key(wanted, partial=kind == "id"))
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
def _not_asymmetric(key: Key | Keyring) -> bool:
    """A restriction also sees keyrings being linked (key_link -> the check function with
    ``type == &key_type_keyring``): the kernel's asymmetric restrictions refuse them."""
    return isinstance(key, Keyring)


def restrict_link_reject(dest: Keyring, key: Key | Keyring,
                         restriction_key: Keyring | Key | None, /) -> None:
    """security/keys/keyring.c restrict_link_reject: nothing may be added or linked (-EPERM)."""
    raise KeyRejectedError(f"{dest.name} accepts no new keys (EPERM)")


def _auth_ids(key: Key) -> tuple[bytes | None, bytes | None, bytes | None]:
    """sig->auth_ids[0..2]: AKID issuer+serial, AKID keyIdentifier, the issuer name."""
    if key.certificate is None:  # a raw public key: no payload->data[asym_auth]
        raise KeyRejectedError(f"{key.description!r} carries no signature (ENOPKG)")
    a0, a1 = key.auth_ids
    return a0, a1, key.issuer_raw or None


def _find_signer(key: Key, ring: Keyring) -> Key | None:
    """find_asymmetric_key(trust_keyring, auth_ids[0], auth_ids[1], auth_ids[2], false):
    one key, by the first id present (exact), the second checked when both are given."""
    a0, a1, a2 = _auth_ids(key)
    if a0 is not None:
        return ring.find_asymmetric_key(a0, a1)
    if a1 is not None:
        return ring.find_asymmetric_key(None, a1)
    return ring.find_asymmetric_key(None, None, a2)


def _verify_by(key: Key, signer: Key | None, where: str) -> None:
    if signer is None:
        raise KeyRejectedError(f"{key.description!r}: no key in {where} signed it (ENOKEY)")
    if not key.signed(signer):
        raise KeyRejectedError(f"{key.description!r}: signature by {signer.description!r} "
                               "does not verify (EKEYREJECTED)")


def restrict_link_by_signature(dest: Keyring, key: Key | Keyring,
                               restriction_key: Keyring | Key | None, /) -> None:
    """crypto/asymmetric_keys/restrict.c restrict_link_by_signature: the key's certificate
    must be signed by the key that ``restriction_key`` (a keyring) holds under the
    certificate's authority ids (looked up exactly, then verified)."""
    if not isinstance(restriction_key, Keyring):
        raise KeyRejectedError("no trust keyring (ENOKEY)")
    if _not_asymmetric(key):
        raise KeyRejectedError(f"{dest.name}: only asymmetric keys may be added (EOPNOTSUPP)")
    assert isinstance(key, Key)
    _verify_by(key, _find_signer(key, restriction_key), restriction_key.name)


def _match_signer_key(key: Key, signer: Key) -> bool:
    """key_or_keyring_common with a key: auth_ids against the signer's ids (match_either_id)."""
    a0, a1, a2 = _auth_ids(key)
    ids = signer.ids

    def either(a: bytes) -> bool:
        return a in (ids[0], ids[1]) and a != b""

    if a0 is None and a1 is None:
        return a2 is not None and a2 == ids[2]
    if a0 is None or a1 is None:
        return either(a0 if a0 is not None else a1)  # type: ignore[arg-type]
    return a1 == ids[1] and either(a0)


def _key_or_keyring_common(dest: Keyring, key: Key | Keyring, trusted: Keyring | Key | None,
                           check_dest: bool) -> None:
    """crypto/asymmetric_keys/restrict.c key_or_keyring_common."""
    if trusted is None and not check_dest:
        raise KeyRejectedError("no restriction key (ENOKEY)")
    if _not_asymmetric(key):
        raise KeyRejectedError(f"{dest.name}: only asymmetric keys may be added (EOPNOTSUPP)")
    assert isinstance(key, Key)
    signer: Key | None = None
    if isinstance(trusted, Keyring):
        signer = _find_signer(key, trusted)
    elif isinstance(trusted, Key):
        signer = trusted if _match_signer_key(key, trusted) else None
    if check_dest and signer is None:
        signer = _find_signer(key, dest)
    _verify_by(key, signer, "the trusted key or keyring")


def restrict_link_by_key_or_keyring(dest: Keyring, key: Key | Keyring,
                                    restriction_key: Keyring | Key | None, /) -> None:
    """Admit a key whose certificate is signed by the given key or a key of the keyring."""
    _key_or_keyring_common(dest, key, restriction_key, False)


def restrict_link_by_key_or_keyring_chain(dest: Keyring, key: Key | Keyring,
                                          restriction_key: Keyring | Key | None, /) -> None:
    """As restrict_link_by_key_or_keyring, but a key already in ``dest`` may sign too (the
    ``:chain`` suffix); ``restriction_key`` may be None (``key_or_keyring:0:chain``)."""
    _key_or_keyring_common(dest, key, restriction_key, True)


def _system(dest: Keyring, restriction_key: Keyring | Key | None) -> KernelKeyrings | None:
    """The kernel whose globals the system restrictions mean: the destination's, or
    (for a user keyring restricted with ``asymmetric:builtin_trusted`` and the like) the
    restriction keyring's; None for keyrings made outside a simulated kernel."""
    for ring in (dest, restriction_key):
        if isinstance(ring, Keyring) and ring.kernel is not None:
            return ring.kernel
    return None


def restrict_link_by_builtin_trusted(dest: Keyring, key: Key | Keyring,
                                     restriction_key: Keyring | Key | None, /) -> None:
    """certs/system_keyring.c: signed by a key in the kernel's .builtin_trusted_keys
    (``restriction_key`` stands for it outside a simulated kernel)."""
    g = _system(dest, restriction_key)
    trusted = g.builtin if g is not None and g.builtin is not None else restriction_key
    restrict_link_by_signature(dest, key, trusted)


def restrict_link_by_builtin_and_secondary_trusted(
        dest: Keyring, key: Key | Keyring, restriction_key: Keyring | Key | None, /) -> None:
    """certs/system_keyring.c: signed by a builtin or secondary key; only the builtin
    keyring may be linked, and only into .secondary_trusted_keys.

    Inside a simulated kernel both are the kernel's keyring objects (a keyring merely
    named ``.secondary_trusted_keys`` is not it). Outside one, ``restriction_key`` stands
    for the globals: for a keyring named ``.secondary_trusted_keys`` it is the builtin
    keyring, for any other keyring the secondary keyring (which links the builtin one).
    """
    g = _system(dest, restriction_key)
    builtin: Keyring | Key | None
    trust: Keyring | Key | None
    if g is not None and g.secondary is not None:
        is_secondary, builtin, trust = dest is g.secondary, g.builtin, g.secondary
    else:
        is_secondary = dest.name == ".secondary_trusted_keys"
        builtin = restriction_key if is_secondary else None
        trust = dest if is_secondary else restriction_key
    if isinstance(key, Keyring):
        if is_secondary and key is builtin:
            return  # allow the builtin keyring to be added to the secondary
        raise KeyRejectedError(f"{dest.name}: only asymmetric keys may be added (EOPNOTSUPP)")
    if not is_secondary:
        restrict_link_by_signature(dest, key, trust)
        return
    # the search of secondary_trusted_keys: its own keys, then through its link to builtin
    signer = _find_signer(key, dest)
    if signer is None and isinstance(builtin, Keyring):
        signer = _find_signer(key, builtin)
    _verify_by(key, signer, dest.name)


def restrict_link_by_builtin_secondary_and_machine(
        dest: Keyring, key: Key | Keyring, restriction_key: Keyring | Key | None, /) -> None:
    """certs/system_keyring.c (5.18+, CONFIG_INTEGRITY_MACHINE_KEYRING): the secondary
    keyring's restriction, which also lets the kernel's machine keyring be linked into
    .secondary_trusted_keys (set_machine_trusted_keys), so the machine owner's keys vouch
    wherever the secondary keyring is searched; the keyring object decides, not its name
    (by name only outside a simulated kernel)."""
    if isinstance(key, Keyring):
        g = _system(dest, restriction_key)
        if g is not None and g.secondary is not None:
            if g.machine is not None and key is g.machine and dest is g.secondary:
                return
        elif key.name == ".machine" and dest.name == ".secondary_trusted_keys":
            return
    restrict_link_by_builtin_and_secondary_trusted(dest, key, restriction_key)


def restrict_link_by_ca(dest: Keyring, key: Key | Keyring,
                        restriction_key: Keyring | Key | None, /) -> None:
    """crypto/asymmetric_keys/restrict.c restrict_link_by_ca (6.4+, the .machine keyring):
    the certificate must have basicConstraints CA and keyUsage keyCertSign (KEY_EFLAG_CA,
    KEY_EFLAG_KEYCERTSIGN); no signature is checked."""
    if _not_asymmetric(key):
        raise KeyRejectedError(f"{dest.name}: only asymmetric keys may be added (EOPNOTSUPP)")
    assert isinstance(key, Key)
    if not key.is_ca:
        raise KeyRejectedError(f"{key.description!r} is not a CA (ENOKEY)")
    if not key.key_cert_sign:
        raise KeyRejectedError(f"{key.description!r} lacks keyUsage keyCertSign (ENOKEY)")


def restrict_link_by_ca_max(dest: Keyring, key: Key | Keyring,
                            restriction_key: Keyring | Key | None, /) -> None:
    """restrict_link_by_ca with CONFIG_INTEGRITY_CA_MACHINE_KEYRING_MAX: a CA whose keyUsage
    also allows digitalSignature is refused."""
    restrict_link_by_ca(dest, key, restriction_key)
    assert isinstance(key, Key)
    if key.key_usage_digital_signature:
        raise KeyRejectedError(f"{key.description!r}: a CA with digitalSignature (ENOKEY)")


def restrict_link_by_digsig(dest: Keyring, key: Key | Keyring,
                            restriction_key: Keyring | Key | None, /) -> None:
    """crypto/asymmetric_keys/restrict.c restrict_link_by_digsig (6.4+; the .ima/.evm rule
    with CONFIG_INTEGRITY_CA_MACHINE_KEYRING): keyUsage digitalSignature, neither CA nor
    keyCertSign, then restrict_link_by_signature against ``restriction_key`` (the builtin
    keyring, or the secondary one with IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY)."""
    if _not_asymmetric(key):
        raise KeyRejectedError(f"{dest.name}: only asymmetric keys may be added (EOPNOTSUPP)")
    assert isinstance(key, Key)
    if not key.key_usage_digital_signature:
        raise KeyRejectedError(f"{key.description!r} lacks keyUsage digitalSignature (ENOKEY)")
    if key.is_ca:
        raise KeyRejectedError(f"{key.description!r} is a CA (ENOKEY)")
    if key.key_cert_sign:
        raise KeyRejectedError(f"{key.description!r} has keyUsage keyCertSign (ENOKEY)")
    restrict_link_by_signature(dest, key, restriction_key)


_NAMED: dict[str, tuple[Restriction, str]] = {
    "builtin_trusted": (restrict_link_by_builtin_trusted, ".builtin_trusted_keys"),
    "builtin_and_secondary_trusted": (restrict_link_by_builtin_and_secondary_trusted,
                                      ".secondary_trusted_keys"),
}


def _kstrtos32(text: str) -> int | None:
    """lib/kstrtox.c kstrtos32(s, 0): optional sign, 0x hex, leading-0 octal or decimal."""
    body = text[1:] if text[:1] in "+-" else text
    if text[:1] == "+" and body[:1] in "+-":
        return None
    base, digits = ((16, body[2:]) if body[:2].lower() == "0x" else
                    (8, body[1:] or "0") if body[:1] == "0" else (10, body))
    if base == 10 and len(digits.lstrip("0")) > 10:
        return None  # out of range; and int() of thousands of digits raises ValueError
    if not digits or any(c not in "0123456789abcdefABCDEF"[:base + (6 if base == 16 else 0)]
                         for c in digits):
        return None
    value = int(digits, base) * (-1 if text[:1] == "-" else 1)
    return value if -2**31 <= value < 2**31 else None


def parse_restriction(text: str, resolve: Callable[[str], Keyring | Key] | None = None
                      ) -> tuple[Restriction, Keyring | Key | None]:
    """asymmetric_lookup_restriction, after the type: ``asymmetric:builtin_trusted``,
    ``asymmetric:builtin_and_secondary_trusted``, ``asymmetric:key_or_keyring:<serial>``
    or ``...:<serial>:chain``. The serial is read as kstrtos32(s, 0) reads it (decimal,
    ``0x`` hex); ``0`` is allowed with ``:chain`` only (no key: only the keyring's own keys
    vouch). ``resolve`` is given the serial as 8 hex digits (the /proc/keys column) or the
    system keyring's name; an unknown one is KeyNotFoundError, bad syntax PolicyError
    (EINVAL)."""
    kind, sep, rest = text.partition(":")
    if not sep or kind != "asymmetric":
        raise PolicyError("restriction must be 'asymmetric:<method>'", token=text[:60])

    def lookup(what: str) -> Keyring | Key:
        if resolve is None:
            raise UsageError(f"{rest!r} needs a resolver for {what}")
        try:
            return resolve(what)
        except (KeyError, LookupError, KeyNotFoundError):
            raise KeyNotFoundError(f"no key or keyring {what} (ENOKEY)") from None

    if rest in _NAMED:
        func, ring = _NAMED[rest]
        return func, lookup(ring)
    method, _, args = rest.partition(":")
    if method == "key_or_keyring" and _:
        key_text, chained, tail = args.partition(":")
        if chained and tail != "chain":
            raise PolicyError("expected ':chain'", token=tail[:60])
        serial = _kstrtos32(key_text)
        if serial is None:
            raise PolicyError("bad key serial", token=key_text[:60])
        func = (restrict_link_by_key_or_keyring_chain if chained
                else restrict_link_by_key_or_keyring)
        if serial == 0 and chained:
            return func, None
        return func, lookup(f"{serial & 0xFFFFFFFF:08x}")
    raise PolicyError("unknown restriction", token=text[:60])
