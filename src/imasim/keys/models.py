"""Keyring layouts of other kernel eras, and the trust models argued over in 2016.

Linux 4.4 had one ``.system_keyring`` (built-in keys, closed after boot); 4.5 and 4.6
added, with CONFIG_IMA_MOK_KEYRING, an ``.ima_mok`` keyring. Both ``.ima_mok`` and ``.ima``
(CONFIG_IMA_TRUSTED_KEYRING) were KEY_FLAG_TRUSTED_ONLY: they took only keys that
x509_key_preparse marked trusted, i.e. whose certificate a key of ``.system_keyring`` or
of ``.ima_mok`` signed (``x509_validate_trust`` against one, then the other). So a key
signed by an ``.ima_mok`` key may enter ``.ima_mok`` itself too. Linux 4.7+ replaced this
with ``.builtin_trusted_keys`` and ``.secondary_trusted_keys`` (see
:class:`imasim.machine.SystemKeyrings`).

:func:`trust_model` builds the three models of the 2016 discussion side by side so a test
or a notebook can compare what each admits:

* ``"vendor"``: the vendor's built-in keys are the only root; nothing else can sign an
  IMA key;
* ``"owner-delegated"``: the machine owner holds a CA (signed by the vendor) in
  ``.ima_mok`` and may sign IMA keys with it;
* ``"owner-authorised"``: third parties are admitted only when the owner signed their key
  (a chain vendor -> owner -> third party is walked).

>>> from imasim.keys.models import trust_model
>>> rings = trust_model("vendor", vendor_keys=[])
>>> sorted(rings)
['.ima', '.system_keyring']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import KeyRejectedError, UsageError
from .key import Key
from .keyring import (
    EventLog,
    Keyring,
    restrict_link_by_key_or_keyring,
    restrict_link_by_key_or_keyring_chain,
    restrict_link_by_signature,
    restrict_link_reject,
)

__all__ = ["Linux44Trust", "linux_4_4_keyrings", "linux_4_6_keyrings",
           "restrict_link_by_ima_mok", "trust_model"]

TrustModel = Literal["vendor", "owner-delegated", "owner-authorised"]


def _system_keyring(vendor_keys: Iterable[Key], log: EventLog) -> Keyring:
    """``.system_keyring``: the vendor's built-in keys, closed after boot."""
    system = Keyring(".system_keyring", log=log)
    for k in vendor_keys:
        system.add(k)
    system.restrict(restrict_link_reject)
    return system


def linux_4_4_keyrings(vendor_keys: Iterable[Key], *, ima_mok: bool = True,
                       log: EventLog | None = None) -> dict[str, Keyring]:
    """``.system_keyring`` (closed after boot), ``.ima_mok`` and ``.ima`` as 4.4 built them."""
    log = log if log is not None else EventLog()
    system = _system_keyring(vendor_keys, log)
    rings = {".system_keyring": system}
    trusted = system
    if ima_mok:
        # trusted = signed by a system key or by an .ima_mok key: the chain variant
        mok = Keyring(".ima_mok", log=log, restriction=restrict_link_by_key_or_keyring_chain,
                      restriction_key=system)
        rings[".ima_mok"] = mok
        # what .ima trusted: the system keys and the MOK keys (a keyring linking both)
        trusted = Keyring("system+ima_mok", log=log)
        trusted.link(system)
        trusted.link(mok)
    rings[".ima"] = Keyring(".ima", log=log, restriction=restrict_link_by_key_or_keyring,
                            restriction_key=trusted)
    return rings


def trust_model(model: TrustModel, *, vendor_keys: Iterable[Key],
                owner_keys: Iterable[Key] = (), log: EventLog | None = None
                ) -> dict[str, Keyring]:
    """The keyrings of one of the 2016 trust models (see the module docstring)."""
    if model == "vendor":
        return linux_4_4_keyrings(vendor_keys, ima_mok=False, log=log)
    rings = linux_4_4_keyrings(vendor_keys, ima_mok=True, log=log)
    for k in owner_keys:
        rings[".ima_mok"].add(k)
    if model == "owner-delegated":
        return rings
    if model == "owner-authorised":
        # third-party keys enter .ima only through a chain that passes the owner's key
        ima = Keyring(".ima", log=rings[".ima"].log,
                      restriction=restrict_link_by_key_or_keyring_chain,
                      restriction_key=rings[".ima_mok"])
        rings[".ima"] = ima
        return rings
    raise UsageError(f"unknown trust model {model!r}")


