"""verify_authenticode: the kernel's verdicts (verify_pefile_signature as kexec calls it)."""

from __future__ import annotations

import datetime
import struct

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import (
    DigestMismatchError,
    KeyNotFoundError,
    KeyRejectedError,
    LimitExceededError,
    ParseError,
    RevokedError,
    UnsignedError,
    UnsupportedAlgorithmError,
)
from imasim.keys import Blacklist, Keyring
from imasim.sig.authenticode import (
    AuthenticodeBuilder,
    SignMode,
    SpcIndirectDataContent,
    VerifyRules,
    WrapperRules,
    authenticode_digest,
    blacklist_hash,
    parse_authenticode,
    parse_certificate_table,
    parse_spc_indirect_data,
    sign_pe,
    strip_sig_wrapper,
    verify_authenticode,
)
from imasim.sig.pefile import parse_pe, pe_checksum
from pe.pe_support import cross_signed, make_pe, pki, ring, rsa_chain, unsigned

T = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)


def _sign(data: bytes | None = None, signer: str = "leaf", **kw: object) -> bytes:
    c = rsa_chain()
    extra = kw.pop("extra", [c["inter"].cert] if signer == "leaf" else [])
    return sign_pe(data if data is not None else unsigned(), key=c[signer].key,
                   certificate=c[signer].cert, signing_time=T,
                   extra_certificates=extra, **kw)  # type: ignore[arg-type]


def _dir(data: bytes) -> tuple[int, int, int]:
    img = parse_pe(data)
    d = img.certificate_directory
    assert d is not None
    return d.offset, d.virtual_address, d.size


def _root() -> Keyring:
    return ring(rsa_chain()["root"])


def test_signed_image_verifies_through_the_chain() -> None:
    signed = _sign()
    v = verify_authenticode(signed, keyrings=[_root()])
    assert "pe root CA" in v.signature.trusted_key.description
    assert v.digest == authenticode_digest(unsigned()) and v.digest_alg is H.SHA256
    assert v.keyring == ".secondary_trusted_keys"
    # trusted by the intermediate or the leaf itself, too
    verify_authenticode(signed, keyrings=[ring(rsa_chain()["inter"])])
    verify_authenticode(signed, keyrings=[ring(rsa_chain()["leaf"])])


def test_untrusted_and_unsigned() -> None:
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(_sign(), keyrings=[ring(rsa_chain()["stranger"])])
    with pytest.raises(UnsignedError):
        verify_authenticode(unsigned(), keyrings=[_root()])


def test_platform_keyring_only_on_enokey() -> None:
    secondary, platform = Keyring(".secondary_trusted_keys"), ring(rsa_chain()["root"],
                                                                   name=".platform")
    v = verify_authenticode(_sign(), keyrings=[secondary, platform])
    assert v.keyring == ".platform"
    # a key that matches but rejects the signature stops the search (-EKEYREJECTED)
    signed = bytearray(_sign(signer="direct"))
    tbl = parse_certificate_table(bytes(signed))[0]
    pos = tbl.offset + 8 + tbl.length - 8 - 20  # inside the RSA signature at the end
    signed[pos] ^= 1
    with pytest.raises(KeyRejectedError):
        verify_authenticode(bytes(signed), keyrings=[ring(rsa_chain()["root"]), platform])


# -- tampering: each gets the kernel's verdict ------------------------------------------
def test_tampered_section_byte() -> None:
    signed = bytearray(_sign())
    signed[0x500] ^= 0x40
    with pytest.raises(DigestMismatchError):
        verify_authenticode(bytes(signed), keyrings=[_root()])


def test_appended_data_after_the_table() -> None:
    # the kernel takes L - certs.size as the table's start: the window shifts
    with pytest.raises(DigestMismatchError):
        verify_authenticode(_sign() + b"appended", keyrings=[_root()])


def test_certificate_table_size_off_by_one() -> None:
    signed = _sign()
    off, _, size = _dir(signed)
    longer = bytearray(signed)
    struct.pack_into("<I", longer, off + 4, size + 1)  # past the end of the file
    with pytest.raises(ParseError) as exc:
        verify_authenticode(bytes(longer), keyrings=[_root()])
    assert exc.value.field == "certificate_table"
    shorter = bytearray(signed)
    struct.pack_into("<I", shorter, off + 4, size - 1)
    # dwLength still fits (sbsign pads the table, not dwLength), so the kernel goes on and
    # hashes the table's first byte as trailing data
    assert parse_certificate_table(signed)[0].length <= size - 1
    with pytest.raises(DigestMismatchError):
        verify_authenticode(bytes(shorter), keyrings=[_root()])
    # kernels before 6.3 insist on round_up(dwLength, 8) == size
    with pytest.raises(ParseError) as exc:
        verify_authenticode(bytes(shorter), keyrings=[_root()], wrapper=WrapperRules.STRICT)
    assert exc.value.field == "dwLength"


