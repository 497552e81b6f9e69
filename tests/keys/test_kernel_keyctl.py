"""Differential tests against the running kernel's own keyrings (keyctl, add_key(2)).

The kernel this runs on parses each certificate with its x509_cert_parser and names it in
/proc/keys; imasim must name it the same, refuse what it refuses, admit into restricted
keyrings (KEYCTL_RESTRICT_KEYRING) what it admits, and find by ``id:``/``ex:`` what it
finds. The test process joins a new anonymous session keyring (KEYCTL_JOIN_SESSION_KEYRING)
so that the keyrings it makes are its own. The certificates are RSA: a kernel without
CONFIG_CRYPTO_ECDSA (like the one CI runs on) refuses ECDSA certificates (the self-signature
check fails with ENOENT); the ECDSA ones are compared only where the kernel takes them.
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import os
import platform
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from imasim.errors import (
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    PolicyError,
    UnsupportedAlgorithmError,
    UsageError,
)
from imasim.keys import Key, Keyring
from pki import Signer, make_cert
from tools import need

pytestmark = pytest.mark.interop
VECTORS = Path(__file__).parent.parent / "vectors"
T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def keyctl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([need("keyctl"), *args], input=data, capture_output=True,
                          timeout=30, check=False)


_KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219}


@functools.cache
def _join_new_session() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session for this process
    (and so for the keyctl commands it runs)."""
    nr = _KEYCTL_SYSCALL.get(platform.machine())
    if nr is None:
        pytest.skip(f"no keyctl syscall number for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, 1, None) < 0:
        pytest.fail(f"KEYCTL_JOIN_SESSION_KEYRING: {os.strerror(ctypes.get_errno())}")


@functools.cache
def rsa_pki() -> dict[str, Signer]:
    """root CA -> intermediate CA -> chained; root -> leaf; a self-signed stranger (RSA)."""
    key = functools.partial(rsa.generate_private_key, 65537, 2048)
    root = make_cert("kc root CA", key(), ca=True)
    inter = make_cert("kc intermediate CA", key(), issuer=root, ca=True)
    return {"root": root, "inter": inter,
            "leaf": make_cert("kc leaf", key(), issuer=root),
            "chained": make_cert("kc chained", key(), issuer=inter),
            "stranger": make_cert("kc stranger", key())}


@pytest.fixture
def ring() -> Iterator[str]:
    need("keyctl")
    _join_new_session()
    serial = newring("t")
    probe = keyctl("padd", "asymmetric", "", serial, data=rsa_pki()["root"].der)
    if probe.returncode != 0:
        pytest.fail(f"the running kernel refuses an RSA certificate: {probe.stderr!r}")
    keyctl("clear", serial)
    try:
        yield serial
    finally:
        keyctl("unlink", serial, "@s")


def newring(name: str) -> str:
    r = keyctl("newring", f"imasim-{name}-{uuid.uuid4().hex[:8]}", "@s")
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip()


def padd(serial: str, der: bytes) -> str | None:
    """The new key's serial, or None when the kernel refuses it."""
    r = keyctl("padd", "asymmetric", "", serial, data=der)
    return r.stdout.decode().strip() if r.returncode == 0 else None


def proc_keys_description(key_serial: str) -> str:
    wanted = f"{int(key_serial):08x} "
    for line in Path("/proc/keys").read_text().splitlines():
        if line.startswith(wanted):
            return line.split(" asymmetri ", 1)[1]
    raise AssertionError(f"key {key_serial} not in /proc/keys")


def cert(subject: list[tuple[x509.ObjectIdentifier, str, _ASN1Type | None]], *,
         skid: bool = True) -> bytes:
    name = x509.Name([x509.NameAttribute(o, v, _type=t) if t else x509.NameAttribute(o, v)
                      for o, v, t in subject])
    key = rsa_pki()["stranger"].key
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(0x00FF1234).not_valid_before(T0)
         .not_valid_after(T0 + datetime.timedelta(days=1)))
    if skid:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


CN, ORG, EMAIL = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.EMAIL_ADDRESS


def certificates() -> dict[str, bytes]:
    ca = Key.from_certificate((VECTORS / "debian" / "debian-secure-boot-ca.pem").read_bytes())
    assert ca.der is not None
    out = {name: s.der for name, s in rsa_pki().items()}
    out |= {
        "debian-build-6.1": (VECTORS / "debian" / "debian-6.1.0-56-build-key.der").read_bytes(),
        "debian-sb-ca": ca.der,
        "cn-prefixed-by-o": cert([(ORG, "Acme", None), (CN, "Acme signing", None)]),
        "o-and-cn": cert([(ORG, "Acme Corp", None), (CN, "signer", None)]),
        "seven-bytes": cert([(ORG, "Abcdefgh Ltd", None), (CN, "Abcdefg signer", None)]),
        "six-bytes": cert([(ORG, "Abcdef-Ltd", None), (CN, "Abcdef signer", None)]),
        "only-o": cert([(ORG, "Only Org", None)]),
        "email": cert([(EMAIL, "root@example.org", None)]),
        "two-cns": cert([(CN, "first", None), (CN, "second", None)]),
        "bmp-cn": cert([(CN, "AB", _ASN1Type.BMPString)]),
        "utf8": cert([(CN, "Grüße", None)]),
        "no-skid": cert([(CN, "no skid", None)], skid=False),
        "rsa-no-name": cert([(NameOID.COUNTRY_NAME, "DE", None)]),
    }
    return out


