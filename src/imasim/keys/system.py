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
    KERNEL_KEYRING_PERM,
    Blacklist,
    EventLog,
    KernelKeyrings,
    KeyPerm,
    Keyring,
    Restriction,
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
        """The keyrings with the kernel's restrictions and permissions: user space may
        add keys to .secondary_trusted_keys and .ima/.evm (KEY_USR_WRITE), never to
        .builtin_trusted_keys, .platform or .machine (only the kernel fills those, from
        its image and the firmware). Without CONFIG_INTEGRITY_TRUSTED_KEYRING the
        ``_ima``/``_evm`` keyrings are user space's own (unrestricted, possessed)."""
        log = log if log is not None else EventLog()
        g = KernelKeyrings()
        layout = boot_keyrings(config)
        bl = Blacklist(perm=next((s.perm for s in layout if s.name == ".blacklist"), 0),
                       auth_update=config.system_blacklist_auth_update)
        for h in config.system_blacklist_hash_list:
            bl.add_entry(h)

        def ring(name: str, write: bool, restriction: Restriction | None = None,
                 restriction_key: Keyring | None = None) -> Keyring:
            perm = KERNEL_KEYRING_PERM | (KeyPerm.USR_WRITE if write else 0)
            return Keyring(name, blacklist=bl, log=log, perm=perm, possessed=False,
                           kernel=g, restriction=restriction, restriction_key=restriction_key)

        builtin = g.builtin = ring(".builtin_trusted_keys", False)
        for k in builtin_keys:
            builtin.add(k)
        builtin.restrict(restrict_link_reject)
        secondary = g.secondary = ring(
            ".secondary_trusted_keys", True,
            restrict_link_by_builtin_secondary_and_machine if config.integrity_machine_keyring
            else restrict_link_by_builtin_and_secondary_trusted, builtin)
        secondary.link(builtin)
        machine = g.machine = ring(".machine", False)  # digsig.c: never KEY_USR_WRITE
        if config.integrity_machine_keyring:  # set_machine_trusted_keys (5.18+)
            secondary.link(machine)
        platform = g.platform = ring(".platform", False)
        permit = config.ima_keyrings_permit_signed_by_builtin_or_secondary
        vouchers = secondary if permit else builtin
        if config.integrity_trusted_keyring:
            restriction = (restrict_link_by_builtin_and_secondary_trusted if permit
                           else restrict_link_by_builtin_trusted)
            ima, evm = (ring(name, True, restriction, vouchers) for name in (".ima", ".evm"))
        else:  # digsig.c keyring_name[]: user space makes "_ima"/"_evm" itself
            ima, evm = (Keyring(name, blacklist=bl, log=log, restriction_key=vouchers)
                        for name in ("_ima", "_evm"))
        return cls(builtin, secondary, platform, machine, ima, evm, bl, log, layout)

    def resolve(self, ring: str | Keyring) -> Keyring:
        """A keyring object as is, or a system keyring by its name (:meth:`by_name`)."""
        return self.by_name(ring) if isinstance(ring, str) else ring

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