def test_dwlength_bigger_than_the_table() -> None:
    signed = bytearray(_sign())
    _, va, size = _dir(bytes(signed))
    struct.pack_into("<I", signed, va, size + 8)
    with pytest.raises(ParseError) as exc:
        verify_authenticode(bytes(signed), keyrings=[_root()])
    assert (exc.value.field, exc.value.offset) == ("dwLength", va)


def test_checksum_changed_is_ignored_by_the_kernel() -> None:
    signed = bytearray(_sign())
    img = parse_pe(bytes(signed))
    assert img.checksum == pe_checksum(bytes(signed), img.checksum_offset)  # set by signing
    struct.pack_into("<I", signed, img.checksum_offset, img.checksum ^ 0xFFFF)
    verify_authenticode(bytes(signed), keyrings=[_root()])


def test_second_signature_by_an_untrusted_key() -> None:
    stranger = rsa_chain()["stranger"]
    trusted_first = _sign()
    # another WIN_CERTIFICATE entry: new kernels ignore it, old ones refuse the table
    two = sign_pe(trusted_first, key=stranger.key, certificate=stranger.cert,
                  mode=SignMode.APPEND)
    assert len(parse_certificate_table(two)) == 2
    verify_authenticode(two, keyrings=[_root()])
    with pytest.raises(ParseError):
        verify_authenticode(two, keyrings=[_root()], wrapper=WrapperRules.STRICT)
    # nested (osslsigncode -nest): unsigned attributes are never interpreted
    nested = sign_pe(trusted_first, key=stranger.key, certificate=stranger.cert,
                     mode=SignMode.NEST)
    assert [(s.entry, s.nested) for s in parse_authenticode(nested)] == [(0, 0), (0, 1)]
    verify_authenticode(nested, keyrings=[_root()])
    verify_authenticode(nested, keyrings=[_root()], wrapper=WrapperRules.STRICT)
    # untrusted first, trusted second: the kernel looks at the first only, UEFI at all
    flipped = sign_pe(_sign(signer="stranger"), key=rsa_chain()["direct"].key,
                      certificate=rsa_chain()["direct"].cert, mode=SignMode.APPEND)
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(flipped, keyrings=[_root()])
    v = verify_authenticode(flipped, keyrings=[_root()], rules=VerifyRules.UEFI)
    assert v.entry == 1


def test_sbverify_is_laxer_embedded_issuer_that_does_not_chain() -> None:
    """The PKCS#7 carries the leaf and a certificate for the intermediate's key issued by
    a stranger. sbverify (OpenSSL, trusted store first) chains the leaf to the trusted
    intermediate from --cert and accepts; the kernel walks the embedded certificates,
    reaches the cross-signed one, finds no trusted key for it: -ENOKEY."""
    signed = _sign(extra=[cross_signed().cert])
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(signed, keyrings=[ring(rsa_chain()["inter"])])
    with pytest.raises(KeyNotFoundError):
        verify_authenticode(signed, keyrings=[_root()])
    # with the real intermediate embedded, both accept
    verify_authenticode(_sign(), keyrings=[ring(rsa_chain()["inter"])])


# -- wrapper, content and algorithms ----------------------------------------------------
def _with_entry_header(data: bytes, revision: int, ctype: int) -> bytes:
    b = bytearray(data)
    _, va, _ = _dir(data)
    struct.pack_into("<HH", b, va + 4, revision, ctype)
    return bytes(b)


def test_wrapper_revision_and_type() -> None:
    signed = _sign()
    with pytest.raises(UnsupportedAlgorithmError):
        verify_authenticode(_with_entry_header(signed, 0x0100, 2), keyrings=[_root()])
    with pytest.raises(UnsupportedAlgorithmError):
        verify_authenticode(_with_entry_header(signed, 0x0200, 1), keyrings=[_root()])


def test_strip_sig_wrapper_length_forms() -> None:
    signed = _sign()
    p7 = strip_sig_wrapper(signed)
    assert p7[:2] == b"\x30\x82" and len(p7) == int.from_bytes(p7[2:4], "big") + 4
    b = bytearray(signed)
    _, va, _ = _dir(signed)
    b[va + 9] = 0x83  # a 3-octet length: -EMSGSIZE
    with pytest.raises(LimitExceededError):
        strip_sig_wrapper(bytes(b))
    b[va + 8] = 0x31
    with pytest.raises(ParseError):
        strip_sig_wrapper(bytes(b))


