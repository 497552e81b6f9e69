"""Each kind of damage to an appended signature, and the kernel's answer to it.

module_sig_check / mod_check_sig / mod_verify_sig / verify_pkcs7_signature map every
case to an errno; imasim maps each errno to one exception class:

=============================  ==================  ==================================
damage                         kernel              imasim
=============================  ==================  ==================================
marker missing                 -ENODATA            UnsignedError
sig_len beyond the file        -EBADMSG            ParseError (field sig_len)
sig_len shorter than the blob  -EBADMSG            ParseError (inside the PKCS#7)
non-zero reserved fields       -EBADMSG            ParseError (module_signature)
id_type not PKCS#7             -ENOPKG             UnsupportedAlgorithmError
payload byte changed           -EKEYREJECTED       KeyRejectedError (digest differs)
signature byte changed         -EKEYREJECTED       KeyRejectedError (RSA/ECDSA fails)
signer not in the keyring      -ENOKEY             KeyNotFoundError
signer's tbs hash blacklisted  -EKEYREJECTED       RevokedError
=============================  ==================  ==================================

Every case leaves the caller's bytes and keyring as they were.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imasim.errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    RevokedError,
    UnsignedError,
    UnsupportedAlgorithmError,
)
from imasim.keys import Blacklist, Keyring
from imasim.sig import parse_modsig, sign_module, verify_modsig
from imasim.sig.modsig import MODULE_SIG_STRING
from pki import pki

PAYLOAD = bytes(range(256)) * 64
TRAILER = len(MODULE_SIG_STRING) + 12  # struct module_signature + marker


def _signed(name: str) -> bytes:
    s = pki()[name]
    return sign_module(PAYLOAD, key=s.key, certificate=s.cert)


def _ring(name: str) -> Keyring:
    ring = Keyring(".secondary_trusted_keys")
    ring.add(pki()[name].as_key())
    return ring


def _poke(at: Callable[[bytes], int], value: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        out = bytearray(data)
        i = at(data)
        out[i] = value(out[i])
        return bytes(out)
    return damage


def _sig_len(new: Callable[[bytes, int], int]) -> Callable[[bytes], bytes]:
    """Replace the big-endian sig_len by ``new(data, old_sig_len)``."""
    def damage(data: bytes) -> bytes:
        out = bytearray(data)
        off = len(data) - TRAILER + 8
        out[off:off + 4] = new(data, int.from_bytes(out[off:off + 4], "big")).to_bytes(4, "big")
        return bytes(out)
    return damage


def _signature_byte(data: bytes) -> int:
    """The last byte of the PKCS#7 blob: inside the signature value (its last field)."""
    return len(data) - TRAILER - 1


def _flip(b: int) -> int:
    return b ^ 0x01


CASES: dict[str, tuple[Callable[[bytes], bytes], type[ImasimError]]] = {
    "marker": (_poke(lambda d: len(d) - 2, _flip), UnsignedError),
    "sig_len beyond the file": (_sig_len(lambda d, _: len(d)), ParseError),
    "sig_len shorter": (_sig_len(lambda _, n: n - 1), ParseError),
    "sig_len longer": (_sig_len(lambda _, n: n + 1), ParseError),
    "reserved field": (_poke(lambda d: len(d) - TRAILER + 5, lambda _: 1), ParseError),
    "signer_len": (_poke(lambda d: len(d) - TRAILER + 3, lambda _: 4), ParseError),
    "id_type": (_poke(lambda d: len(d) - TRAILER + 2, lambda _: 1), UnsupportedAlgorithmError),
    "payload first byte": (_poke(lambda d: 0, _flip), KeyRejectedError),
    "payload last byte": (_poke(lambda d: len(PAYLOAD) - 1, _flip), KeyRejectedError),
    "signature byte": (_poke(_signature_byte, _flip), KeyRejectedError),
    "truncated payload": (lambda d: d[1:], KeyRejectedError),
}


