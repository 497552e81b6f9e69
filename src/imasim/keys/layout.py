"""The keyrings a configured kernel creates at boot, and ``/proc/keys`` as it shows them.

Which keyrings exist is a property of the kernel's configuration, not a constant: a
kernel without CONFIG_SYSTEM_TRUSTED_KEYRING has no system keyrings at all, Debian's 6.1
and 6.12 (CONFIG_INTEGRITY_TRUSTED_KEYRING unset) have no ``.ima``/``.evm`` (user space
makes ``_ima`` itself, ``keyctl newring _ima @u``), ``.fs-verity`` exists only with
CONFIG_FS_VERITY_BUILTIN_SIGNATURES and ``.sed_opal`` only from 6.5 with
CONFIG_BLK_SED_OPAL. :func:`boot_keyrings` lists them with the permissions and reference
counts the kernel gives them (certs/system_keyring.c, certs/blacklist.c,
security/integrity/digsig.c integrity_init_keyring, fs/verity/signature.c,
block/sed-opal.c); :class:`ProcKey` is one line of ``/proc/keys``
(security/keys/proc.c proc_keys_show), parsed or rendered.

>>> from imasim.kconfig import PRESETS
>>> print(*[k.name for k in boot_keyrings(PRESETS["debian12-6.1"])])
.builtin_trusted_keys .secondary_trusted_keys .machine .platform .blacklist .fs-verity
>>> boot_keyrings(PRESETS["custom-6.1-ima-kexec"])
()
>>> line = "2ad0d11e I------     2 perm 1f0b0000     0     0 keyring   .builtin_trusted_keys: 1"
>>> ProcKey.parse(line).render(serial=0x2ad0d11e) == line
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ..errors import ParseError
from ..kconfig import KernelConfig
from .key import Key
from .keyring import BLACKLIST_KEYRING_PERM, Keyring

__all__ = [
    "BLACKLIST_KEY_PERM",
    "KEY_PERM_KERNEL_CERT",
    "KEY_PERM_PLATFORM_CERT",
    "KEY_PERM_USER_KEY",
    "KEY_PERM_USER_KEYRING",
    "KeyringSpec",
    "ProcKey",
    "boot_keyrings",
    "proc_keys",
]

# include/linux/key.h: possessor, user, group, other bytes
_POS_VIEW, _POS_READ, _POS_WRITE, _POS_SEARCH, _POS_LINK, _POS_SETATTR = (
    0x01000000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000)
_POS_ALL: Final = 0x3F000000
_USR_VIEW, _USR_READ, _USR_WRITE, _USR_SEARCH, _USR_SETATTR = (
    0x00010000, 0x00020000, 0x00040000, 0x00080000, 0x00200000)

#: (KEY_POS_ALL & ~KEY_POS_SETATTR) | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH: the
#: system keyrings user space may search but not write (.builtin_trusted_keys, .machine,
#: .platform): add_key into them is EACCES
_SYSTEM_RO: Final = (_POS_ALL & ~_POS_SETATTR) | _USR_VIEW | _USR_READ | _USR_SEARCH
#: the same plus KEY_USR_WRITE (.secondary_trusted_keys, .ima/.evm, .sed_opal)
_SYSTEM_RW: Final = _SYSTEM_RO | _USR_WRITE
#: a certificate compiled into the kernel (load_certificate_list)
KEY_PERM_KERNEL_CERT: Final = (_POS_ALL & ~_POS_SETATTR) | _USR_VIEW | _USR_READ
#: a certificate the kernel loads from firmware (UEFI db/MOK: integrity_add_key)
KEY_PERM_PLATFORM_CERT: Final = (_POS_ALL & ~_POS_SETATTR) | _USR_VIEW
#: add_key(2) from user space: the default for a type without a read method
KEY_PERM_USER_KEY: Final = _POS_VIEW | _POS_SEARCH | _POS_LINK | _POS_SETATTR | _USR_VIEW
#: keyctl newring: a keyring made by user space (it has read and write methods)
KEY_PERM_USER_KEYRING: Final = _POS_ALL | _USR_VIEW


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyringSpec:
    """A keyring the kernel creates at boot: its name, permissions, how many references
    it holds right after boot (the kernel's pointer plus each keyring linking it), the
    restriction function guarding it (None: unrestricted) and the keyrings linked into it."""

    name: str
    perm: int
    usage: int = 1
    restriction: str | None = None
    links: tuple[str, ...] = ()
    #: what creates it (kernel function, and the configuration that enables it)
    source: str = ""


def boot_keyrings(config: KernelConfig) -> tuple[KeyringSpec, ...]:
    """The keyrings ``config``'s kernel has created when user space starts, in the order
    the kernel creates them (keys compiled in or loaded from firmware not included)."""
    out: list[KeyringSpec] = []
    secondary = config.system_trusted_keyring and config.secondary_trusted_keyring
    machine = config.integrity_signature and config.integrity_machine_keyring and secondary
    if config.system_trusted_keyring:
        out.append(KeyringSpec(
            name=".builtin_trusted_keys", perm=_SYSTEM_RO, usage=2 if secondary else 1,
            source="system_trusted_keyring_init (CONFIG_SYSTEM_TRUSTED_KEYRING)"))
    if secondary:
        out.append(KeyringSpec(
            name=".secondary_trusted_keys", perm=_SYSTEM_RW,
            restriction=("restrict_link_by_builtin_secondary_and_machine" if machine
                         else "restrict_link_by_builtin_and_secondary_trusted"),
            links=(".builtin_trusted_keys",) + ((".machine",) if machine else ()),
            source="system_trusted_keyring_init (CONFIG_SECONDARY_TRUSTED_KEYRING)"))
    if machine:
        ca = config.integrity_ca_machine_keyring
        out.append(KeyringSpec(
            name=".machine", perm=_SYSTEM_RO, usage=2,
            restriction="restrict_link_by_ca" if ca else None,
            source="machine_keyring_init (CONFIG_INTEGRITY_MACHINE_KEYRING)"))
    if config.integrity_signature and config.integrity_platform_keyring:
        out.append(KeyringSpec(
            name=".platform", perm=_SYSTEM_RO,
            source="platform_keyring_init (CONFIG_INTEGRITY_PLATFORM_KEYRING)"))
    if config.integrity_signature and config.integrity_trusted_keyring and \
            config.system_trusted_keyring:
        vouch = ("restrict_link_by_builtin_and_secondary_trusted"
                 if config.ima_keyrings_permit_signed_by_builtin_or_secondary
                 else "restrict_link_by_builtin_trusted")
        out.append(KeyringSpec(name=".ima", perm=_SYSTEM_RW, restriction=vouch,
                               source="ima_init (CONFIG_INTEGRITY_TRUSTED_KEYRING)"))
        if config.evm:
            out.append(KeyringSpec(name=".evm", perm=_SYSTEM_RW, restriction=vouch,
                                   source="evm_init (CONFIG_EVM)"))
    if config.system_trusted_keyring and config.system_blacklist_keyring:
        out.append(KeyringSpec(
            name=".blacklist", perm=int(BLACKLIST_KEYRING_PERM) |
            (_USR_WRITE if config.system_blacklist_auth_update else 0),
            restriction="restrict_link_for_blacklist",
            source="blacklist_init (CONFIG_SYSTEM_BLACKLIST_KEYRING)"))
    if config.fs_verity_builtin_signatures:
        out.append(KeyringSpec(
            name=".fs-verity", perm=_POS_SEARCH | _USR_VIEW | _USR_READ | _USR_WRITE |
            _USR_SEARCH | _USR_SETATTR,
            source="fsverity_init_signature (CONFIG_FS_VERITY_BUILTIN_SIGNATURES)"))
    if config.sed_opal_keyring:
        out.append(KeyringSpec(name=".sed_opal", perm=_SYSTEM_RW,
                               source="sed_opal_init (CONFIG_BLK_SED_OPAL, 6.5+)"))
    return tuple(out)


#: sed_opal_init's key: a "user" key of OPAL_KEY_MAX - 1 bytes (zeros when the firmware
#: has none), perm KEY_USR_VIEW | KEY_USR_SEARCH | KEY_USR_WRITE; update_sed_opal_key never
#: puts the reference key_create_or_update returned, so /proc/keys shows usage 2
SED_OPAL_BOOT_PIN: Final = ("opal-boot-pin", 255, _USR_VIEW | _USR_SEARCH | _USR_WRITE, 2)

#: certs/blacklist.c BLACKLIST_KEY_PERM: a blacklisted hash, visible and searchable only
BLACKLIST_KEY_PERM: Final = _POS_SEARCH | _POS_VIEW | _USR_SEARCH | _USR_VIEW

_FLAGS: Final = "IRDQUNi"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcKey:
    """One line of ``/proc/keys`` without its serial (a random number per boot).

    ``flags`` is the 7-character column (``I`` instantiated, ``Q`` charged to a user's
    quota: made by user space), ``type`` the key type's name as printed (9 characters at
    most: ``asymmetri``), ``summary`` what the type's describe method writes (a keyring's
    ``<name>: <n>`` or ``<name>: empty``)."""

    # the type column is "%-9.9s": the name cut to 9 characters (asymmetric -> asymmetri)

    flags: str
    usage: int
    timeout: str
    perm: int
    uid: int
    gid: int
    type: str
    summary: str

    @classmethod
    def parse(cls, line: str) -> ProcKey:
        """A /proc/keys line (ParseError naming the column that is malformed)."""
        parts = line.split(None, 8)
        if len(parts) != 9:
            raise ParseError("a /proc/keys line has 9 columns", field="proc_keys",
                             expected="9 columns", actual=str(len(parts)))
        serial, flags, usage, timeout, perm, uid, gid, type_, summary = parts
        try:
            int(serial, 16)
            value = cls(flags=flags, usage=int(usage), timeout=timeout, perm=int(perm, 16),
                        uid=int(uid), gid=int(gid), type=type_, summary=summary)
        except ValueError:
            raise ParseError(f"bad number in /proc/keys line {line[:80]!r}",
                             field="proc_keys") from None
        if len(flags) != 7 or any(c not in ("-", f) for c, f in zip(flags, _FLAGS, strict=True)):
            raise ParseError(f"bad flags {flags!r}", field="proc_keys.flags")
        return value

    @property
    def description(self) -> str:
        """The key's description: the summary up to the type's ``: `` suffix."""
        return self.summary.rsplit(": ", 1)[0] if self.type in ("keyring", "user") \
            else self.summary.split(": ", 1)[0]

    @property
    def in_quota(self) -> bool:
        """Made on behalf of a process (KEY_ALLOC_IN_QUOTA): not part of the boot layout."""
        return self.flags[3] == "Q"

    def render(self, *, serial: int) -> str:
        """The line as proc_keys_show prints it (``%-9.9s`` truncates the type name)."""
        return (f"{serial:08x} {self.flags} {self.usage:5d} {self.timeout:>4} {self.perm:08x} "
                f"{self.uid:5d} {self.gid:5d} {self.type[:9]:<9} {self.summary}")

    @classmethod
    def keyring(cls, name: str, *, perm: int, usage: int = 1, leaves: int = 0,
                in_quota: bool = False) -> ProcKey:
        """keyring_describe: ``<name>: <keys and links>`` or ``<name>: empty``."""
        return cls(flags="I--Q---" if in_quota else "I------", usage=usage, timeout="perm",
                   perm=perm, uid=0, gid=0, type="keyring",
                   summary=f"{name}: {leaves if leaves else 'empty'}")

    @classmethod
    def key(cls, type_: str, summary: str, *, perm: int, usage: int = 1,
            in_quota: bool = False) -> ProcKey:
        return cls(flags="I--Q---" if in_quota else "I------", usage=usage, timeout="perm",
                   perm=perm, uid=0, gid=0, type=type_[:9], summary=summary)


def proc_keys(config: KernelConfig, keyrings: Mapping[str, Keyring], *,
              blacklist: Sequence[str] = (), user_blacklist: Sequence[str] = ()
              ) -> tuple[ProcKey, ...]:
    """``/proc/keys`` of a booted kernel, without the per-user keyrings (``_uid.0``,
    ``_uid_ses.0``, ``.user_reg``) the kernel makes when a process first asks.

    Each keyring of :func:`boot_keyrings` as ``keyrings`` (name -> :class:`Keyring`)
    holds it now, its summary counting keys and links; each key once, with the
    permissions of whoever added it (compiled in: ``.builtin_trusted_keys``; firmware:
    ``.platform``, ``.machine``; user space otherwise, charged to its quota) and one
    reference per keyring holding it. A ``_ima``/``_evm`` keyring that holds keys was made
    by user space (``keyctl newring``) and is listed as such. ``.blacklist`` holds the
    ``blacklist`` entries (``bin:<hex>``, ``tbs:<hex>``) as keys of the blacklist type:
    ``blacklist`` those the kernel added, ``user_blacklist`` those root added with add_key
    (charged to its quota, one reference)."""
    out: list[ProcKey] = []
    holders: dict[int, tuple[Key, list[str]]] = {}
    specs = boot_keyrings(config)
    user_made = [n for n in ("_ima", "_evm") if n in keyrings and keyrings[n].keys and
                 n not in {s.name for s in specs}]
    for spec in specs:
        ring = keyrings.get(spec.name)
        leaves = (len(ring.keys) + len(ring.links)) if ring is not None else 0
        if spec.name == ".blacklist":
            leaves += len(blacklist) + len(user_blacklist)
        elif spec.name == ".sed_opal":
            leaves += 1  # opal-boot-pin
        out.append(ProcKey.keyring(spec.name, perm=spec.perm, usage=spec.usage,
                                   leaves=leaves))
        for key in ring.keys if ring is not None else ():
            holders.setdefault(id(key), (key, []))[1].append(spec.name)
    for name in user_made:
        ring = keyrings[name]
        out.append(ProcKey.keyring(name, perm=KEY_PERM_USER_KEYRING,
                                   leaves=len(ring.keys) + len(ring.links), in_quota=True))
        for key in ring.keys:
            holders.setdefault(id(key), (key, []))[1].append(name)
    for key, rings in holders.values():
        kernel = rings[0] in (".builtin_trusted_keys", ".platform", ".machine")
        perm = (KEY_PERM_KERNEL_CERT if rings[0] == ".builtin_trusted_keys" else
                KEY_PERM_PLATFORM_CERT if kernel else KEY_PERM_USER_KEY)
        out.append(ProcKey.key("asymmetric", key.describe(), perm=perm, usage=len(rings),
                               in_quota=not kernel))
    if config.system_trusted_keyring and config.system_blacklist_keyring:
        # mark_raw_hash_blacklisted: key_create's reference is never put (usage 2)
        out += [ProcKey.key("blacklist", entry, perm=BLACKLIST_KEY_PERM, usage=2)
                for entry in blacklist]
        out += [ProcKey.key("blacklist", entry, perm=BLACKLIST_KEY_PERM, in_quota=True)
                for entry in user_blacklist]
    if config.sed_opal_keyring:
        pin, size, perm, usage = SED_OPAL_BOOT_PIN
        out.append(ProcKey.key("user", f"{pin}: {size}", perm=perm, usage=usage))
    return tuple(out)
