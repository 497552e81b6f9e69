"""The integer-only quote verifier (imasim.tpm._pkverify) against cryptography (OpenSSL):
same verdict on valid, tampered and garbage signatures, same keys from PEM/DER/TPM2B."""

from __future__ import annotations

from functools import cache

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from imasim.algorithms import HashAlgorithm as H
from imasim.tpm import SoftTpm
from imasim.tpm import _pkverify as pk

ALGS = {H.SHA1: hashes.SHA1(), H.SHA256: hashes.SHA256(), H.SHA384: hashes.SHA384(),
        H.SHA512: hashes.SHA512()}


@cache
def rsa_key(bits: int, e: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=e, key_size=bits)


@cache
def ec_key(curve: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1() if curve == "p256" else ec.SECP384R1())


def _pem(pub: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _ossl(pub: object, sig: bytes, digest: bytes, alg: H, pad: object = None) -> bool:
    pre = utils.Prehashed(ALGS[alg])
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, digest, ec.ECDSA(pre))
        else:
            assert isinstance(pub, rsa.RSAPublicKey)
            pub.verify(sig, digest, pad, pre)  # type: ignore[arg-type]
    except (InvalidSignature, ValueError):
        return False
    return True


@pytest.mark.parametrize("bits,e", [(1024, 65537), (2048, 65537), (2048, 3), (3072, 65537),
                                    (2049, 65537)])
@pytest.mark.parametrize("alg", list(ALGS))
def test_rsa_against_openssl(bits: int, e: int, alg: H) -> None:
    priv = rsa_key(bits, e)
    key = pk.load_key(_pem(priv.public_key()))
    assert isinstance(key, pk.RsaKey) and key.n == priv.public_key().public_numbers().n
    d = alg.hash(b"quote")
    pre = utils.Prehashed(ALGS[alg])
    sig = priv.sign(d, padding.PKCS1v15(), pre)
    assert pk.verify_pkcs1v15(key, sig, d, alg) and not pk.verify_pss(key, sig, d, alg)
    for salt in (0, alg.digest_size, padding.PSS.MAX_LENGTH):
        if salt == padding.PSS.MAX_LENGTH and bits == 1024 and alg is H.SHA512:
            continue
        try:
            ps = priv.sign(d, padding.PSS(padding.MGF1(ALGS[alg]), salt), pre)
        except ValueError:
            continue  # key too small for this hash and salt
        assert pk.verify_pss(key, ps, d, alg) and not pk.verify_pkcs1v15(key, ps, d, alg)
        bad = bytearray(ps)
        bad[len(bad) // 2] ^= 1
        assert not pk.verify_pss(key, bytes(bad), d, alg)
    assert not pk.verify_pkcs1v15(key, sig, alg.hash(b"other"), alg)
    assert not pk.verify_pkcs1v15(key, sig[:-1], d, alg)
    assert not pk.verify_pkcs1v15(key, key.n.to_bytes(len(sig), "big"), d, alg)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=256, max_size=256), st.sampled_from(list(ALGS)))
def test_rsa_garbage_same_verdict(sig: bytes, alg: H) -> None:
    pub = rsa_key(2048).public_key()
    key = pk.load_key(_pem(pub))
    assert isinstance(key, pk.RsaKey)
    d = alg.hash(sig[:8])
    pss = padding.PSS(padding.MGF1(ALGS[alg]), padding.PSS.AUTO)
    assert pk.verify_pkcs1v15(key, sig, d, alg) is _ossl(pub, sig, d, alg, padding.PKCS1v15())
    assert pk.verify_pss(key, sig, d, alg) is _ossl(pub, sig, d, alg, pss)