def test_descriptions_equal_the_running_kernel(ring: str) -> None:
    for name, der in certificates().items():
        serial = padd(ring, der)
        assert serial is not None, name
        assert proc_keys_description(serial) == Key.from_certificate(der).describe(), name
    # ECDSA (Debian 6.12's build key, P-384): only where the kernel has ECDSA
    p384 = (VECTORS / "debian" / "debian-6.12.117-build-key.der").read_bytes()
    serial = padd(ring, p384)
    if serial is not None:
        assert proc_keys_description(serial) == Key.from_certificate(p384).describe()


def test_bad_certificates_are_refused_by_both(ring: str) -> None:
    good = rsa_pki()["leaf"].der
    ed = x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(CN, "ed")]))
    edk = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
    ed_der = (ed.issuer_name(x509.Name([x509.NameAttribute(CN, "ed")]))
              .public_key(edk.public_key()).serial_number(1).not_valid_before(T0)
              .not_valid_after(T0 + datetime.timedelta(days=1)).sign(edk, None)
              .public_bytes(serialization.Encoding.DER))
    bad = [good[:n] for n in (1, 4, 50, len(good) // 2, len(good) - 1)]
    bad += [b"\x31" + good[1:], good[:4] + b"\x31" + good[5:], ed_der]
    for der in bad:
        assert padd(ring, der) is None
        with pytest.raises((ParseError, UnsupportedAlgorithmError)):
            Key.from_certificate(der)
    assert keyctl("rlist", ring).stdout.strip() in (b"", b"keyring is empty")


def decide(ring: Keyring, der: bytes) -> bool:
    try:
        ring.add(Key.from_certificate(der))
    except KeyRejectedError:
        return False
    return True


@pytest.mark.parametrize("chain", [False, True])
def test_key_or_keyring_restriction_agrees_with_the_kernel(ring: str, chain: bool) -> None:
    anchor = ring
    pki = rsa_pki()
    assert padd(anchor, pki["root"].der)
    dest = newring("dest")
    try:
        spec = f"key_or_keyring:{anchor}" + (":chain" if chain else "")
        r = keyctl("restrict_keyring", dest, "asymmetric", spec)
        assert r.returncode == 0, r.stderr
        again = keyctl("restrict_keyring", dest, "asymmetric", spec)
        assert again.returncode != 0  # EEXIST
        sim_anchor = Keyring("anchor")
        sim_anchor.add(pki["root"].as_key())
        sim = Keyring("dest")
        sim.restrict(f"asymmetric:key_or_keyring:{anchor}" + (":chain" if chain else ""),
                     resolve={f"{int(anchor):08x}": sim_anchor}.__getitem__)
        no_akid_by_root = _no_akid_cert()
        offered = [pki["leaf"].der, pki["stranger"].der, pki["chained"].der,
                   pki["inter"].der, pki["chained"].der, no_akid_by_root, pki["root"].der]
        kernel = [padd(dest, der) is not None for der in offered]
        imasim = [decide(sim, der) for der in offered]
        assert imasim == kernel
        assert kernel[:4] == [True, False, False, True]
        assert kernel[4] is chain  # the chain is walked only with :chain
    finally:
        keyctl("unlink", dest, "@s")


def _no_akid_cert() -> bytes:
    """Signed by the pki root, without an AKID: found by its issuer name (5.19+)."""
    root = rsa_pki()["root"]
    key = rsa_pki()["leaf"].key
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(CN, "na")]))
            .issuer_name(root.cert.subject).public_key(key.public_key()).serial_number(5)
            .not_valid_before(T0).not_valid_after(T0 + datetime.timedelta(days=1))
            .sign(root.key, hashes.SHA256())  # type: ignore[arg-type]
            .public_bytes(serialization.Encoding.DER))


def test_restrict_without_type_rejects_like_the_kernel(ring: str) -> None:
    assert keyctl("restrict_keyring", ring).returncode == 0
    assert padd(ring, rsa_pki()["root"].der) is None
    sim = Keyring("r")
    sim.restrict()
    assert decide(sim, rsa_pki()["root"].der) is False


