"""Restrictions admit exactly what the kernel admits; real certificates load as the kernel shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from imasim.errors import KeyNotFoundError, KeyRejectedError, ParseError, RevokedError, UsageError
from imasim.keys import (
    Blacklist,
    EventLog,
    Key,
    Keyring,
    restrict_link_by_builtin_and_secondary_trusted,
    restrict_link_by_builtin_trusted,
    restrict_link_by_ca,
    restrict_link_by_key_or_keyring,
    restrict_link_by_key_or_keyring_chain,
    restrict_link_reject,
)
from pki import pki

VECTORS = Path(__file__).parent.parent / "vectors"


def system() -> tuple[Keyring, Keyring, EventLog]:
    log = EventLog()
    builtin = Keyring(".builtin_trusted_keys", log=log)
    builtin.add(pki()["root"].as_key())
    builtin.restrict(restrict_link_reject)
    secondary = Keyring(".secondary_trusted_keys", log=log,
                        restriction=restrict_link_by_builtin_and_secondary_trusted,
                        restriction_key=builtin)
    secondary.link(builtin)
    return builtin, secondary, log


def test_secondary_admits_ca_signed_and_rejects_self_signed() -> None:
    builtin, secondary, log = system()
    secondary.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError):
        secondary.add(pki()["stranger"].as_key())
    assert [k.description for k in secondary.keys] == [pki()["leaf"].as_key().description]
    assert [e.admitted for e in log.events][-2:] == [True, False]
    with pytest.raises(KeyRejectedError):
        builtin.add(pki()["leaf"].as_key())


def test_chain_is_walked_only_with_chain() -> None:
    root = Keyring("anchor")
    root.add(pki()["root"].as_key())
    plain = Keyring("plain", restriction=restrict_link_by_key_or_keyring, restriction_key=root)
    plain.add(pki()["inter"].as_key())
    with pytest.raises(KeyRejectedError):
        plain.add(pki()["chained"].as_key())  # signed by inter, which is not the anchor
    chain = Keyring("chain", restriction=restrict_link_by_key_or_keyring_chain,
                    restriction_key=root)
    chain.add(pki()["inter"].as_key())
    chain.add(pki()["chained"].as_key())  # inter is in the keyring itself now


def test_restrict_link_by_ca() -> None:
    machine = Keyring(".machine", restriction=restrict_link_by_ca)
    machine.add(pki()["root"].as_key())
    with pytest.raises(KeyRejectedError):
        machine.add(pki()["leaf"].as_key())  # no CA bit


def test_restriction_is_set_once() -> None:
    builtin, _, _ = system()
    ring = Keyring("r")
    ring.restrict(restrict_link_by_builtin_trusted, builtin)
    for again in (restrict_link_reject, None, "asymmetric:builtin_trusted"):
        with pytest.raises(UsageError, match="EEXIST"):
            ring.restrict(again, resolve={".builtin_trusted_keys": builtin}.__getitem__)
    ring.add(pki()["leaf"].as_key())  # still the first restriction, not lifted
    with pytest.raises(KeyRejectedError):
        ring.add(pki()["stranger"].as_key())
    with pytest.raises(UsageError, match="EEXIST"):
        builtin.restrict(None)  # made with restrict_link_reject: cannot be lifted either


def test_restrict_without_type_rejects_everything() -> None:
    ring = Keyring("r")
    ring.restrict()  # keyctl restrict_keyring <id>: restrict_link_reject
    with pytest.raises(KeyRejectedError, match="EPERM"):
        ring.add(pki()["root"].as_key())


def test_restriction_cycle_is_refused() -> None:
    a, b = Keyring("a"), Keyring("b", restriction=restrict_link_by_key_or_keyring)
    with pytest.raises(UsageError, match="EDEADLK"):
        a.restrict(restrict_link_by_key_or_keyring, a)
    b2 = Keyring("b2", restriction=restrict_link_by_key_or_keyring, restriction_key=a)
    with pytest.raises(UsageError, match="EDEADLK"):
        a.restrict(restrict_link_by_key_or_keyring, b2)  # a -> b2 -> a
    a.restrict(restrict_link_by_key_or_keyring, b)  # no cycle


def test_blacklisted_tbs_hash_is_refused() -> None:
    bl = Blacklist()
    builtin, _, _ = system()
    leaf = pki()["leaf"].as_key()
    tbs = leaf.tbs_hash()
    assert tbs is not None
    bl.add_tbs_hash(tbs)
    secondary = Keyring(".secondary_trusted_keys", blacklist=bl,
                        restriction=restrict_link_by_builtin_and_secondary_trusted,
                        restriction_key=builtin)
    with pytest.raises(RevokedError):
        secondary.add(leaf)
    assert secondary.keys == ()
    assert "blacklisted" in secondary.log.events[-1].reason
    # the same keyring without the blacklist admits it: the refusal is the tbs: entry's
    Keyring(".secondary_trusted_keys", restriction=restrict_link_by_builtin_and_secondary_trusted,
            restriction_key=builtin).add(leaf)


def test_custom_gatekeeper_callable() -> None:
    def only_ec(dest: Keyring, key: Key, _rk: object) -> None:
        if "rsa" in key.description:
            raise KeyRejectedError("EC keys only")

    ring = Keyring("custom", restriction=only_ec)
    ring.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError):
        ring.add(pki()["rsa_leaf"].as_key())


def test_search_by_id() -> None:
    _, secondary, _ = system()
    leaf = secondary.add(pki()["leaf"].as_key())
    assert leaf.skid is not None
    assert secondary.search(f"id:{leaf.skid[-4:].hex()}") == leaf
    assert secondary.search(f"ex:{leaf.skid.hex()}") == leaf
    root = pki()["root"].as_key()
    assert secondary.search(root.description) == root  # through the link to builtin
    with pytest.raises(KeyNotFoundError):
        secondary.search("id:deadbeef")


def test_debian_certificates_match_proc_keys() -> None:
    ca = Key.from_certificate((VECTORS / "debian" / "debian-secure-boot-ca.pem").read_bytes())
    assert ca.description == "Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1"
    assert ca.is_ca and ca.self_signed


def test_real_kernel_certificates_match_proc_keys() -> None:
    """The certificates a real 6.1 kernel measured (KEY_CHECK ima-buf entries) load as keys
    whose descriptions are the ones /proc/keys showed in the same boot."""
    from realdata import stage

    st = stage("template-mix-sha512")
    proc_keys = (st.path / "keyrings.txt").read_text()
    shown = {line.split(" asymmetri ", 1)[1].split(": X509.", 1)[0]
             for line in proc_keys.splitlines() if " asymmetri " in line}
    certs = {e.event_name: e.fields["buf"] for e in st.entries() if e.template_name == "ima-buf"
             and e.event_name in (".builtin_trusted_keys", "_ima")}
    keys = [Key.from_certificate(der) for der in certs.values()]  # type: ignore[arg-type]
    assert {k.description for k in keys} == shown
    # /proc/keys also shows "X509.rsa <last 4 bytes of the SKID>": the id IMA's keyid uses
    for k in keys:
        assert f"X509.rsa {k.key_id_v2.hex()} " in proc_keys
    assert "Build time autogenerated kernel key: 8963f707e289edc09df337a240938134371a5bb8" in shown


@pytest.mark.parametrize("data", [b"", b"\x30\x03\x02\x01", b"-----BEGIN CERTIFICATE-----\nxx",
                                  b"\x31\x00"])
def test_bad_certificates(data: bytes) -> None:
    ring = Keyring("r")
    with pytest.raises(ParseError):
        ring.add(Key.from_certificate(data))
    assert ring.keys == ()


def test_restriction_text_syntax() -> None:
    builtin, secondary, _ = system()
    anchor = Keyring("anchor")
    anchor.add(pki()["root"].as_key())
    rings = {".builtin_trusted_keys": builtin, ".secondary_trusted_keys": secondary,
             "2ad0d11e": anchor}
    ring = Keyring("user")
    # the serial as kstrtos32(s, 0) reads it: 0x hex or decimal, as keyctl passes it
    ring.restrict("asymmetric:key_or_keyring:0x2ad0d11e", resolve=rings.__getitem__)
    ring.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError):
        ring.add(pki()["stranger"].as_key())
    with pytest.raises(KeyRejectedError):
        ring.add(pki()["chained"].as_key())  # no :chain
    chained = Keyring("chained")
    chained.restrict(f"asymmetric:key_or_keyring:{0x2ad0d11e}:chain", resolve=rings.__getitem__)
    chained.add(pki()["inter"].as_key())
    chained.add(pki()["chained"].as_key())
    other = Keyring("b")
    other.restrict("asymmetric:builtin_trusted", resolve=rings.__getitem__)
    other.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError):
        other.add(pki()["chained"].as_key())  # its issuer is only in the secondary keyring
    # builtin_and_secondary_trusted searches .secondary_trusted_keys (which links builtin)
    secondary.add(pki()["inter"].as_key())
    both = Keyring("both")
    both.restrict("asymmetric:builtin_and_secondary_trusted", resolve=rings.__getitem__)
    both.add(pki()["chained"].as_key())
    both.add(pki()["leaf"].as_key())
    # key_or_keyring:0:chain: no key, only the keyring's own keys vouch
    own = Keyring("own")
    own.restrict("asymmetric:key_or_keyring:0:chain")
    with pytest.raises(KeyRejectedError):
        own.add(pki()["leaf"].as_key())
    from imasim.errors import PolicyError

    for bad in ("asymmetric:nope", "keyring:x", "asymmetric:key_or_keyring:1:chian",
                "asymmetric:key_or_keyring:2ad0d11e", "asymmetric:key_or_keyring:",
                "asymmetric:key_or_keyring", "asymmetric:key_or_keyring:0",
                "asymmetric:builtin_trusted:x", "asymmetric:key_or_keyring:99999999999"):
        x = Keyring("x")
        with pytest.raises(PolicyError if bad != "asymmetric:key_or_keyring:0"
                           else KeyNotFoundError):
            x.restrict(bad, resolve=rings.__getitem__)
        x.restrict(restrict_link_reject)  # the failed attempt left it unrestricted
    with pytest.raises(KeyNotFoundError, match="ENOKEY"):
        Keyring("x").restrict("asymmetric:key_or_keyring:12", resolve=rings.__getitem__)


def test_restrict_link_by_digsig_refuses_cas() -> None:
    from imasim.keys import restrict_link_by_digsig

    builtin, _, _ = system()
    ima = Keyring(".ima", restriction=restrict_link_by_digsig, restriction_key=builtin)
    ima.add(pki()["leaf"].as_key())  # digitalSignature, not a CA, signed by the builtin root
    with pytest.raises(KeyRejectedError):
        ima.add(pki()["inter"].as_key())  # a CA
