"""Signature verification for quotes with Python integers and hashlib only.

``imasim tpm checkquote`` runs once per process, where importing ``cryptography`` costs
more than the whole of ``tpm2_checkquote``; verification needs no secret and no constant
time, so the public-key operations are done here: RSASSA-PKCS1-v1_5 and RSASSA-PSS
(RFC 8017 8.2.2 and 9.1.2, MGF1 with the message hash, salt length recovered as OpenSSL's
RSA_PSS_SALTLEN_AUTO does) and ECDSA over NIST P-256 and P-384 (SEC 1 4.1.4).

Keys: SubjectPublicKeyInfo (PEM or DER, RSA or uncompressed P-256/P-384 points) and the
RSA/ECC TPM2B_PUBLIC of an AK. :func:`load_key` returns None for anything else, and the
caller falls back to ``cryptography``; only strict DER is taken (it must re-encode to the
same bytes), so this path never accepts a key ``cryptography`` would refuse.
tests/tpm/test_pkverify.py checks every function against ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from .._der import INTEGER, NULL, OID, SEQUENCE, decode_oid, der, der_int, der_oid, parse_tlv
from ..algorithms import HashAlgorithm
from ..errors import ImasimError

__all__ = ["EcKey", "RsaKey", "load_key", "verify_ecdsa", "verify_pkcs1v15", "verify_pss"]

_BIT_STRING: Final = 0x03
_RSA_OID: Final = "1.2.840.113549.1.1.1"
_EC_OID: Final = "1.2.840.10045.2.1"

#: DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017 9.2 note 1)
_DIGEST_INFO: Final = {
    HashAlgorithm.SHA1: bytes.fromhex("3021300906052b0e03021a05000414"),
    HashAlgorithm.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HashAlgorithm.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    HashAlgorithm.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}


class Curve:
    """A short-Weierstrass curve y^2 = x^3 + ax + b over GF(p) with base point (gx, gy)
    of prime order n. (Plain classes here: a dataclass costs a cold start more.)"""

    __slots__ = ("a", "b", "gx", "gy", "n", "name", "oid", "p", "size")

    def __init__(self, name: str, oid: str, *, p: int, a: int, b: int, gx: int, gy: int,
                 n: int) -> None:
        self.name, self.oid, self.p, self.a, self.b = name, oid, p, a, b
        self.gx, self.gy, self.n = gx, gy, n
        self.size = (p.bit_length() + 7) // 8


P256: Final = Curve(
    "secp256r1", "1.2.840.10045.3.1.7",
    p=0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
    a=0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC,
    b=0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    gx=0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    gy=0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
    n=0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
P384: Final = Curve(
    "secp384r1", "1.3.132.0.34",
    p=int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
          "FFFFFFFF0000000000000000FFFFFFFF", 16),
    a=int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
          "FFFFFFFF0000000000000000FFFFFFFC", 16),
    b=int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
          "C656398D8A2ED19D2A85C8EDD3EC2AEF", 16),
    gx=int("AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
           "5502F25DBF55296C3A545E3872760AB7", 16),
    gy=int("3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
           "0A60B1CE1D7E819D7A431D7C90EA0E5F", 16),
    n=int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
          "581A0DB248B0A77AECEC196ACCC52973", 16))
_CURVES: Final = {c.oid: c for c in (P256, P384)}
_TPM_CURVES: Final = {0x0003: P256, 0x0004: P384}  # TPM_ECC_NIST_P256, _P384


class RsaKey:
    """An RSA public key (n, e)."""

    __slots__ = ("e", "n")

    def __init__(self, n: int, e: int) -> None:
        self.n, self.e = n, e

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RsaKey) and (self.n, self.e) == (other.n, other.e)

    def __hash__(self) -> int:
        return hash((self.n, self.e))


class EcKey:
    """An EC public key: a point (x, y) on ``curve``."""

    __slots__ = ("curve", "x", "y")

    def __init__(self, curve: Curve, x: int, y: int) -> None:
        self.curve, self.x, self.y = curve, x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EcKey) and (self.curve, self.x, self.y) == (
            other.curve, other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.curve.name, self.x, self.y))


def load_key(data: bytes) -> RsaKey | EcKey | None:
    """An AK public key from PEM/DER SubjectPublicKeyInfo or TPM2B_PUBLIC, or None when
    it is none of the forms this module reads (the caller then uses ``cryptography``)."""
    try:
        stripped = data.strip()
        if stripped.startswith(b"-----BEGIN PUBLIC KEY-----"):
            lines = stripped.split(b"\n")
            if lines[-1].strip() != b"-----END PUBLIC KEY-----":
                return None
            der_bytes = base64.b64decode(b"".join(x.strip() for x in lines[1:-1]),
                                         validate=True)
            return _spki(der_bytes)
        if data[:1] == bytes([SEQUENCE]):
            return _spki(data)
        return _tpm2b_public(data)
    except (ImasimError, ValueError, binascii.Error, IndexError):
        return None


def _spki(data: bytes) -> RsaKey | EcKey | None:
    top = parse_tlv(data).expect(SEQUENCE, "SubjectPublicKeyInfo")
    if top.end != len(data):
        return None
    alg, bits = top.items(2, "SubjectPublicKeyInfo")[:2]
    alg_items = alg.expect(SEQUENCE, "algorithm").items(2, "AlgorithmIdentifier")
    oid = decode_oid(alg_items[0])
    bits.expect(_BIT_STRING, "subjectPublicKey")
    if not bits.content or bits.content[0] != 0:
        return None
    key_bytes = bits.content[1:]
    key: RsaKey | EcKey
    if oid == _RSA_OID and alg_items[1].tag == NULL:
        rsa_seq = parse_tlv(key_bytes).expect(SEQUENCE, "RSAPublicKey")
        n_t, e_t = rsa_seq.items(2, "RSAPublicKey")[:2]
        n = int.from_bytes(n_t.expect(INTEGER, "modulus").content, "big", signed=True)
        e = int.from_bytes(e_t.expect(INTEGER, "exponent").content, "big", signed=True)
        if n < 3 or n % 2 == 0 or e < 3 or e % 2 == 0 or e >= n:
            return None
        key = RsaKey(n, e)
        inner = der(SEQUENCE, der_int(n) + der_int(e))
        alg_der = der(SEQUENCE, der_oid(_RSA_OID) + der(NULL, b""))
    elif oid == _EC_OID and alg_items[1].tag == OID:
        curve = _CURVES.get(decode_oid(alg_items[1]))
        if curve is None or len(key_bytes) != 1 + 2 * curve.size or key_bytes[0] != 4:
            return None
        x = int.from_bytes(key_bytes[1:1 + curve.size], "big")
        y = int.from_bytes(key_bytes[1 + curve.size:], "big")
        key = EcKey(curve, x, y)
        inner = key_bytes
        alg_der = der(SEQUENCE, der_oid(_EC_OID) + der_oid(curve.oid))
    else:
        return None
    if der(SEQUENCE, alg_der + der(_BIT_STRING, b"\0" + inner)) != data:
        return None  # not strict DER: let cryptography judge it
    if isinstance(key, EcKey) and not _on_curve(key):
        return None
    return key


def _tpm2b_public(data: bytes) -> RsaKey | EcKey | None:
    from .marshal import TPM_ALG_RSA, parse_public

    area = parse_public(data)
    if area.type == TPM_ALG_RSA:
        n = int.from_bytes(area.modulus, "big")
        e = area.exponent or 65537
        return RsaKey(n, e) if n > e else None
    curve = _TPM_CURVES.get(area.curve)
    if curve is None:
        return None
    key = EcKey(curve, int.from_bytes(area.x, "big"), int.from_bytes(area.y, "big"))
    return key if _on_curve(key) else None


def _on_curve(k: EcKey) -> bool:
    c = k.curve
    if not (0 <= k.x < c.p and 0 <= k.y < c.p):
        return False
    return (k.y * k.y - (k.x * k.x * k.x + c.a * k.x + c.b)) % c.p == 0


# -- RSA ----------------------------------------------------------------------------------
def _rsa_em(key: RsaKey, sig: bytes) -> int | None:
    k = (key.n.bit_length() + 7) // 8
    if len(sig) != k:
        return None
    s = int.from_bytes(sig, "big")
    if s >= key.n:
        return None
    return pow(s, key.e, key.n)


def verify_pkcs1v15(key: RsaKey, sig: bytes, digest: bytes, alg: HashAlgorithm) -> bool:
    """RSASSA-PKCS1-v1_5-VERIFY of a prehashed message: encode and compare."""
    m = _rsa_em(key, sig)
    prefix = _DIGEST_INFO.get(alg)
    if m is None or prefix is None or len(digest) != alg.digest_size:
        return False
    k = len(sig)
    t = prefix + digest
    if k < len(t) + 11:
        return False
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return m.to_bytes(k, "big") == em


def _mgf1(seed: bytes, length: int, alg: HashAlgorithm) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += alg.hash(seed + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:length])


def verify_pss(key: RsaKey, sig: bytes, digest: bytes, alg: HashAlgorithm) -> bool:
    """RSASSA-PSS-VERIFY (MGF1 with ``alg``, any salt length) of a prehashed message."""
    m = _rsa_em(key, sig)
    h_len = alg.digest_size
    if m is None or len(digest) != h_len:
        return False
    em_bits = key.n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    if m.bit_length() > em_bits or em_len < h_len + 2:
        return False
    em = m.to_bytes(em_len, "big")
    if em[-1] != 0xBC:
        return False
    masked_db, h = em[:em_len - h_len - 1], em[em_len - h_len - 1:-1]
    unused = 8 * em_len - em_bits
    if unused and masked_db[0] >> (8 - unused):
        return False
    db = bytearray(a ^ b for a, b in zip(masked_db, _mgf1(h, len(masked_db), alg),
                                         strict=True))
    if unused:
        db[0] &= 0xFF >> unused
    i = 0
    while i < len(db) and db[i] == 0:
        i += 1
    if i == len(db) or db[i] != 1:
        return False
    salt = bytes(db[i + 1:])
    return alg.hash(bytes(8) + digest + salt) == h


# -- ECDSA --------------------------------------------------------------------------------
_Point = tuple[int, int, int]  # Jacobian (X, Y, Z); Z == 0 is the point at infinity


def _double(pt: _Point, c: Curve) -> _Point:
    x, y, z = pt
    if z == 0 or y == 0:
        return (0, 1, 0)
    p = c.p
    yy = y * y % p
    s = 4 * x * yy % p
    zz = z * z % p
    m = (3 * x * x + c.a * zz * zz) % p
    x3 = (m * m - 2 * s) % p
    y3 = (m * (s - x3) - 8 * yy * yy) % p
    z3 = 2 * y * z % p
    return (x3, y3, z3)


def _add(p1: _Point, p2: _Point, c: Curve) -> _Point:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    p = c.p
    z1z1, z2z2 = z1 * z1 % p, z2 * z2 % p
    u1, u2 = x1 * z2z2 % p, x2 * z1z1 % p
    s1, s2 = y1 * z2 * z2z2 % p, y2 * z1 * z1z1 % p
    if u1 == u2:
        return _double(p1, c) if s1 == s2 else (0, 1, 0)
    h = (u2 - u1) % p
    r = (s2 - s1) % p
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - s1 * hhh) % p
    z3 = h * z1 * z2 % p
    return (x3, y3, z3)


def _double_mul(u1: int, g: _Point, u2: int, q: _Point, c: Curve) -> _Point:
    """u1*G + u2*Q (Shamir's trick)."""
    gq = _add(g, q, c)
    acc: _Point = (0, 1, 0)
    for i in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        acc = _double(acc, c)
        b1, b2 = (u1 >> i) & 1, (u2 >> i) & 1
        if b1 and b2:
            acc = _add(acc, gq, c)
        elif b1:
            acc = _add(acc, g, c)
        elif b2:
            acc = _add(acc, q, c)
    return acc


def decode_ecdsa_der(sig: bytes) -> tuple[int, int] | None:
    """(r, s) of a strict-DER ECDSA-Sig-Value (OpenSSL re-encodes and compares too)."""
    try:
        top = parse_tlv(sig).expect(SEQUENCE, "ECDSA-Sig-Value")
        items = top.items(2, "ECDSA-Sig-Value")
        if len(items) != 2 or top.end != len(sig):
            return None
        r = int.from_bytes(items[0].expect(INTEGER, "r").content, "big", signed=True)
        s = int.from_bytes(items[1].expect(INTEGER, "s").content, "big", signed=True)
    except ImasimError:
        return None
    if r < 0 or s < 0 or der(SEQUENCE, der_int(r) + der_int(s)) != sig:
        return None
    return r, s


def verify_ecdsa(key: EcKey, r: int, s: int, digest: bytes) -> bool:
    """ECDSA verification of a prehashed message (SEC 1 4.1.4)."""
    c = key.curve
    if not (0 < r < c.n and 0 < s < c.n):
        return False
    e = int.from_bytes(digest, "big")
    excess = 8 * len(digest) - c.n.bit_length()
    if excess > 0:
        e >>= excess
    w = pow(s, -1, c.n)
    pt = _double_mul(e * w % c.n, (c.gx, c.gy, 1), r * w % c.n, (key.x, key.y, 1), c)
    x, _, z = pt
    if z == 0:
        return False
    return x * pow(z * z, -1, c.p) % c.p % c.n == r