def test_search_by_id_agrees_with_the_kernel(ring: str) -> None:
    sim = Keyring("r")
    for name in ("leaf", "stranger", "root"):
        assert padd(ring, rsa_pki()[name].der)
        sim.add(rsa_pki()[name].as_key())
    leaf = rsa_pki()["leaf"].as_key()
    specs = [f"id:{leaf.ids[0][-4:].hex()}", f"ex:{leaf.ids[0].hex()}",
             f"id:{leaf.ids[1][-4:].hex()}", f"ex:{leaf.ids[1].hex()}",
             f"id:{leaf.ids[2][-6:].hex()}", f"ex:{leaf.ids[2].hex()}",
             f"ex:{leaf.ids[0][:-1].hex()}", f"id:{leaf.ids[1][:4].hex()}",
             f"id:{leaf.ids[1][-4:].hex().upper()}", leaf.description, "id:abc",
             f"dn:{leaf.ids[2].hex()}", f"dn:{leaf.ids[2][1:].hex()}",
             f"dn:{leaf.issuer_raw.hex()}", f"id:{leaf.ids[2].hex()}"]
    for spec in specs:
        r = keyctl("search", ring, "asymmetric", spec)
        kernel = r.stdout.decode().strip() if r.returncode == 0 else None
        try:
            found: Key | None = sim.search(spec)
        except (KeyNotFoundError, UsageError):
            found = None
        if kernel is None:
            assert found is None, spec
        else:
            assert found is not None, spec
            assert proc_keys_description(kernel) == found.describe(), spec


def test_restriction_syntax_agrees_with_the_kernel(ring: str) -> None:
    anchor = ring
    hex_anchor = f"{int(anchor):08x}"
    specs = ["builtin_trusted", "builtin_and_secondary_trusted", f"key_or_keyring:{anchor}",
             f"key_or_keyring:0x{hex_anchor}", f"key_or_keyring:{anchor}:chain",
             "key_or_keyring:0:chain", "key_or_keyring:0", "key_or_keyring:abc",
             "key_or_keyring:", "key_or_keyring", "nope", f"key_or_keyring:{anchor}:chian",
             "key_or_keyring:99999999999", "builtin_trusted:x", "SELF", "SELF:chain"]
    system = {".builtin_trusted_keys": Keyring("b"), ".secondary_trusted_keys": Keyring("s")}
    for spec in specs:
        dest = newring("syntax")
        try:
            text = spec.replace("SELF", f"key_or_keyring:{dest}")
            kernel = keyctl("restrict_keyring", dest, "asymmetric", text).returncode == 0
            sim = Keyring("sim")
            rings: dict[str, Keyring] = {hex_anchor: Keyring("anchor"),
                                         f"{int(dest):08x}": sim, **system}
            try:
                sim.restrict("asymmetric:" + text, resolve=rings.__getitem__)
                ours = True
            except (PolicyError, KeyNotFoundError, UsageError):
                ours = False
            assert ours == kernel, (spec, kernel)
        finally:
            keyctl("unlink", dest, "@s")


def test_link_cycles_are_refused_like_the_kernel(ring: str) -> None:
    other = newring("cycle")
    try:
        assert keyctl("link", ring, ring).returncode != 0
        assert keyctl("link", other, ring).returncode == 0  # other inside ring
        assert keyctl("link", ring, other).returncode != 0  # ring inside other: a cycle
        a, b = Keyring("ring"), Keyring("other")
        with pytest.raises(UsageError):
            a.link(a)
        a.link(b)
        with pytest.raises(UsageError):
            b.link(a)
    finally:
        keyctl("unlink", other, "@s")


def test_key_or_keyring_with_a_key_agrees_with_the_kernel(ring: str) -> None:
    pki = rsa_pki()
    root_serial = padd(ring, pki["root"].der)
    inter_serial = padd(ring, pki["inter"].der)
    assert root_serial and inter_serial
    for signer_serial, signer in ((root_serial, "root"), (inter_serial, "inter")):
        dest = newring("bykey")
        try:
            assert keyctl("restrict_keyring", dest, "asymmetric",
                          f"key_or_keyring:{signer_serial}").returncode == 0
            sim = Keyring("dest")
            sim.restrict(f"asymmetric:key_or_keyring:{signer_serial}",
                         resolve={f"{int(signer_serial):08x}": pki[signer].as_key()}.__getitem__)
            offered = [pki[n].der for n in ("leaf", "chained", "stranger", "inter", "root")]
            offered.append(_no_akid_cert())
            kernel = [padd(dest, der) is not None for der in offered]
            assert [decide(sim, der) for der in offered] == kernel, signer
            assert kernel[0] is (signer == "root") and kernel[1] is (signer == "inter")
        finally:
            keyctl("unlink", dest, "@s")
