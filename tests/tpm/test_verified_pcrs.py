"""verify_quote returns only what the quote's pcrDigest covers, and refuses PCR values
that select anything else, as tpm2_checkquote 5.7+ does (tpm2-tools
tools/misc/tpm2_checkquote.c compare_pcr_selection; CVE-2024-29039)."""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import PcrMismatchError
from imasim.tpm import PcrSelection, PcrSource, SoftTpm, verify_quote
from imasim.tpm.marshal import BankSelection
from imasim.tpm.verify import PcrFile

NONCE = b"nonce"


@pytest.fixture(scope="module")
def tpm() -> SoftTpm:
    t = SoftTpm((H.SHA1, H.SHA256))
    for i in range(11):
        t.extend(i, {a: a.hash(bytes([i])) for a in t.banks})
    return t


def _all(tpm: SoftTpm) -> dict[H, dict[int, bytes]]:
    return {a: dict(enumerate(tpm.pcr_values(a))) for a in tpm.banks}


def test_only_the_quoted_selection_comes_back(tpm: SoftTpm) -> None:
    ak = tpm.create_ak("ecc", seed=b"v")
    q = tpm.quote(ak, PcrSelection.from_string("sha256:0,10+sha1:10"), NONCE)
    v = verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=q.values_by_bank())
    assert v.pcrs.source is PcrSource.QUOTE and v.pcrs.authenticated
    assert list(v.pcrs) == [H.SHA256, H.SHA1]
    assert {a: sorted(b) for a, b in v.pcrs.items()} == {H.SHA256: [0, 10], H.SHA1: [10]}
    assert v.pcr_values is v.pcrs
    # no values given: nothing is vouched for
    bare = verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE)
    assert len(bare.pcrs) == 0 and not bare.pcrs_checked


def test_the_forged_pcr_file_attack_is_refused(tpm: SoftTpm) -> None:
    """A quote of sha256:0 with values that also claim PCRs 1-10 (issue 17)."""
    ak = tpm.create_ak("rsa", seed=b"v")
    q = tpm.quote(ak, PcrSelection.from_string("sha256:0"), NONCE)
    real = _all(tpm)
    forged = {H.SHA256: {i: real[H.SHA256][i] if i == 0 else bytes(32) for i in range(11)}}
    with pytest.raises(PcrMismatchError, match=r"PCRs \[1, 2, .*10\] not quoted"):
        verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=forged)
    # relabelled: the quoted value claimed for PCR 10 (tpm2-tools <= 5.6 accepts this)
    relabel = PcrFile((BankSelection(H.SHA256, (10,)),), (real[H.SHA256][0],))
    with pytest.raises(PcrMismatchError, match="not quoted"):
        verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=relabel)
    for bad in ({H.SHA256: {0: real[H.SHA256][0]}, H.SHA1: {0: real[H.SHA1][0]}},  # extra bank
                {H.SHA1: {0: real[H.SHA1][0]}},                                       # other bank
                {}):                                                                  # nothing
        with pytest.raises(PcrMismatchError):
            verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=bad)


def test_bank_order_follows_the_digest(tpm: SoftTpm) -> None:
    ak = tpm.create_ak("ecc", seed=b"o")
    q = tpm.quote(ak, PcrSelection.from_string("sha1:0+sha256:0"), NONCE)
    real = _all(tpm)
    swapped = {H.SHA256: {0: real[H.SHA256][0]}, H.SHA1: {0: real[H.SHA1][0]}}
    with pytest.raises(PcrMismatchError, match="pcrDigest"):
        verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=swapped)
    missing = {H.SHA1: {0: real[H.SHA1][0]}, H.SHA256: {}}
    with pytest.raises(PcrMismatchError, match=r"PCRs \[0\] missing"):
        verify_quote(q.attest, q.signature, ak.public_pem, nonce=NONCE, pcrs=missing)
