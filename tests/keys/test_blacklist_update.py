"""User space adding hashes to .blacklist (certs/blacklist.c, security/keys/keyctl.c).

``keyctl padd blacklist "bin:<hex>" %:.blacklist < sig.p7s`` works only on a kernel built
with CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE (5.19+: "certs: Allow root user to append signed
hashes to the blacklist keyring", committed 2022-05-23): the keyring then has
KEY_USR_WRITE, the description must pass blacklist_vet_description and the payload must be
a PKCS#7 signature of it by a key of .builtin_trusted_keys. Without the option the keyring
has no KEY_USR_WRITE and every add is EACCES. An added ``bin:`` hash is what IMA's
appraise_flag=check_blacklist compares a modsig's digest with; a ``tbs:`` hash revokes a
certificate everywhere it would vouch. The rules are checked here against the 6.12 source;
tests/keys/test_blacklist_keyctl.py runs the same requests on the running kernel.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    PermissionDeniedError,
    PolicyError,
    RevokedError,
    UsageError,
)
from imasim.kconfig import PRESETS
from imasim.keys.keyring import Blacklist, BlacklistKey, vet_blacklist_description
from imasim.machine import Machine
from imasim.sig import sign_module
from imasim.sig.authenticode import sign_pe
from imasim.sig.pefile import build_pe
from imasim.sig.pkcs7 import sign_pkcs7
from pki import pki

BIN = "bin:" + "ab" * 32


def errno_of(exc: BaseException) -> str:
    """The errno an imasim error names, as ``(EXXX)`` or ``: EXXX``."""
    found = re.findall(r"\b(E[A-Z]{3,})\b", str(exc))
    return found[-1] if found else type(exc).__name__


def signed(desc: str, who: str = "root", **kw: object) -> BlacklistKey:
    s = pki()[who]
    return BlacklistKey(desc, sign_pkcs7(desc.encode(), key=s.key, certificate=s.cert,
                                         **kw))  # type: ignore[arg-type]


def machine(auth_update: bool, *, cmdline: str = "ima_policy=tcb", **changes: object
            ) -> Machine:
    cfg = PRESETS["debian12-6.12"].with_(system_blacklist_auth_update=auth_update, **changes)
    m = Machine.create(config=cfg, cmdline=cmdline, builtin_keys=[pki()["root"].as_key()])
    m.boot()
    return m


def refused(m: Machine, key: object, errno: str, ring: str = ".blacklist") -> ImasimError:
    before = m.snapshot()
    with pytest.raises(ImasimError) as info:
        m.add_key(ring, key)  # type: ignore[arg-type]
    assert errno_of(info.value) == errno, info.value
    assert m.snapshot() == before
    return info.value


def blacklist_lines(m: Machine) -> list[str]:
    return [p.render(serial=0)[9:] for p in m.proc_keys()
            if p.type == "blacklist" or p.summary.startswith(".blacklist")]


# -- without CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE (Debian's 6.1 and 6.12) -------------------
def test_without_the_option_every_add_is_eacces() -> None:
    m = machine(False)
    assert blacklist_lines(m) == ["I------     1 perm 0f0b0000     0     0 keyring   "
                                  ".blacklist: empty"]
    for key in (signed(BIN), BlacklistKey(BIN), BlacklistKey("bin:XYZ"), BlacklistKey(""),
                pki()["leaf"].as_key()):
        assert isinstance(refused(m, key, "EACCES"), PermissionDeniedError)
    # add_key copies the description first: 4096 bytes (NUL included: 4097) is EINVAL
    refused(m, BlacklistKey("bin:" + "a" * 4092), "EINVAL")
    refused(m, BlacklistKey("bin:" + "a" * 4091), "EACCES")
    with pytest.raises(PermissionDeniedError, match="EACCES"):
        m.clear_keyring(".blacklist")


# -- with it ---------------------------------------------------------------------------
def test_a_hash_signed_by_a_builtin_key_is_added_for_good() -> None:
    m = machine(True)
    m.add_key(".blacklist", signed(BIN))
    assert m.keyrings.blacklist.is_binary_blocked(bytes.fromhex("ab" * 32))
    # blacklist_key_instantiate sets BLACKLIST_KEY_PERM; add_key charges root's quota
    assert blacklist_lines(m) == [
        "I------     1 perm 0f0f0000     0     0 keyring   .blacklist: 1",
        "I--Q---     1 perm 09090000     0     0 blacklist " + BIN]
    refused(m, signed(BIN), "EACCES")  # __key_update: no blacklist key has KEY_NEED_WRITE
    with pytest.raises(PermissionDeniedError, match="EPERM"):  # KEY_FLAG_KEEP
        m.clear_keyring(".blacklist")
    assert m.keyrings.blacklist.added_by_user() == (BIN,)


def test_a_built_in_hash_cannot_be_added_again() -> None:
    m = machine(True, system_blacklist_hash_list=(BIN,))
    refused(m, signed(BIN), "EACCES")
    assert blacklist_lines(m)[1:] == ["I------     2 perm 09090000     0     0 blacklist " + BIN]


@pytest.mark.parametrize("desc, errno", [
    ("bin:AB", "EINVAL"), ("bin:abc", "EINVAL"), ("bin:", "EINVAL"), ("tbs", "EINVAL"),
    ("xyz:ab", "EINVAL"), ("bins:ab", "EINVAL"), (":ab", "EINVAL"), ("tin:ab", "EINVAL"),
    ("bin:" + "g" * 200, "EINVAL"),  # a bad digit among the first 128 wins over the length
    ("bin:" + "a" * 130, "ENOPKG"), ("bin:" + "a" * 127 + "G", "EINVAL"),
    ("bin:" + "a" * 128 + "G", "ENOPKG"), ("", "EINVAL")])
def test_descriptions_are_vetted_as_blacklist_vet_description_does(desc: str,
                                                                   errno: str) -> None:
    refused(machine(True), signed(desc), errno)


def test_valid_descriptions() -> None:
    for desc in ("bin:00", "tbs:" + "0f" * 64, "bin:" + "a" * 128):
        vet_blacklist_description(desc)


@pytest.mark.parametrize("make, exc", [
    (lambda: BlacklistKey(BIN), ParseError),  # no PKCS#7 at all: EBADMSG
    (lambda: signed(BIN, "leaf"), KeyNotFoundError),  # vouched for, but only in secondary
    (lambda: signed(BIN, "stranger"), KeyNotFoundError),
    (lambda: BlacklistKey(BIN, signed("bin:" + "cd" * 32).payload), KeyRejectedError),
    (lambda: signed(BIN, detached=False), ParseError)])  # content inside: EINVAL
def test_only_a_detached_signature_by_a_builtin_key_is_accepted(
        make: Callable[[], BlacklistKey], exc: type[Exception]) -> None:
    m = machine(True)
    m.add_key(".secondary_trusted_keys", pki()["leaf"].as_key())  # vouched for by root
    before = m.snapshot()
    with pytest.raises(exc):
        m.add_key(".blacklist", make())
    assert m.snapshot() == before


def test_other_key_types_are_eopnotsupp_and_other_users_eacces() -> None:
    m = machine(True)
    assert isinstance(refused(m, pki()["leaf"].as_key(), "EOPNOTSUPP"), KeyRejectedError)
    bl = m.keyrings.blacklist
    with pytest.raises(PermissionDeniedError, match="EACCES"):  # root owns it, others: 0
        bl.add_key(signed(BIN), builtin=m.keyrings.builtin, uid=1000)
    with pytest.raises(UsageError, match=r"modelled in \.blacklist only"):
        m.add_key(".secondary_trusted_keys", signed(BIN))


def test_a_tbs_hash_refuses_certificates_parsed_from_then_on() -> None:
    """x509_get_sig_params marks a certificate blacklisted when it is parsed: a key
    already in a keyring is not parsed again (the built-in root still vouches), but a
    PKCS#7 carrying the certificate, and the certificate as a new key, are refused."""
    m = machine(True)
    root = pki()["root"].as_key()
    m.add_key(".blacklist", signed("tbs:" + root.tbs_hash().hex()))  # type: ignore[union-attr]
    m.add_key(".blacklist", signed(BIN))
    with pytest.raises(RevokedError):
        m.add_key(".blacklist", signed("bin:" + "cd" * 32, include_certificate=True))
    with pytest.raises(RevokedError):
        m.add_key("_ima", pki()["root"].as_key())


