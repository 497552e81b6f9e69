"""VerifyRules.UEFI against dbx with more than one signature: EDK2's
DxeImageVerificationHandler looks at every WIN_CERTIFICATE entry and refuses the image
when any entry's signer chain (IsForbiddenByDbx) or the image hash in any entry's
algorithm is in dbx, even when another entry verified against db. Nested signatures
(an unsigned attribute) are not WIN_CERTIFICATE entries, so EDK2 never looks at them."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import KeyNotFoundError, RevokedError
from imasim.keys import Blacklist, Keyring
from imasim.sig.authenticode import (
    SignMode,
    VerifyRules,
    authenticode_digest,
    parse_authenticode,
    parse_certificate_table,
    sign_pe,
    verify_authenticode,
)
from pe.pe_support import ring, rsa_chain, unsigned
from pki import Signer
from tools import need

T = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)


def _first() -> bytes:
    c = rsa_chain()
    return sign_pe(unsigned(), key=c["leaf"].key, certificate=c["leaf"].cert,
                   signing_time=T, extra_certificates=[c["inter"].cert])


def _add(image: bytes, signer: str, mode: SignMode, alg: H = H.SHA256) -> bytes:
    s = rsa_chain()[signer]
    return sign_pe(image, key=s.key, certificate=s.cert, signing_time=T, mode=mode,
                   hash_alg=alg)


def _dbx(*signers: Signer) -> Blacklist:
    dbx = Blacklist()
    for s in signers:
        tbs = s.as_key().tbs_hash()
        assert tbs is not None
        dbx.add_tbs_hash(tbs)
    return dbx


def _root() -> list[Keyring]:
    return [ring(rsa_chain()["root"])]


def test_a_second_entry_in_dbx_refuses_an_image_the_first_entry_admits() -> None:
    two = _add(_first(), "direct", SignMode.APPEND)
    assert len(parse_certificate_table(two)) == 2
    dbx = _dbx(rsa_chain()["direct"])
    # without dbx both entries verify; the first one is reported
    assert verify_authenticode(two, keyrings=_root(), rules=VerifyRules.UEFI).entry == 0
    with pytest.raises(RevokedError, match="WIN_CERTIFICATE 1"):
        verify_authenticode(two, keyrings=_root(), blacklist=dbx, rules=VerifyRules.UEFI)
    # the kernel (verify_pefile_signature) reads the first entry only
    assert verify_authenticode(two, keyrings=_root(), blacklist=dbx).entry == 0


def test_order_does_not_matter() -> None:
    two = _add(_add(unsigned(), "direct", SignMode.NEW), "leaf", SignMode.APPEND)
    dbx = _dbx(rsa_chain()["direct"])
    with pytest.raises(RevokedError, match="WIN_CERTIFICATE 0"):
        verify_authenticode(two, keyrings=_root(), blacklist=dbx, rules=VerifyRules.UEFI)


def test_an_issuer_in_dbx_refuses_too() -> None:
    # the leaf's embedded intermediate is in dbx: IsForbiddenByDbx walks the signer chain
    c = rsa_chain()
    two = _add(_first(), "direct", SignMode.APPEND)
    with pytest.raises(RevokedError, match="intermediate"):
        verify_authenticode(two, keyrings=_root(), blacklist=_dbx(c["inter"]),
                            rules=VerifyRules.UEFI)


def test_an_untrusted_entry_not_in_dbx_is_harmless() -> None:
    two = _add(_first(), "stranger", SignMode.APPEND)
    dbx = _dbx(rsa_chain()["direct"])
    v = verify_authenticode(two, keyrings=_root(), blacklist=dbx, rules=VerifyRules.UEFI)
    assert v.entry == 0
    flipped = _add(_add(unsigned(), "stranger", SignMode.NEW), "direct", SignMode.APPEND)
    v = verify_authenticode(flipped, keyrings=_root(), rules=VerifyRules.UEFI)
    assert v.entry == 1
    with pytest.raises(KeyNotFoundError):  # nothing verifies: the last failure
        verify_authenticode(_add(unsigned(), "stranger", SignMode.NEW), keyrings=_root(),
                            rules=VerifyRules.UEFI)


def test_the_image_hash_in_any_entrys_algorithm() -> None:
    two = _add(_first(), "direct", SignMode.APPEND, H.SHA384)
    dbx = Blacklist()
    dbx.add_binary_hash(authenticode_digest(two, H.SHA384))
    with pytest.raises(RevokedError, match="image hash"):
        verify_authenticode(two, keyrings=_root(), blacklist=dbx, rules=VerifyRules.UEFI)
    # a SHA-512 hash matches no entry's algorithm: EDK2 never computes it
    dbx512 = Blacklist()
    dbx512.add_binary_hash(authenticode_digest(two, H.SHA512))
    verify_authenticode(two, keyrings=_root(), blacklist=dbx512, rules=VerifyRules.UEFI)


def test_a_nested_signature_is_not_an_entry() -> None:
    # osslsigncode -nest: the second signature is an unsigned attribute of the first;
    # EDK2 walks WIN_CERTIFICATE entries and OpenSSL's PKCS7_verify ignores unsigned
    # attributes, so a dbx-listed nested signer does not stop the image
    nested = _add(_first(), "direct", SignMode.NEST)
    assert [(s.entry, s.nested) for s in parse_authenticode(nested)] == [(0, 0), (0, 1)]
    v = verify_authenticode(nested, keyrings=_root(), blacklist=_dbx(rsa_chain()["direct"]),
                            rules=VerifyRules.UEFI)
    assert v.entry == 0


@pytest.mark.interop
def test_sbverify_and_osslsigncode_on_the_two_signature_images(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(rsa_chain()["root"].pem)
    for name, image in (("two.efi", _add(_first(), "direct", SignMode.APPEND)),
                        ("nested.efi", _add(_first(), "direct", SignMode.NEST))):
        path = tmp_path / name
        path.write_bytes(image)
        r = subprocess.run([need("osslsigncode"), "verify", "-CAfile", str(root), "-in",
                            str(path)], capture_output=True, text=True, check=False)
        if name == "nested.efi":  # osslsigncode checks the nested signature too
            assert r.returncode == 0 and "Succeeded" in r.stdout, r.stdout + r.stderr
            assert r.stdout.count("Signature verification: ok") >= 2, r.stdout
        else:  # osslsigncode 2.9 reads one entry only: it says the same of Debian's shim
            assert r.returncode != 0
            assert "Corrupted attribute certificate table" in r.stdout + r.stderr
        r = subprocess.run([need("sbverify"), "--cert", str(root), str(path)],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0 and "Signature verification OK" in r.stdout, r.stdout
        # without dbx imasim's UEFI rules agree; with the second signer in dbx only the
        # image with two WIN_CERTIFICATE entries is refused
        verify_authenticode(image, keyrings=_root(), rules=VerifyRules.UEFI)
        dbx = _dbx(rsa_chain()["direct"])
        if name == "two.efi":
            with pytest.raises(RevokedError):
                verify_authenticode(image, keyrings=_root(), blacklist=dbx,
                                    rules=VerifyRules.UEFI)