# -- when trust is decided: 4.4's KEY_FLAG_TRUSTED vs 4.6's restriction at link time --------
def restrict_link_by_ima_mok(dest: Keyring, key: Key | Keyring,
                             restriction_key: Keyring | Key | None, /) -> None:
    """security/integrity/ima/ima_mok.c (4.6, the 2016 patch set "KEYS: Move the point of
    trust determination to __key_link()"): a key enters ``.ima`` when a key of the
    system keyring signed it, or, when none did (-ENOKEY), a key of ``.ima_mok``.
    ``restriction_key`` is a keyring linking ``.system_keyring`` then ``.ima_mok`` (searched
    in that order: a key the system keyring finds but that does not verify is refused
    without asking .ima_mok, as restrict_link_by_builtin_trusted's -EKEYREJECTED is)."""
    restrict_link_by_signature(dest, key, restriction_key)


def linux_4_6_keyrings(vendor_keys: Iterable[Key], *, log: EventLog | None = None
                       ) -> dict[str, Keyring]:
    """``.system_keyring``, ``.ima_mok`` and ``.ima`` as the 2016 patch set (4.6) built
    them: every restriction runs at key_link time. ``.ima_mok`` takes keys the system
    keyring vouches for (restrict_link_by_builtin_trusted: not self-allowing, unlike 4.4's
    flag), ``.ima`` keys that the system keyring or ``.ima_mok`` vouches for
    (:func:`restrict_link_by_ima_mok`)."""
    log = log if log is not None else EventLog()
    system = _system_keyring(vendor_keys, log)
    mok = Keyring(".ima_mok", log=log, restriction=restrict_link_by_signature,
                  restriction_key=system)
    vouchers = Keyring("system+ima_mok", log=log)
    vouchers.link(system)
    vouchers.link(mok)
    ima = Keyring(".ima", log=log, restriction=restrict_link_by_ima_mok,
                  restriction_key=vouchers)
    return {".system_keyring": system, ".ima_mok": mok, ".ima": ima}


@dataclass
class Linux44Trust:
    """Linux 4.4/4.5's KEY_FLAG_TRUSTED model: trust is decided once, when the key is
    created (x509_key_preparse: x509_validate_trust against ``.system_keyring``, then,
    with CONFIG_IMA_MOK_KEYRING, ``.ima_mok``) and kept as a flag on the key; a
    KEY_FLAG_TRUSTED_ONLY keyring (``.ima``, ``.ima_mok``) admits a key only if the flag
    is set, at add and at key_link alike, whatever the vouching keyrings hold by then.

    So a key created while its CA was in ``.ima_mok`` stays trusted after the CA is
    removed and can still be linked into ``.ima``; 4.6's restriction (re-run at every
    link, :func:`linux_4_6_keyrings`) refuses it."""

    rings: dict[str, Keyring]
    #: KEY_FLAG_TRUSTED, by the key's ids (the flag lives on the kernel's key object)
    trusted: dict[tuple[bytes, ...], bool] = field(default_factory=dict)

    @classmethod
    def boot(cls, vendor_keys: Iterable[Key], *, ima_mok: bool = True,
             log: EventLog | None = None) -> Linux44Trust:
        log = log if log is not None else EventLog()
        system = Keyring(".system_keyring", log=log)
        for k in vendor_keys:
            system.add(k)
        system.restrict(restrict_link_reject)
        rings = {".system_keyring": system}
        if ima_mok:
            rings[".ima_mok"] = Keyring(".ima_mok", log=log)
        rings[".ima"] = Keyring(".ima", log=log)
        out = cls(rings)
        for ring in rings.values():
            if ring is not system:
                ring.restrict(out._trusted_only)
        return out

    def _vouch(self, key: Key) -> bool:
        """x509_validate_trust against the system keyring, then .ima_mok."""
        for name in (".system_keyring", ".ima_mok"):
            ring = self.rings.get(name)
            if ring is None:
                continue
            try:
                restrict_link_by_signature(ring, key, ring)
                return True
            except KeyRejectedError:
                continue
        return False

    def _trusted_only(self, dest: Keyring, key: Key | Keyring,
                      restriction_key: Keyring | Key | None, /) -> None:
        """KEY_FLAG_TRUSTED_ONLY: the flag decides (-EPERM)."""
        if isinstance(key, Keyring) or not self.trusted.get(key.ids, False):
            what = key.name if isinstance(key, Keyring) else key.description
            raise KeyRejectedError(f"{dest.name} is KEY_FLAG_TRUSTED_ONLY and "
                                   f"{what!r} is not KEY_FLAG_TRUSTED (EPERM)")

    def create(self, key: Key) -> Key:
        """key_alloc of a certificate: KEY_FLAG_TRUSTED is decided now, for good."""
        self.trusted.setdefault(key.ids, self._vouch(key))
        return key

    def add(self, ring: str, key: Key) -> None:
        """add_key(2) into ``ring``: the key is created (its flag decided), then linked."""
        self.rings[ring].add(self.create(key))

    def link(self, ring: str, key: Key) -> None:
        """keyctl link of an existing key: only its flag is tested."""
        self.rings[ring].add(key)