# -- what an added hash then blocks --------------------------------------------------
KEXEC_POLICY = ("measure func=KEXEC_KERNEL_CHECK\nappraise func=KEXEC_KERNEL_CHECK "
                "appraise_type=imasig|modsig appraise_flag=check_blacklist\n"
                "measure func=MODULE_CHECK\nappraise func=MODULE_CHECK "
                "appraise_type=imasig|modsig appraise_flag=check_blacklist\n")


def test_an_added_bin_hash_blocks_what_ima_check_blacklist_checks() -> None:
    m = machine(True, cmdline="ima_policy=tcb ima_appraise=enforce", module_sig=False,
                ima_appraise_modsig=True)
    m.load_policy(KEXEC_POLICY)
    leaf = pki()["leaf"]
    m.add_key("_ima", leaf.as_key())  # Debian's 6.12 has no .ima: user space makes _ima
    image, module = b"a kernel image", b"\x7fELF a module"
    for path, body in (("/boot/vmlinuz", image), ("/lib/modules/m.ko", module)):
        m.add_file(path, sign_module(body, key=leaf.key, certificate=leaf.cert))
    assert m.kexec_load("/boot/vmlinuz").allowed and m.load_module("/lib/modules/m.ko").allowed
    for body in (image, module):  # ima_get_modsig_digest: the content without the signature
        m.add_key(".blacklist", signed("bin:" + H.SHA256.hash(body).hex()))
    for r in (m.kexec_load("/boot/vmlinuz"), m.load_module("/lib/modules/m.ko")):
        assert not r.allowed and r.reason == "blacklisted-hash"
    names = [e.event_name for e in m.measurements]
    assert names.count("blacklisted-hash") == 2