@pytest.mark.parametrize("curve", ["p256", "p384"])
@pytest.mark.parametrize("alg", list(ALGS))
def test_ecdsa_against_openssl(curve: str, alg: H) -> None:
    priv = ec_key(curve)
    pub = priv.public_key()
    key = pk.load_key(_pem(pub))
    assert isinstance(key, pk.EcKey) and (key.x, key.y) == (pub.public_numbers().x,
                                                           pub.public_numbers().y)
    der_key = pub.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pk.load_key(der_key) == key
    for i in range(20):
        d = alg.hash(bytes([i]))
        sig = priv.sign(d, ec.ECDSA(utils.Prehashed(ALGS[alg])))
        rs = pk.decode_ecdsa_der(sig)
        assert rs is not None and pk.verify_ecdsa(key, *rs, d)
        assert not pk.verify_ecdsa(key, rs[0], rs[1] ^ 1, d)
        assert not pk.verify_ecdsa(key, *rs, alg.hash(b"other"))
        n = key.curve.n
        for r, s in ((0, rs[1]), (rs[0], 0), (rs[0] + n, rs[1]), (rs[0], rs[1] + n), (n, n)):
            assert not pk.verify_ecdsa(key, r, s, d)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 79), st.integers(0, 255))
def test_ecdsa_der_mutations_same_verdict(junk: bytes, pos: int, byte: int) -> None:
    """Strict DER as OpenSSL: mutated, re-padded or trailing-garbage signatures get
    OpenSSL's verdict."""
    priv = ec_key("p256")
    pub = priv.public_key()
    key = pk.load_key(_pem(pub))
    assert isinstance(key, pk.EcKey)
    d = H.SHA256.hash(b"m")
    sig = bytearray(priv.sign(d, ec.ECDSA(utils.Prehashed(hashes.SHA256()))))
    for cand in (bytes(sig) + junk[:1], bytes(sig[:pos % len(sig)]) + bytes([byte])
                 + bytes(sig[pos % len(sig) + 1:]), junk):
        rs = pk.decode_ecdsa_der(cand)
        ours = rs is not None and pk.verify_ecdsa(key, *rs, d)
        assert ours is _ossl(pub, cand, d, H.SHA256), cand.hex()


def test_keys_from_tpm2b_and_odd_encodings() -> None:
    tpm = SoftTpm((H.SHA256,))
    for kind in ("rsa", "ecc"):
        ak = tpm.create_ak(kind, seed=kind.encode())  # type: ignore[arg-type]
        assert pk.load_key(ak.tpm2b_public) == pk.load_key(ak.public_pem)
    pem = _pem(rsa_key(2048).public_key())
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    long_form = b"\x30\x84" + len(der[4:]).to_bytes(4, "big") + der[4:]
    assert pk.load_key(long_form) is None          # not strict DER: cryptography judges
    assert pk.load_key(der + b"\0") is None
    assert pk.load_key(b"-----BEGIN RSA PUBLIC KEY-----\n") is None
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    assert pk.load_key(_pem(p521)) is None         # not a TPM curve: cryptography verifies
    nums = ec_key("p256").public_key().public_numbers()
    good = _pem(ec_key("p256").public_key())
    der_ec = serialization.load_pem_public_key(good).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    off = der_ec[:-32] + ((nums.y + 1) % pk.P256.p).to_bytes(32, "big")  # not on the curve
    assert pk.load_key(der_ec) is not None and pk.load_key(off) is None
    with pytest.raises(ValueError):
        serialization.load_der_public_key(off)


def test_verify_quote_falls_back_to_cryptography_for_other_curves() -> None:
    """A P-521 AK (no TPM makes one, but a PEM can say so) is verified by cryptography."""
    from imasim.errors import SignatureInvalidError
    from imasim.tpm import verify_quote
    from imasim.tpm.marshal import Signature, SigScheme

    tpm = SoftTpm((H.SHA256,))
    ak = tpm.create_ak("ecc", seed=b"q")
    q = tpm.quote(ak, {H.SHA256: [0]}, b"n")
    p521 = ec.generate_private_key(ec.SECP521R1())
    der = p521.sign(H.SHA256.hash(q.attest), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    sig = Signature(scheme=SigScheme.ECDSA, hash_alg=H.SHA256, r=r.to_bytes(66, "big"),
                    s=s.to_bytes(66, "big")).to_bytes()
    v = verify_quote(q.attest, sig, _pem(p521.public_key()), nonce=b"n")
    assert v.scheme is SigScheme.ECDSA
    with pytest.raises(SignatureInvalidError):
        verify_quote(q.attest, q.signature, _pem(p521.public_key()), nonce=b"n")
