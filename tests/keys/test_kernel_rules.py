"""The kernel's rules, one by one: names, ids, self-signedness, each restriction's checks,
keyring links, the blacklist in use, bad certificates."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519
from cryptography.x509.oid import NameOID

from imasim.errors import (
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    RevokedError,
    UnsupportedAlgorithmError,
    UsageError,
)
from imasim.keys import (
    Blacklist,
    Key,
    Keyring,
    restrict_link_by_builtin_and_secondary_trusted,
    restrict_link_by_ca,
    restrict_link_by_ca_max,
    restrict_link_by_digsig,
    restrict_link_by_key_or_keyring,
    restrict_link_by_signature,
    restrict_link_reject,
)
from imasim.keys.generate import derive_ec_key, make_certificate
from pki import ec_key, make_cert, pki

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def build(subject: list[tuple[x509.ObjectIdentifier, str]], *, key: object = None,
          signer: object = None, issuer: x509.Name | None = None, akid: object = None,
          skid: bool = True, usage: x509.KeyUsage | None = None, ca: bool | None = None,
          alg: hashes.HashAlgorithm | None = None) -> x509.Certificate:
    """A certificate with exactly the given subject attributes and extensions."""
    key = key if key is not None else ec_key("x")
    name = x509.Name([x509.NameAttribute(o, v) for o, v in subject])
    pub = key.public_key()  # type: ignore[attr-defined]
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
         .public_key(pub).serial_number(0x1234).not_valid_before(T0)
         .not_valid_after(T0 + datetime.timedelta(days=1)))
    if skid:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), False)
    if akid is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            akid.public_key()), False)  # type: ignore[attr-defined]
    if usage is not None:
        b = b.add_extension(usage, True)
    if ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    sk = signer if signer is not None else key
    return b.sign(sk, None if isinstance(sk, ed25519.Ed25519PrivateKey)  # type: ignore[arg-type]
                  else (alg or hashes.SHA256()))


def usage(*, ds: bool = False, cs: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=ds, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cs, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def key_of(cert: x509.Certificate) -> Key:
    return Key.from_certificate(cert.public_bytes(serialization.Encoding.DER))


CN, ORG, EMAIL = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.EMAIL_ADDRESS


@pytest.mark.parametrize(("subject", "name"), [
    ([(ORG, "Debian"), (CN, "Debian Secure Boot CA")], "Debian Secure Boot CA"),  # CN starts with O
    ([(ORG, "Red Hat, Inc."), (CN, "Red Hat Secure Boot CA 5")], "Red Hat Secure Boot CA 5"),
    ([(ORG, "imasim tests"), (CN, "leaf")], "imasim tests: leaf"),
    ([(ORG, "Abcdefgh Ltd"), (CN, "Abcdefg signer")], "Abcdefg signer"),  # 7 bytes in common
    ([(ORG, "Abcdef-Ltd"), (CN, "Abcdef signer")], "Abcdef-Ltd: Abcdef signer"),  # only 6
    ([(ORG, "Only Org")], "Only Org"),
    ([(EMAIL, "root@example.org")], "root@example.org"),
    ([(CN, "first"), (CN, "second")], "second"),  # x509_extract_name_segment: the last wins
    ([(NameOID.COUNTRY_NAME, "DE")], ""),
])
def test_description_as_x509_fabricate_name(subject: list[tuple[x509.ObjectIdentifier, str]],
                                            name: str) -> None:
    k = key_of(build(subject))
    assert k.description == f"{name}: {k.skid.hex()}"  # type: ignore[union-attr]


def test_description_without_skid_uses_the_serial() -> None:
    k = key_of(build([(CN, "no skid")], skid=False))
    assert k.description == "no skid: 1234" and k.ids[1] == b""
    assert k.describe() == "no skid: 1234: X509.ecdsa-nist-p256 []"


def test_ids_and_matching() -> None:
    leaf = pki()["leaf"].as_key()
    cert = pki()["leaf"].cert
    serial = cert.serial_number.to_bytes(8, "big")
    assert leaf.ids[0].startswith(serial) and leaf.ids[0][8:] == leaf.issuer_raw
    assert leaf.ids[1] == leaf.skid and leaf.ids[2] == pki()["leaf"].as_key().ids[2]
    ring = Keyring("r")
    ring.add(leaf)
    assert ring.search("ex:" + leaf.ids[0].hex()) == leaf  # id[0] exactly
    assert ring.search("id:" + leaf.ids[0][-3:].hex()) == leaf  # partial: the tail
    assert ring.search("dn:" + leaf.ids[2].hex()) == leaf  # id[2] (subject): dn:, exactly
    for miss in ("ex:" + leaf.ids[0][1:].hex(), "id:" + leaf.ids[0][:4].hex(),
                 leaf.description + " ", "ex:" + leaf.ids[2].hex(), "id:" + leaf.ids[2].hex(),
                 "dn:" + leaf.ids[2][1:].hex()):
        with pytest.raises(KeyNotFoundError):
            ring.search(miss)
    for bad in ("id:zz", "id:abc", "id:ab cd", "ex:"):  # asymmetric_key_hex_to_key_id: EINVAL
        with pytest.raises(UsageError):
            ring.search(bad)


def test_self_signed_needs_the_signature_to_verify() -> None:
    other = ec_key("other")
    # issuer == subject but signed by another key: not self-signed (x509_check_for_self_signed)
    forged = key_of(build([(CN, "looks self-signed")], signer=other))
    assert not forged.self_signed
    assert key_of(build([(CN, "really")])).self_signed
    # AKID naming another key: not self-signed either
    assert not key_of(build([(CN, "akid")], akid=other)).self_signed


def system() -> tuple[Keyring, Keyring]:
    builtin = Keyring(".builtin_trusted_keys")
    builtin.add(pki()["root"].as_key())
    builtin.restrict(restrict_link_reject)
    secondary = Keyring(".secondary_trusted_keys",
                        restriction=restrict_link_by_builtin_and_secondary_trusted,
                        restriction_key=builtin)
    secondary.link(builtin)
    return builtin, secondary


def test_link_passes_the_restriction_as_a_keyring() -> None:
    builtin, secondary = system()
    other = Keyring("other")
    other.add(pki()["leaf"].as_key())  # its only key is signed by the builtin root
    with pytest.raises(KeyRejectedError, match="EOPNOTSUPP"):
        secondary.link(other)  # only the builtin keyring may be linked into the secondary
    assert secondary.links == (builtin,)
    assert not secondary.log.events[-1].admitted and "other" in secondary.log.events[-1].key
    with pytest.raises(KeyRejectedError):
        builtin.link(other)
    Keyring("free").link(other)  # an unrestricted keyring links anything


def test_lookup_without_akid_by_issuer_name() -> None:
    root = pki()["root"]
    # signed by the root, no AKID: found by the issuer name (auth_ids[2], Linux 5.19+)
    k = key_of(build([(CN, "no akid")], key=ec_key("na"), signer=root.key,
                     issuer=root.cert.subject))
    assert k.auth_ids == (None, None)
    _, secondary = system()
    secondary.add(k)
    # same issuer name, signed by a stranger: the key found by the name does not verify
    bad = key_of(build([(CN, "no akid 2")], key=ec_key("nb"), signer=ec_key("evil"),
                       issuer=root.cert.subject))
    with pytest.raises(KeyRejectedError, match="EKEYREJECTED"):
        secondary.add(bad)


def test_signature_restriction_finds_one_key_by_akid() -> None:
    root = pki()["root"]
    # AKID names the intermediate, signature by the root: the kernel looks up the
    # intermediate (by AKID) and its signature check fails, whoever else is in the keyring
    k = key_of(build([(CN, "mislabelled")], key=ec_key("ml"), signer=root.key,
                     issuer=root.cert.subject, akid=pki()["inter"].key))
    trust = Keyring("trust")
    trust.add(pki()["root"].as_key())
    trust.add(pki()["inter"].as_key())
    ring = Keyring("r", restriction=restrict_link_by_signature, restriction_key=trust)
    with pytest.raises(KeyRejectedError):
        ring.add(k)
    ring.add(pki()["leaf"].as_key())


def test_raw_public_key_cannot_enter_a_signature_restricted_keyring() -> None:
    _, secondary = system()
    raw = Key.from_public_key(ec_key("raw").public_key(), description="raw")
    with pytest.raises(KeyRejectedError, match="ENOPKG"):
        secondary.add(raw)
    Keyring("free").add(raw)


def test_key_or_keyring_with_a_key() -> None:
    root_key = pki()["root"].as_key()
    ring = Keyring("r", restriction=restrict_link_by_key_or_keyring, restriction_key=root_key)
    ring.add(pki()["leaf"].as_key())
    for k in ("stranger", "chained"):
        with pytest.raises(KeyRejectedError):
            ring.add(pki()[k].as_key())


def test_restrict_link_by_ca_rules() -> None:
    machine = Keyring(".machine", restriction=restrict_link_by_ca)
    # a CA with keyCertSign, not self-signed: no signature is checked
    machine.add(pki()["inter"].as_key())
    with pytest.raises(KeyRejectedError, match="not a CA"):
        machine.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError, match="keyCertSign"):  # CA bit, no keyUsage
        machine.add(key_of(build([(CN, "ca without usage")], ca=True)))
    with pytest.raises(KeyRejectedError, match="keyCertSign"):
        machine.add(key_of(build([(CN, "ca ds only")], ca=True, usage=usage(ds=True))))
    maxed = Keyring(".machine", restriction=restrict_link_by_ca_max)
    with pytest.raises(KeyRejectedError, match="digitalSignature"):
        maxed.add(pki()["root"].as_key())  # pki CAs carry digitalSignature too
    maxed.add(key_of(build([(CN, "pure ca")], ca=True, usage=usage(cs=True))))
    assert [e.admitted for e in machine.log.events] == [True, False, False, False]


def test_restrict_link_by_digsig_rules() -> None:
    builtin, _ = system()
    ima = Keyring(".ima", restriction=restrict_link_by_digsig, restriction_key=builtin)
    ima.add(pki()["leaf"].as_key())
    root = pki()["root"]
    no_usage = make_certificate("no keyUsage", derive_ec_key("nu"),
                                issuer=(root.cert, root.key))  # type: ignore[arg-type]
    cases = {
        "lacks keyUsage digitalSignature": key_of(no_usage),
        "is a CA": pki()["inter"].as_key(),
        "keyCertSign": key_of(build([(CN, "cs leaf")], key=ec_key("cs"), signer=root.key,
                                    issuer=root.cert.subject, akid=root.key,
                                    usage=usage(ds=True, cs=True))),
    }
    for why, k in cases.items():
        with pytest.raises(KeyRejectedError, match=why):
            ima.add(k)
    ds_stranger = make_cert("ds stranger", ec_key("dss"))
    with pytest.raises(KeyRejectedError, match="ENOKEY"):
        ima.add(ds_stranger.as_key())
    assert ima.keys == (pki()["leaf"].as_key(),)


def test_a_tbs_hash_is_checked_when_a_certificate_is_parsed() -> None:
    """x509_get_sig_params marks a certificate whose TBS hash is blacklisted, and
    x509_key_preparse refuses it (EKEYREJECTED); keyring_search knows no blacklist, so a
    key that entered before its hash was added is still found."""
    bl = Blacklist()
    ring = Keyring("r", blacklist=bl)
    leaf = ring.add(pki()["leaf"].as_key())
    assert ring.search(leaf.description) == leaf
    bl.add_tbs_hash(leaf.tbs_hash())  # type: ignore[arg-type]
    assert ring.search("id:" + leaf.skid.hex()) == leaf  # type: ignore[union-attr]
    outer = Keyring("outer")
    outer.link(ring)
    assert outer.find_asymmetric_key(leaf.ids[0]) == leaf
    with pytest.raises(RevokedError):
        Keyring("again", blacklist=bl).add(leaf)
    # a revocation certificate blocks the same key
    bl2 = Blacklist()
    bl2.add_revocation_certificate(pki()["inter"].as_key())
    with pytest.raises(RevokedError):
        Keyring("r2", blacklist=bl2).add(pki()["inter"].as_key())
    assert bl2.is_binary_blocked(b"\1" * 32) is False
    bl2.add_binary_hash(b"\1" * 32)
    with pytest.raises(RevokedError):
        bl2.check_binary_hash(b"\1" * 32)
    assert bl2.entries() == ["bin:" + "01" * 32]


def test_tbs_hash_uses_the_certificate_signature_hash() -> None:
    cert = build([(CN, "sha384")], alg=hashes.SHA384())
    k = key_of(cert)
    assert k.tbs_hash() == hashlib.sha384(cert.tbs_certificate_bytes).digest()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_bad_certificates_leave_the_keyring_unchanged() -> None:
    ring = Keyring("r")
    ring.add(pki()["root"].as_key())
    before = (ring.keys, len(ring.log.events))
    good = pki()["leaf"].der
    bad: list[tuple[bytes, type[Exception]]] = [
        (good[:n], ParseError) for n in (0, 1, 2, 3, 4, 50, len(good) // 2, len(good) - 1)]
    bad += [
        (b"\x31" + good[1:], ParseError),  # SET instead of the Certificate SEQUENCE
        (good[:4] + b"\x31" + good[5:], ParseError),  # TBSCertificate tag
        (good + b"\x00", ParseError),  # trailing data
        (b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", ParseError),
        (_der(build([(CN, "ed25519")], key=ed25519.Ed25519PrivateKey.from_private_bytes(
            bytes(32)))), UnsupportedAlgorithmError),
        (_der(build([(CN, "dsa")], key=dsa.generate_private_key(1024))),
         UnsupportedAlgorithmError),
    ]
    for data, err in bad:
        with pytest.raises(err):
            ring.add_certificate(data)
    assert ring.keys == before[0]
    events = ring.log.events[before[1]:]
    assert len(events) == len(bad) and not any(e.admitted for e in events)
    assert ring.add_certificate(good) == pki()["leaf"].as_key()


def test_bad_certificate_messages_are_clear() -> None:
    with pytest.raises(ParseError, match=r"not an X\.509 certificate"):
        Key.from_certificate(b"\x30\x03\x02\x01")
    with pytest.raises(UnsupportedAlgorithmError, match=r"(?i)unsupported|ed25519"):
        Key.from_certificate(_der(build([(CN, "e")],
                                        key=ed25519.Ed25519PrivateKey.from_private_bytes(
                                            bytes(32)))))


def test_custom_restriction_sees_keyrings_too() -> None:
    seen: list[str] = []

    def gatekeeper(dest: Keyring, item: Key | Keyring, _rk: object) -> None:
        seen.append(type(item).__name__)
        if isinstance(item, Keyring):
            raise KeyRejectedError("no links")

    ring = Keyring("g", restriction=gatekeeper)
    ring.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError):
        ring.link(Keyring("x"))
    assert seen == ["Key", "Keyring"]


def test_blacklist_entries_as_the_kernel_vets_them() -> None:
    from imasim.errors import PolicyError

    bl = Blacklist()
    leaf = pki()["leaf"].as_key()
    bl.add_entry("tbs:" + leaf.tbs_hash().hex())  # type: ignore[union-attr]
    bl.add_entry("bin:" + "ab" * 32)
    assert bl.is_key_blocked(leaf) and bl.is_binary_blocked(bytes.fromhex("ab" * 32))
    for bad in ("tbs:", "tbs:abc", "tbs:AB", "xyz:00", "tbs00", "bin:" + "00" * 65, "bin:0g"):
        with pytest.raises(PolicyError):
            bl.add_entry(bad)
    assert len(bl.entries()) == 2


def test_unlink_and_clear() -> None:
    ring = Keyring("r")
    leaf = ring.add(pki()["leaf"].as_key())
    other = Keyring("o")
    ring.link(other)
    ring.unlink(leaf)
    with pytest.raises(KeyNotFoundError, match="ENOENT"):
        ring.unlink(leaf)
    ring.unlink(other)
    assert ring.keys == () and ring.links == ()
    ring.add(leaf)
    ring.clear()
    assert ring.keys == ()
    with pytest.raises(UsageError):
        ring.search("")


def test_restrict_decisions_are_recorded() -> None:
    ring = Keyring("r")
    ring.restrict("asymmetric:key_or_keyring:0:chain")
    with pytest.raises(UsageError):
        ring.restrict(None)
    assert [(e.key, e.admitted) for e in ring.log.events] == [
        ("restriction asymmetric:key_or_keyring:0:chain", True), ("restriction", False)]
    assert "EEXIST" in ring.log.events[-1].reason


def test_machine_keyring_is_linked_into_the_secondary() -> None:
    """5.18+ with INTEGRITY_MACHINE_KEYRING (Debian): set_machine_trusted_keys links
    .machine into .secondary_trusted_keys, so a MOK CA vouches for secondary keys; no other
    keyring may be linked there."""
    from imasim.kconfig import PRESETS
    from imasim.machine import SystemKeyrings

    rings = SystemKeyrings.build(PRESETS["debian12-6.1"], [pki()["stranger"].as_key()])
    assert rings.secondary.links == (rings.builtin, rings.machine)
    assert rings.secondary.restriction_name == "restrict_link_by_builtin_secondary_and_machine"
    with pytest.raises(KeyRejectedError):
        rings.secondary.add(pki()["leaf"].as_key())  # its root is nowhere yet
    rings.machine.add(pki()["root"].as_key())  # .machine is unrestricted without CA_MACHINE
    rings.secondary.add(pki()["leaf"].as_key())
    with pytest.raises(KeyRejectedError, match="EOPNOTSUPP"):
        rings.secondary.link(rings.platform)
    no_mok = SystemKeyrings.build(PRESETS["debian12-6.1"].with_(integrity_machine_keyring=False))
    assert no_mok.secondary.links == (no_mok.builtin,)


def test_name_uses_the_raw_value_bytes() -> None:
    """x509_extract_name_segment keeps the value's raw contents: a BMPString CN is UTF-16BE,
    and the kernel's C string ends at its first NUL byte."""
    from cryptography.x509.name import _ASN1Type

    name = x509.Name([x509.NameAttribute(CN, "AB", _type=_ASN1Type.BMPString)])
    key = ec_key("bmp")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(T0)
            .not_valid_after(T0 + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    k = key_of(cert)
    assert k.description == f": {k.skid.hex()}"  # type: ignore[union-attr]
    utf8 = key_of(build([(CN, "Grüße")]))
    assert utf8.description.startswith("Grüße: ")


def test_link_cycles_are_refused() -> None:
    a, b, c = Keyring("a"), Keyring("b"), Keyring("c")
    with pytest.raises(UsageError, match="EDEADLK"):
        a.link(a)
    a.link(b)
    b.link(c)
    with pytest.raises(UsageError, match="EDEADLK"):
        c.link(a)  # c -> a -> b -> c
    assert c.links == () and not c.log.events[-1].admitted
    c.link(Keyring("d"))
