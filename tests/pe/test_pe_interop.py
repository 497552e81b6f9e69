"""Interop with sbsign/sbverify (sbsigntools 0.9.4), osslsigncode 2.9 and pesign 0.112."""

from __future__ import annotations

import datetime
import re
import struct
import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import DigestMismatchError, KeyNotFoundError
from imasim.sig.authenticode import (
    DigestRules,
    SignMode,
    authenticode_digest,
    parse_authenticode,
    sign_pe,
    verify_authenticode,
)
from imasim.sig.pefile import parse_pe
from pe.pe_support import (
    SectionSpec,
    cross_signed,
    default_sections,
    make_pe,
    ring,
    rsa_chain,
    unsigned,
)
from pki import Signer
from tools import need

pytestmark = pytest.mark.interop
T = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)


def _files(tmp: Path, s: Signer, name: str) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}.key", tmp / f"{name}.pem"
    key.write_bytes(s.key_pem)
    cert.write_bytes(s.pem)
    return key, cert


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)


def _pesign_hash(path: Path) -> str:
    r = _run(need("pesign"), "-h", "-i", path)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[-1]


def _ossl_digests(path: Path, cafile: Path) -> tuple[bool, list[tuple[str, str]]]:
    """(verified, [(current, calculated), ...]) as osslsigncode verify prints them."""
    r = _run(need("osslsigncode"), "verify", "-CAfile", cafile, "-in", path)
    cur = re.findall(r"Current message digest\s*:\s*([0-9A-F]+)", r.stdout)
    calc = re.findall(r"Calculated message digest\s*:\s*([0-9A-F]+)", r.stdout)
    return (r.returncode == 0 and "Succeeded" in r.stdout,
            [(a.lower(), b.lower()) for a, b in zip(cur, calc, strict=True)])


def _sbverify(path: Path, cert: Path) -> bool:
    r = _run(need("sbverify"), "--cert", cert, path)
    return r.returncode == 0 and "Signature verification OK" in r.stdout