@pytest.mark.parametrize("name", ["rsa_leaf", "leaf"])
@pytest.mark.parametrize("case", list(CASES))
def test_damage_gets_the_kernels_error(name: str, case: str) -> None:
    damage, error = CASES[case]
    good = _signed(name)
    ring = _ring(name)
    before = [k.description for k in ring.keys]
    verify_modsig(good, keyring=ring)  # positive control
    bad = damage(good)
    assert bad != good
    with pytest.raises(error) as exc:
        verify_modsig(bad, keyring=ring)
    assert type(exc.value) is error or case.startswith("sig_len")
    assert [k.description for k in ring.keys] == before
    verify_modsig(good, keyring=ring)


def test_parse_errors_carry_the_offset_of_the_bad_field() -> None:
    good = _signed("rsa_leaf")
    with pytest.raises(ParseError) as exc:
        verify_modsig(CASES["sig_len beyond the file"][0](good), keyring=_ring("rsa_leaf"))
    assert exc.value.field == "sig_len" and exc.value.offset == len(good) - TRAILER + 8
    with pytest.raises(ParseError) as exc:
        verify_modsig(CASES["reserved field"][0](good), keyring=_ring("rsa_leaf"))
    assert exc.value.field == "module_signature"
    assert exc.value.offset == len(good) - TRAILER
    with pytest.raises(ParseError) as exc:  # the blob starts a byte late: inside the PKCS#7
        verify_modsig(CASES["sig_len shorter"][0](good), keyring=_ring("rsa_leaf"))
    start = len(parse_modsig(good)[0]) + 1
    assert exc.value.offset is not None and exc.value.offset >= start


@pytest.mark.parametrize("name", ["rsa_leaf", "leaf"])
def test_wrong_key_and_blacklisted_key(name: str) -> None:
    good = _signed(name)
    with pytest.raises(KeyNotFoundError):
        verify_modsig(good, keyring=_ring("stranger"))
    other = "leaf" if name == "rsa_leaf" else "rsa_leaf"
    with pytest.raises(KeyNotFoundError):
        verify_modsig(good, keyring=_ring(other))
    bl = Blacklist()
    tbs = pki()[name].as_key().tbs_hash()
    assert tbs is not None
    verify_modsig(good, keyring=_ring(name), blacklist=bl)  # an empty blacklist blocks nothing
    bl.add_tbs_hash(tbs)  # sign-file carries no certificate: the trusted key still verifies
    verify_modsig(good, keyring=_ring(name), blacklist=bl)
    bl.add_revocation_certificate(pki()[name].as_key())
    with pytest.raises(RevokedError):
        verify_modsig(good, keyring=_ring(name), blacklist=bl)


SHA256_OID = bytes.fromhex("0609608648016503040201")
RSA_OID_AND_NULL = bytes.fromhex("06092a864886f70d0101010500")


def test_every_byte_flip_of_the_trailer_is_refused_but_what_the_kernel_ignores() -> None:
    """No byte of the PKCS#7 blob, struct or marker can change and still verify, except
    two the kernel's pkcs7.asn1 never looks at: the OID bytes of SignedData's
    digestAlgorithms (pkcs7_note_OID only records it; the signer's own digestAlgorithm
    decides) and the tag of the signature algorithm's parameters (``ANY OPTIONAL``)."""
    good = _signed("rsa_leaf")
    ring = _ring("rsa_leaf")
    start = len(parse_modsig(good)[0])
    blob = good[start:-TRAILER]
    oid = blob.index(SHA256_OID)  # the first one: SignedData.digestAlgorithms
    ignored = set(range(oid + 2, oid + len(SHA256_OID) - 1))  # OID content, not its end
    ignored.add(blob.index(RSA_OID_AND_NULL) + len(RSA_OID_AND_NULL) - 2)  # NULL's tag
    accepted = set()
    for i in range(start, len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x80
        try:
            verify_modsig(bytes(bad), keyring=ring)
        except ImasimError:
            continue
        accepted.add(i - start)
    assert accepted == ignored
