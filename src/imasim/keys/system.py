"""certs/system_keyring.c, security/integrity/digsig.c: the keyrings a configured kernel
builds at boot.

>>> from imasim.kconfig import PRESETS
>>> rings = SystemKeyrings.build(PRESETS["generic-6.1-ima-kexec"])
>>> rings.builtin.restriction_name, [r.name for r in rings.secondary.links]
('restrict_link_reject', ['.builtin_trusted_keys'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UsageError
from ..kconfig import KernelConfig
from .key import Key
from .keyring import (
    Blacklist,
    EventLog,
    Keyring,
    restrict_link_by_builtin_and_secondary_trusted,
    restrict_link_by_builtin_secondary_and_machine,
    restrict_link_by_builtin_trusted,
    restrict_link_reject,
)
from .layout import KeyringSpec, boot_keyrings

__all__ = ["SystemKeyrings"]


@dataclass
class SystemKeyrings:
    """The keyrings a configured kernel builds (certs/system_keyring.c, integrity/digsig.c)."""

    builtin: Keyring
    secondary: Keyring
    platform: Keyring
    machine: Keyring
    ima: Keyring
    evm: Keyring
    blacklist: Blacklist
    log: EventLog
    #: the keyrings this kernel created (imasim.keys.layout.boot_keyrings); the other
    #: attributes are empty stand-ins that no name reaches
    layout: tuple[KeyringSpec, ...] = ()

    @classmethod
    def build(cls, config: KernelConfig, builtin_keys: Iterable[Key] = (),
              log: EventLog | None = None) -> SystemKeyrings:
        log = log if log is not None else EventLog()
        bl = Blacklist()
        for h in config.system_blacklist_hash_list:
            kind, _, hexval = h.partition(":")
            (bl.add_tbs_hash if kind == "tbs" else bl.add_binary_hash)(bytes.fromhex(hexval))
        builtin = Keyring(".builtin_trusted_keys", blacklist=bl, log=log)
        for k in builtin_keys:
            builtin.add(k)
        builtin.restrict(restrict_link_reject)
        secondary = Keyring(".secondary_trusted_keys", blacklist=bl, log=log,
                            restriction=(restrict_link_by_builtin_secondary_and_machine
                                         if config.integrity_machine_keyring else
                                         restrict_link_by_builtin_and_secondary_trusted),
                            restriction_key=builtin)
        secondary.link(builtin)
        machine = Keyring(".machine", blacklist=bl, log=log)
        if config.integrity_machine_keyring:  # set_machine_trusted_keys (5.18+)
            secondary.link(machine)
        platform = Keyring(".platform", blacklist=bl, log=log)
        ima_restriction = (restrict_link_by_builtin_and_secondary_trusted
                           if config.ima_keyrings_permit_signed_by_builtin_or_secondary
                           else restrict_link_by_builtin_trusted)
        # digsig.c keyring_name[]: "_ima"/"_evm" without CONFIG_INTEGRITY_TRUSTED_KEYRING
        prefix = "." if config.integrity_trusted_keyring else "_"
        vouchers = secondary if config.ima_keyrings_permit_signed_by_builtin_or_secondary \
            else builtin
        ima, evm = (Keyring(prefix + name, blacklist=bl, log=log,
                            restriction=(ima_restriction if config.integrity_trusted_keyring
                                         else None), restriction_key=vouchers)
                    for name in ("ima", "evm"))
        return cls(builtin, secondary, platform, machine, ima, evm, bl, log,
                   boot_keyrings(config))

    def by_name(self, name: str) -> Keyring:
        """A keyring of this kernel by its name: one :attr:`layout` has, or ``_ima``/``_evm``
        where the kernel has no ``.ima``/``.evm`` (user space makes them, ``keyctl newring
        _ima @u``, and IMA then finds them by name)."""
        present = {s.name for s in self.layout} | {"_ima", "_evm"}
        for ring in (self.builtin, self.secondary, self.platform, self.machine, self.ima,
                     self.evm):
            if ring.name == name and name in present:
                return ring
        raise UsageError(f"no keyring {name!r} on this kernel (it has "
                         f"{', '.join(sorted(s.name for s in self.layout)) or 'none'})")

    def named(self) -> dict[str, Keyring]:
        """Every keyring object by name (present on this kernel or not)."""
        return {r.name: r for r in (self.builtin, self.secondary, self.machine, self.platform,
                                    self.ima, self.evm)}