@pytest.fixture()
def pki_files(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {n: _files(tmp_path, s, n) for n, s in rsa_chain().items()}


# -- digests ------------------------------------------------------------------------------
@pytest.mark.parametrize("image", [
    pytest.param(lambda: unsigned(), id="pe32plus"),
    pytest.param(lambda: make_pe(pe32=True, sections=default_sections(3)), id="pe32"),
    pytest.param(lambda: make_pe(trailing=b"overlay!" * 5), id="trailing-data"),
    pytest.param(lambda: make_pe(trailing=b"abc"), id="unaligned-end"),
    pytest.param(lambda: make_pe(sections=[SectionSpec(b".text", 0x10, 0x60000020),
                                           SectionSpec(b".bss", 0, 0xC0000080),
                                           SectionSpec(b".data", 0x1234, 0xC0000040)]),
                 id="empty-section"),
])
def test_digest_equals_pesign(tmp_path: Path, image) -> None:  # type: ignore[no-untyped-def]
    data = image()
    path = tmp_path / "x.efi"
    path.write_bytes(data)
    assert authenticode_digest(data).hex() == _pesign_hash(path)
    # the negative: one section byte differs
    b = bytearray(data)
    b[parse_pe(data).sections[0].pointer_to_raw_data] ^= 1
    path.write_bytes(bytes(b))
    assert authenticode_digest(data).hex() != _pesign_hash(path)


# -- signed by the tools, verified by imasim ----------------------------------------------
def test_sbsign_image_verifies_in_imasim(tmp_path: Path, pki_files) -> None:  # type: ignore[no-untyped-def]
    src, out = tmp_path / "in.efi", tmp_path / "out.efi"
    src.write_bytes(make_pe(trailing=b"xyz"))
    key, cert = pki_files["leaf"]
    r = _run(need("sbsign"), "--key", key, "--cert", cert, "--addcert", pki_files["inter"][1],
             "--output", out, src)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    root = ring(rsa_chain()["root"])
    v = verify_authenticode(data, keyrings=[root])
    assert v.digest.hex() == _pesign_hash(out)
    assert _sbverify(out, pki_files["root"][1])
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(data, keyrings=[ring(rsa_chain()["stranger"])])
    b = bytearray(data)
    b[0x500] ^= 1
    out.write_bytes(bytes(b))
    assert not _sbverify(out, pki_files["root"][1])
    with pytest.raises(DigestMismatchError):
        verify_authenticode(bytes(b), keyrings=[root])


def test_osslsigncode_image_and_nested_signature(tmp_path: Path, pki_files) -> None:  # type: ignore[no-untyped-def]
    src, out, nested = tmp_path / "in.efi", tmp_path / "out.efi", tmp_path / "nested.efi"
    src.write_bytes(unsigned())
    key, cert = pki_files["direct"]
    ossl = need("osslsigncode")
    r = _run(ossl, "sign", "-certs", cert, "-key", key, "-in", src, "-out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    root = ring(rsa_chain()["root"])
    v = verify_authenticode(out.read_bytes(), keyrings=[root])
    ok, digests = _ossl_digests(out, pki_files["root"][1])
    assert ok and digests == [(v.digest.hex(), v.digest.hex())]
    r = _run(ossl, "sign", "-certs", cert, "-key", key, "-h", "sha384", "-nest", "-in", out,
             "-out", nested)
    assert r.returncode == 0, r.stdout + r.stderr
    data = nested.read_bytes()
    sigs = parse_authenticode(data)
    assert [(s.nested, s.indirect_data.digest_alg) for s in sigs] == [(0, H.SHA256),
                                                                      (1, H.SHA384)]
    assert sigs[1].indirect_data.digest == authenticode_digest(data, H.SHA384)
    ok, digests = _ossl_digests(nested, pki_files["root"][1])
    assert ok and [d for d, _ in digests] == [s.indirect_data.digest.hex() for s in sigs]
    verify_authenticode(data, keyrings=[root])
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(data, keyrings=[ring(rsa_chain()["stranger"])])


def test_osslsigncode_flat_digest_over_a_gap(tmp_path: Path, pki_files) -> None:  # type: ignore[no-untyped-def]
    g = bytearray(make_pe(sections=default_sections(2, 0x200)))
    s = parse_pe(bytes(g)).sections[1]
    struct.pack_into("<I", g, s.offset + 20, s.pointer_to_raw_data + 0x200)
    g[s.pointer_to_raw_data:s.pointer_to_raw_data] = b"G" * 0x200
    src, out = tmp_path / "gap.efi", tmp_path / "gap.signed.efi"
    src.write_bytes(bytes(g))
    key, cert = pki_files["direct"]
    assert _run(need("osslsigncode"), "sign", "-certs", cert, "-key", key, "-in", src,
                "-out", out).returncode == 0
    data = out.read_bytes()
    signed_digest = parse_authenticode(data)[0].indirect_data.digest
    assert authenticode_digest(data, rules=DigestRules.FLAT) == signed_digest
    assert authenticode_digest(data) != signed_digest
    assert authenticode_digest(data).hex() == _pesign_hash(out)
    # the kernel hashes the kernel way: osslsigncode's signature over a gap fails there
    with pytest.raises(DigestMismatchError):
        verify_authenticode(data, keyrings=[ring(rsa_chain()["root"])])


# -- signed by imasim, verified by the tools ----------------------------------------------
@pytest.mark.parametrize("mode", ["single", "nested"])
def test_imasim_image_verifies_with_sbverify_and_osslsigncode(tmp_path: Path, pki_files,
                                                               mode: str) -> None:  # type: ignore[no-untyped-def]
    c = rsa_chain()
    data = sign_pe(make_pe(trailing=b"q"), key=c["direct"].key, certificate=c["direct"].cert,
                   signing_time=T)
    if mode == "nested":
        data = sign_pe(data, key=c["leaf"].key, certificate=c["leaf"].cert,
                       hash_alg=H.SHA512, mode=SignMode.NEST, signing_time=T,
                       extra_certificates=[c["inter"].cert])
    out = tmp_path / "imasim.efi"
    out.write_bytes(data)
    root_pem, stranger_pem = pki_files["root"][1], pki_files["stranger"][1]
    assert _sbverify(out, root_pem)
    assert not _sbverify(out, stranger_pem)
    ok, digests = _ossl_digests(out, root_pem)
    sigs = parse_authenticode(data)
    assert ok and len(digests) == len(sigs) == (2 if mode == "nested" else 1)
    for (cur, calc), s in zip(digests, sigs, strict=True):
        assert cur == calc == s.indirect_data.digest.hex()
    assert not _ossl_digests(out, stranger_pem)[0]
    # osslsigncode's "PE checksum" agrees with the one imasim wrote
    r = _run(need("osslsigncode"), "verify", "-CAfile", root_pem, "-in", out)
    assert "MISMATCH" not in r.stdout
    assert authenticode_digest(data).hex() == _pesign_hash(out)


def test_imasim_chain_image_verifies_with_osslsigncode(tmp_path: Path, pki_files) -> None:  # type: ignore[no-untyped-def]
    c = rsa_chain()
    data = sign_pe(unsigned(), key=c["leaf"].key, certificate=c["leaf"].cert, signing_time=T,
                   extra_certificates=[c["inter"].cert])
    out = tmp_path / "chain.efi"
    out.write_bytes(data)
    assert _ossl_digests(out, pki_files["root"][1])[0]
    assert not _ossl_digests(out, pki_files["stranger"][1])[0]
    assert _sbverify(out, pki_files["root"][1])


# -- where sbverify is laxer than the kernel --------------------------------------------
@pytest.mark.parametrize("signer", ["sbsign", "imasim"])
def test_sbverify_accepts_an_embedded_issuer_it_cannot_chain(tmp_path: Path, pki_files,
                                                             signer: str) -> None:  # type: ignore[no-untyped-def]
    """Leaf and intermediate embedded, the root nowhere: sbverify 0.9.4 says OK whatever
    --cert it is given (its verify callback lets the intermediate's missing issuer pass);
    the kernel walks the embedded chain, finds no trusted key: -ENOKEY."""
    c = rsa_chain()
    src, out = tmp_path / "in.efi", tmp_path / "out.efi"
    src.write_bytes(unsigned())
    key, cert = pki_files["leaf"]
    if signer == "sbsign":
        assert _run(need("sbsign"), "--key", key, "--cert", cert, "--addcert",
                    pki_files["inter"][1], "--output", out, src).returncode == 0
    else:
        out.write_bytes(sign_pe(unsigned(), key=c["leaf"].key, certificate=c["leaf"].cert,
                                extra_certificates=[c["inter"].cert]))
    stranger_pem = pki_files["stranger"][1]
    assert _sbverify(out, stranger_pem)
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(out.read_bytes(), keyrings=[ring(c["stranger"])])
    assert not _ossl_digests(out, stranger_pem)[0]  # osslsigncode is not fooled
    verify_authenticode(out.read_bytes(), keyrings=[ring(c["root"])])


def test_sbverify_accepts_a_cross_signed_embedded_issuer(tmp_path: Path,
                                                         pki_files) -> None:  # type: ignore[no-untyped-def]
    """The embedded issuer has the intermediate's key but was issued by a stranger. With
    --cert intermediate, OpenSSL picks the trusted intermediate from the store; the
    kernel walks to the cross-signed certificate, which no trusted key vouches for."""
    cross = tmp_path / "cross.pem"
    cross.write_bytes(cross_signed().pem)
    src, out = tmp_path / "in.efi", tmp_path / "out.efi"
    src.write_bytes(unsigned())
    key, cert = pki_files["leaf"]
    assert _run(need("sbsign"), "--key", key, "--cert", cert, "--addcert", cross,
                "--output", out, src).returncode == 0
    inter_pem = pki_files["inter"][1]
    assert _sbverify(out, inter_pem)
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(out.read_bytes(), keyrings=[ring(rsa_chain()["inter"])])
    # control: the real intermediate embedded, both accept
    assert _run(need("sbsign"), "--key", key, "--cert", cert, "--addcert", inter_pem,
                "--output", out, src).returncode == 0
    assert _sbverify(out, inter_pem)
    verify_authenticode(out.read_bytes(), keyrings=[ring(rsa_chain()["inter"])])


def test_appended_data_fails_everywhere(tmp_path: Path, pki_files) -> None:  # type: ignore[no-untyped-def]
    c = rsa_chain()
    data = sign_pe(unsigned(), key=c["direct"].key, certificate=c["direct"].cert) + b"tail"
    out = tmp_path / "app.efi"
    out.write_bytes(data)
    assert not _sbverify(out, pki_files["root"][1])
    with pytest.raises(DigestMismatchError):
        verify_authenticode(data, keyrings=[ring(c["root"])])
    assert authenticode_digest(data).hex() == _pesign_hash(out)