def test_an_added_tbs_hash_refuses_the_key_from_then_on_only() -> None:
    m = machine(True, module_sig_force=True)
    leaf = pki()["leaf"]
    m.add_file("/lib/modules/m.ko", sign_module(b"\x7fELF m", key=leaf.key,
                                                certificate=leaf.cert))
    m.add_key(".secondary_trusted_keys", leaf.as_key())
    m.add_key(".blacklist", signed("tbs:" + leaf.as_key().tbs_hash().hex()))  # type: ignore[union-attr]
    # sign-file's signature carries no certificate: the key already loaded still verifies
    assert m.load_module("/lib/modules/m.ko").allowed
    m.power_cycle()  # the next boot: user space loads the key again, and now it is refused
    m.boot()
    m.add_key(".blacklist", signed("tbs:" + leaf.as_key().tbs_hash().hex()))  # type: ignore[union-attr]
    with pytest.raises(RevokedError):
        m.add_key(".secondary_trusted_keys", leaf.as_key())
    assert not m.load_module("/lib/modules/m.ko").allowed


def test_kexec_sig_pe_verification_does_not_consult_bin_hashes() -> None:
    """verify_pefile_signature (mainline) never calls is_binary_blacklisted: a bin: hash of
    the file or of its Authenticode image hash leaves a KEXEC_SIG-verified image loading."""
    m = machine(True, kexec_sig_force=True)
    leaf = pki()["leaf"]
    m.add_key(".secondary_trusted_keys", leaf.as_key())
    pe = sign_pe(build_pe(b"kernel"), key=leaf.key, certificate=leaf.cert)
    m.add_file("/boot/vmlinuz", pe)
    from imasim.sig.authenticode import blacklist_hash

    m.add_key(".blacklist", signed("bin:" + H.SHA256.hash(pe).hex()))
    m.add_key(".blacklist", signed(blacklist_hash(pe)))
    assert m.kexec_load("/boot/vmlinuz").allowed


def test_a_new_kernel_forgets_what_user_space_added() -> None:
    m = machine(True)
    m.add_file("/boot/vmlinuz", b"next")
    m.add_key(".blacklist", signed(BIN))
    assert m.kexec_load("/boot/vmlinuz").allowed
    m.kexec_execute()
    assert m.keyrings.blacklist.entries() == []
    m.add_key(".blacklist", signed(BIN))
    m.power_cycle()
    assert m.keyrings.blacklist.entries() == []


def test_blacklist_objects_outside_a_machine() -> None:
    bl = Blacklist(auth_update=True)  # the default permissions have no KEY_USR_WRITE
    with pytest.raises(PermissionDeniedError):
        bl.add_key(signed(BIN), builtin=None)
    with pytest.raises(PolicyError):
        Blacklist().add_entry("bin:Ab")


def test_the_blocklist_pair_measures_the_modsig_digest() -> None:
    """kexec-blocklist-ima-power: the ima-buf entry IMA writes holds the digest it found
    on the blacklist, the SHA-256 of the image without its appended signature."""
    from pathlib import Path

    from imasim.scenario import parse_scenario, run_scenario

    doc = Path(__file__).parent.parent.parent / "docs" / "scenarios"
    run = run_scenario(parse_scenario((doc / "kexec-blocklist-ima-power.toml").read_text()))
    assert run.ok
    hit = [e for e in run.machine.measurements if e.event_name == "blacklisted-hash"]
    assert [e.fields["buf"] for e in hit] == \
        [H.SHA256.hash(b"a kernel with a known hole")]
    other = run_scenario(parse_scenario((doc / "kexec-blocklist-kexec-sig.toml").read_text()))
    assert other.ok and "bin:" + H.SHA256.hash(b"a kernel with a known hole").hex() in \
        other.machine.keyrings.blacklist.added_by_user()
