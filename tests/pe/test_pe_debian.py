"""Real data: Debian 12's signed vmlinuz, grub and shim (tests/pe/fetch_debian_images.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imasim.errors import KeyNotFoundError, ParseError
from imasim.keys import Key, Keyring
from imasim.sig.authenticode import (
    DigestRules,
    VerifyRules,
    WrapperRules,
    authenticode_digest,
    parse_authenticode,
    parse_certificate_table,
    verify_authenticode,
)
from imasim.sig.pefile import parse_pe, pe_checksum
from pe.pe_support import DEBIAN_DIR, debian_image, ring, rsa_chain
from tools import need

SIGNED_BY_DEBIAN = ["vmlinuz", "grubx64.efi.signed"]
ALL = [*SIGNED_BY_DEBIAN, "shimx64.efi.signed"]


@pytest.fixture(scope="module")
def debian_ca(vectors: Path) -> Key:
    return Key.from_certificate((vectors / "debian" / "debian-secure-boot-ca.pem").read_bytes())


def _others(vectors: Path) -> list[Keyring]:
    build_key = Key.from_certificate(
        (vectors / "debian" / "debian-6.1.0-56-build-key.der").read_bytes())
    r = Keyring(".builtin_trusted_keys")
    r.add(build_key)
    return [Keyring("empty"), r, ring(rsa_chain()["stranger"]), ring(rsa_chain()["root"])]


@pytest.mark.parametrize("name", SIGNED_BY_DEBIAN)
def test_debian_images_verify_against_the_debian_ca_only(name: str, debian_ca: Key,
                                                         vectors: Path) -> None:
    data = debian_image(name)
    trusted = Keyring(".secondary_trusted_keys")
    trusted.add(debian_ca)
    v = verify_authenticode(data, keyrings=[trusted])
    assert v.signature.trusted_key.description.startswith("Debian Secure Boot CA")
    assert v.digest == authenticode_digest(data)
    # kexec: not in the secondary keyring, found in .platform (db) on -ENOKEY
    platform = Keyring(".platform")
    platform.add(debian_ca)
    assert verify_authenticode(data, keyrings=[Keyring(".secondary_trusted_keys"), platform]
                               ).keyring == ".platform"
    for other in _others(vectors):
        with pytest.raises(KeyNotFoundError):
            verify_authenticode(data, keyrings=[other])


@pytest.mark.parametrize("name", ALL)
def test_real_images_parse_with_matching_checksum(name: str) -> None:
    data = debian_image(name)
    img = parse_pe(data)
    assert img.is_signed and img.checksum == pe_checksum(data, img.checksum_offset)
    assert authenticode_digest(data) == authenticode_digest(data, rules=DigestRules.FLAT)
    for sig in parse_authenticode(data):
        assert sig.indirect_data.digest == authenticode_digest(data,
                                                               sig.indirect_data.digest_alg)


@pytest.mark.interop
@pytest.mark.parametrize("name", ALL)
def test_real_digests_equal_pesign(name: str) -> None:
    data = debian_image(name)
    r = subprocess.run([need("pesign"), "-h", "-i", str(DEBIAN_DIR / name)],
                       capture_output=True, text=True, check=True)
    assert authenticode_digest(data).hex() == r.stdout.split()[-1]


@pytest.mark.interop
def test_vmlinuz_digest_equals_osslsigncode(vectors: Path) -> None:
    r = subprocess.run([need("osslsigncode"), "verify", "-CAfile",
                        str(vectors / "debian" / "debian-secure-boot-ca.pem"), "-in",
                        str(DEBIAN_DIR / "vmlinuz")], capture_output=True, text=True,
                       check=False)
    data = debian_image("vmlinuz")
    line = next(x for x in r.stdout.splitlines() if x.startswith("Calculated message digest"))
    assert line.split(":")[1].strip().lower() == authenticode_digest(data).hex()
    assert "Succeeded" in r.stdout


def test_shim_has_two_signatures_the_kernel_uses_the_first(debian_ca: Key) -> None:
    data = debian_image("shimx64.efi.signed")
    entries = parse_certificate_table(data)
    assert len(entries) == 2 and all(e.offset % 8 == 0 for e in entries)
    sigs = parse_authenticode(data)
    assert [(s.entry, s.nested) for s in sigs] == [(0, 0), (1, 0)]
    digest = authenticode_digest(data)
    assert all(s.indirect_data.digest == digest for s in sigs)
    # signed by Microsoft: nothing Debian trusts; old kernels refuse two entries outright
    trusted = Keyring(".platform")
    trusted.add(debian_ca)
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(data, keyrings=[trusted])
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(data, keyrings=[trusted], rules=VerifyRules.UEFI)
    with pytest.raises(ParseError):
        verify_authenticode(data, keyrings=[trusted], wrapper=WrapperRules.STRICT)


@pytest.mark.interop
def test_shim_signatures_as_sbverify_lists_them() -> None:
    debian_image("shimx64.efi.signed")
    r = subprocess.run([need("sbverify"), "--list", str(DEBIAN_DIR / "shimx64.efi.signed")],
                       capture_output=True, text=True, check=True)
    assert r.stdout.count("image signature issuers:") == 2
    sigs = parse_authenticode(debian_image("shimx64.efi.signed"))
    for sig, issuer in zip(sigs, ("Microsoft Corporation UEFI CA 2011",
                                  "Microsoft UEFI CA 2023"), strict=True):
        assert issuer in r.stdout
        assert any(issuer.encode() in c for c in sig.signed_data.certificates)


@pytest.mark.interop
def test_sbverify_accepts_shim_against_an_unrelated_certificate(vectors: Path,
                                                                debian_ca: Key) -> None:
    """Real-data form of sbverify's laxness: shim embeds "Microsoft Corporation UEFI CA
    2011" whose issuer is nowhere; sbverify says OK with the Debian CA as --cert, the
    kernel (and imasim) answer -ENOKEY."""
    debian_image("shimx64.efi.signed")
    r = subprocess.run([need("sbverify"), "--cert",
                        str(vectors / "debian" / "debian-secure-boot-ca.pem"),
                        str(DEBIAN_DIR / "shimx64.efi.signed")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "Signature verification OK" in r.stdout
    trusted = Keyring(".secondary_trusted_keys")
    trusted.add(debian_ca)
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(debian_image("shimx64.efi.signed"), keyrings=[trusted])
