"""Key permissions and keyring identity as the kernel has them: user space cannot write
to the keyrings the kernel fills itself, and a keyring's name proves nothing."""

from __future__ import annotations

import pytest

from imasim.errors import KeyRejectedError, PermissionDeniedError
from imasim.kconfig import PRESETS
from imasim.keys.keyring import (
    KERNEL_KEYRING_PERM,
    USER_KEYRING_PERM,
    KeyNeed,
    KeyPerm,
    Keyring,
)
from imasim.machine import Machine
from imasim.sig import sign_module
from imasim.sig.authenticode import sign_pe
from imasim.sig.pefile import build_pe
from pki import pki


def machine(**changes: object) -> Machine:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(**changes)
    m = Machine.create(config=cfg, builtin_keys=[pki()["root"].as_key()])
    m.boot()
    return m


@pytest.mark.parametrize("ring", [".builtin_trusted_keys", ".platform", ".machine"])
def test_user_space_cannot_add_to_the_kernels_own_keyrings(ring: str) -> None:
    """digsig.c/system_keyring.c give these no KEY_USR_WRITE: add_key is -EACCES before
    any restriction runs, and nothing is measured or added."""
    m = machine(integrity_machine_keyring=True)
    m.load_policy("measure func=KEY_CHECK\n")
    before = m.snapshot()
    with pytest.raises(PermissionDeniedError, match="EACCES"):
        m.add_key(ring, pki()["stranger"].as_key())
    assert m.snapshot() == before


def test_user_space_may_add_to_secondary_and_ima_where_restrictions_decide() -> None:
    m = machine()
    m.add_key(".secondary_trusted_keys", pki()["inter"].as_key())
    m.add_key(".ima", pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError):
        m.add_key(".ima", pki()["stranger"].as_key())


def test_without_a_trusted_keyring_user_space_owns_ima() -> None:
    m = machine(integrity_trusted_keyring=False)
    assert m.keyrings.ima.name == "_ima"
    m.add_key("_ima", pki()["stranger"].as_key())  # its own keyring: anything goes
    assert m.keyrings.ima.keys == (pki()["stranger"].as_key(),)


def test_an_attacker_key_cannot_enter_platform_to_sign_a_kexec_image() -> None:
    """Under kexec_sig_force the platform keyring vouches for kexec images: were user
    space able to add to it, any image it signs would load."""
    m = machine(kexec_sig_force=True)
    attacker = pki()["stranger"]
    m.add_file("/boot/evil", sign_pe(build_pe(b"evil"), key=attacker.key,
                                     certificate=attacker.cert))
    with pytest.raises(PermissionDeniedError):
        m.add_key(".platform", attacker.as_key())
    assert not m.kexec_load("/boot/evil").allowed


def test_builtin_keys_cannot_be_cleared_or_linked_into() -> None:
    m = machine()
    with pytest.raises(PermissionDeniedError):
        m.clear_keyring(".builtin_trusted_keys")
    with pytest.raises(PermissionDeniedError):
        m.link_keyring(".builtin_trusted_keys", Keyring("mine"))
    assert m.keyrings.builtin.keys == (pki()["root"].as_key(),)
    own = Keyring("mine")
    own.add(pki()["stranger"].as_key())
    m.clear_keyring(own)  # user space's own keyring: its possessor may
    assert own.keys == ()


@pytest.mark.parametrize("machine_keyring", [False, True])
def test_a_self_made_machine_keyring_is_not_the_machine_keyring(machine_keyring: bool) -> None:
    """The secondary keyring's restriction admits the kernel's .machine keyring object
    (set_machine_trusted_keys); a keyring user space names .machine is refused, so its
    keys never vouch for modules."""
    m = machine(integrity_machine_keyring=machine_keyring, module_sig_force=True)
    assert (m.keyrings.machine in m.keyrings.secondary.links) is machine_keyring
    fake = Keyring(".machine")
    attacker = pki()["stranger"]
    fake.add(attacker.as_key())
    with pytest.raises(KeyRejectedError, match="EOPNOTSUPP"):
        m.link_keyring(".secondary_trusted_keys", fake)
    assert fake not in m.keyrings.secondary.links
    m.add_file("/lib/modules/evil.ko", sign_module(b"\x7fELF evil", key=attacker.key,
                                                    certificate=attacker.cert))
    assert not m.load_module("/lib/modules/evil.ko").allowed


def test_a_self_made_secondary_is_not_the_secondary() -> None:
    """asymmetric:builtin_and_secondary_trusted on a user keyring named
    .secondary_trusted_keys: it may not link the builtin keyring (only the kernel's
    secondary may), and keys need a builtin or secondary signature."""
    m = machine()
    fake = Keyring(".secondary_trusted_keys")
    fake.restrict("asymmetric:builtin_and_secondary_trusted", resolve=m.keyrings.by_name)
    with pytest.raises(KeyRejectedError):
        fake.link(m.keyrings.builtin)
    with pytest.raises(KeyRejectedError):
        fake.add(pki()["stranger"].as_key())
    fake.add(pki()["inter"].as_key())  # signed by the builtin root


def test_permission_bits_are_the_kernels() -> None:
    m = machine()
    rings = m.keyrings
    assert rings.builtin.perm == KERNEL_KEYRING_PERM == 0x1F0B0000
    assert rings.secondary.perm == KERNEL_KEYRING_PERM | KeyPerm.USR_WRITE
    assert rings.platform.perm == rings.machine.perm == KERNEL_KEYRING_PERM
    assert rings.ima.perm == rings.evm.perm == KERNEL_KEYRING_PERM | KeyPerm.USR_WRITE
    assert Keyring("x").perm == USER_KEYRING_PERM == 0x3F010000
    rings.secondary.check_permission(KeyNeed.WRITE | KeyNeed.SEARCH)
    with pytest.raises(PermissionDeniedError):
        rings.secondary.check_permission(KeyNeed.LINK)  # not possessed: no POS_LINK