def test_sha1_image_digest_is_refused_after_trust() -> None:
    signed = _sign(hash_alg=H.SHA1)
    assert parse_authenticode(signed)[0].indirect_data.digest_alg is H.SHA1
    with pytest.raises(UnsupportedAlgorithmError):
        verify_authenticode(signed, keyrings=[_root()])
    with pytest.raises(KeyNotFoundError):  # trust is decided first
        verify_authenticode(signed, keyrings=[ring(rsa_chain()["stranger"])])


@pytest.mark.parametrize("alg", [H.SHA256, H.SHA384, H.SHA512])
def test_digest_algorithms(alg: H) -> None:
    v = verify_authenticode(_sign(hash_alg=alg), keyrings=[_root()])
    assert v.digest_alg is alg and len(v.digest) == alg.digest_size


def test_ec_signer() -> None:
    leaf, root = pki()["leaf"], pki()["root"]
    signed = sign_pe(unsigned(), key=leaf.key, certificate=leaf.cert)
    verify_authenticode(signed, keyrings=[ring(root)])


def test_blacklisted_signer_and_image_hash() -> None:
    signed = _sign()
    bl = Blacklist()
    bl.add_tbs_hash(rsa_chain()["leaf"].as_key().tbs_hash() or b"")
    with pytest.raises(RevokedError):
        verify_authenticode(signed, keyrings=[_root()], blacklist=bl)
    # bin: hashes are not consulted by verify_pefile.c, but the firmware checks dbx
    dbx = Blacklist()
    assert blacklist_hash(signed) == "bin:" + authenticode_digest(unsigned()).hex()
    dbx.add_binary_hash(authenticode_digest(signed))
    verify_authenticode(signed, keyrings=[_root()], blacklist=dbx)
    with pytest.raises(RevokedError):
        verify_authenticode(signed, keyrings=[_root()], blacklist=dbx, rules=VerifyRules.UEFI)


def test_spc_indirect_data_round_trip() -> None:
    digest = authenticode_digest(unsigned())
    spc = SpcIndirectDataContent.create(digest)
    assert parse_spc_indirect_data(spc.to_bytes()) == spc
    assert spc.data_type == "1.3.6.1.4.1.311.2.1.15" and spc.digest == digest
    with pytest.raises(ParseError):
        parse_spc_indirect_data(spc.to_bytes() + b"\0")
    for n in range(len(spc.raw)):
        with pytest.raises(ParseError):
            parse_spc_indirect_data(spc.raw[:n])


def test_signing_updates_table_padding_and_checksum() -> None:
    odd = make_pe(trailing=b"abc")
    signed = _sign(odd)
    _, va, size = _dir(signed)
    assert va == len(odd) + 5 and va % 8 == 0  # the image padded to 8 first
    assert va + size == len(signed) and size % 8 == 0
    wc = parse_certificate_table(signed)[0]
    assert wc.length == 8 + len(strip_sig_wrapper(signed))  # dwLength not padded
    img = parse_pe(signed)
    assert img.checksum == pe_checksum(signed, img.checksum_offset)
    verify_authenticode(signed, keyrings=[_root()])
    with pytest.raises(Exception, match="already signed"):
        _sign(signed)
    again = _sign(signed, mode=SignMode.REPLACE)
    assert len(parse_certificate_table(again)) == 1


def test_builder_nests_and_appends() -> None:
    c = rsa_chain()
    b = (AuthenticodeBuilder().signing_time(T).add_signer(c["direct"].key, c["direct"].cert)
         .add_signer(c["direct"].key, c["direct"].cert, hash_alg=H.SHA512))
    nested = b.sign(unsigned())
    sigs = parse_authenticode(nested)
    assert [(s.nested, s.indirect_data.digest_alg) for s in sigs] == [(0, H.SHA256),
                                                                      (1, H.SHA512)]
    assert sigs[1].indirect_data.digest == authenticode_digest(unsigned(), H.SHA512)
    appended = AuthenticodeBuilder(append=True, signers=b.signers, time=T).sign(unsigned())
    assert [(s.entry, s.nested) for s in parse_authenticode(appended)] == [(0, 0), (1, 0)]
    for image in (nested, appended):
        verify_authenticode(image, keyrings=[_root()])
