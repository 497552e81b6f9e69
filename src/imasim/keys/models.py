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
from typing import Literal

from ..errors import UsageError
from .key import Key
from .keyring import (
    EventLog,
    Keyring,
    restrict_link_by_key_or_keyring,
    restrict_link_by_key_or_keyring_chain,
    restrict_link_reject,
)

__all__ = ["linux_4_4_keyrings", "trust_model"]

TrustModel = Literal["vendor", "owner-delegated", "owner-authorised"]


def linux_4_4_keyrings(vendor_keys: Iterable[Key], *, ima_mok: bool = True,
                       log: EventLog | None = None) -> dict[str, Keyring]:
    """``.system_keyring`` (closed after boot), ``.ima_mok`` and ``.ima`` as 4.4 built them."""
    log = log if log is not None else EventLog()
    system = Keyring(".system_keyring", log=log)
    for k in vendor_keys:
        system.add(k)
    system.restrict(restrict_link_reject)
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
