"""Differential runs: mutate real signed inputs and compare imasim's verdict with the tool's.

``python fuzz/differential.py CHECK --mutants N [--seed S]`` (``--list`` names the
checks; ``all`` runs each). A mutant is an input with one to three random edits (bit
flips, byte sets, truncations, insertions, 32-bit length fields) in one chosen part; both
sides say accept or reject:

================  ==============================================  ===========================
check             imasim                                          reference tool
================  ==============================================  ===========================
modsig-openssl    ``verify_modsig`` (Debian modules, and modules  ``openssl cms -verify
                  signed by the kernel's ``sign-file``)           -binary -noverify`` on the
                                                                  extracted PKCS#7
pe-sbverify       ``verify_authenticode`` (images signed by       ``sbverify --cert``
                  ``sbsign``)
xattr-evmctl      ``verify_xattr`` (``evmctl ima_sign`` output)   ``evmctl ima_verify``
quote-checkquote  ``verify_quote`` (imasim's quotes)              ``tpm2_checkquote``
list-evmctl       ``match`` (real captures, a generated list)     ``evmctl ima_measurement``
================  ==============================================  ===========================

A disagreement is either explained (a documented difference where imasim follows the
kernel; :data:`EXPLANATIONS` gives the kernel source for each) or unexplained, which is a
bug. Any exception from imasim that is not an ``ImasimError`` is a crash. Unexplained
mutants are written to ``--save`` (default ``/tmp/imasim-differential``); the run exits
1 when there is one.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
VECTORS = TESTS / "vectors"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from imasim._der import Tlv, decode_oid, parse_tlv  # noqa: E402
from imasim.algorithms import HashAlgorithm as H  # noqa: E402
from imasim.errors import ImasimError  # noqa: E402

#: Known, intended differences: reason -> why imasim (like the kernel) differs from the tool.
EXPLANATIONS: dict[str, str] = {}

_SIGN_FILE_GLOB = "usr/lib/linux-kbuild-*/scripts/sign-file"


def tool(name: str) -> str | None:
    """The path of a reference tool, or None (the kernel's sign-file from linux-kbuild)."""
    path = shutil.which(name)
    if path is None and name == "sign-file":
        found = sorted(Path("/").glob(_SIGN_FILE_GLOB))
        path = str(found[-1]) if found else None
    return path


# -- mutation -----------------------------------------------------------------------------
def mutate(rng: random.Random, data: bytes, edits: int = 0) -> bytes:
    """One to three random edits of ``data`` (never returns ``data`` unchanged)."""
    out = bytearray(data)
    for _ in range(edits or rng.randint(1, 3)):
        n = len(out)
        op = rng.randrange(6)
        if op == 0 and n:
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            out[rng.randrange(n)] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x81, rng.randrange(256)))
        elif op == 2 and n:
            del out[rng.randrange(n):]
        elif op == 3 and n >= 4:
            i = rng.randrange(n - 3)
            v = rng.choice((0, 1, 0xFFFFFFFF, n, n - i, rng.randrange(1 << 32)))
            out[i:i + 4] = struct.pack(rng.choice(("<I", ">I")), v)
        elif op == 4 and n:
            i = rng.randrange(n)
            del out[i:i + rng.randint(1, 4)]
        else:
            i = rng.randrange(n + 1)
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    if bytes(out) == data:
        out.append(0)
    return bytes(out)


# -- bookkeeping --------------------------------------------------------------------------
@dataclass
class Tally:
    check: str
    tried: int = 0
    both_accept: int = 0
    both_reject: int = 0
    explained: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def agreements(self) -> int:
        return self.both_accept + self.both_reject

    def line(self) -> str:
        expl = ", ".join(f"{k}: {v}" for k, v in sorted(self.explained.items())) or "none"
        return (f"{self.check}: {self.tried} mutants, {self.agreements} agreements "
                f"({self.both_accept} both accept, {self.both_reject} both reject), "
                f"explained disagreements {sum(self.explained.values())} ({expl}), "
                f"unexplained {len(self.unexplained)}, {self.seconds:.0f} s")


@dataclass
class Case:
    """One mutant: what each side said, and the reason when they differ."""

    label: str
    ours: bool
    theirs: bool
    reason: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)


def _verdict(fn: Callable[[], object]) -> tuple[bool, ImasimError | None]:
    """(True, None) when imasim accepts, (False, error) when it raises an ImasimError;
    anything else propagates (a crash)."""
    try:
        fn()
    except ImasimError as exc:
        return False, exc
    return True, None


def _field(err: ImasimError | None) -> str | None:
    return getattr(err, "field", None)


def _message(err: ImasimError | None) -> str:
    return str(getattr(err, "message", err))


def _signed_data_items(pkcs7: bytes) -> list[Tlv]:
    """The SignedData SEQUENCE's elements (version, digestAlgorithms, contentInfo, ...)."""
    top = parse_tlv(pkcs7)
    return top.items(0, "ContentInfo")[1].items(0, "[0]")[0].items(0, "SignedData")


def _run(*cmd: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout,
                          check=False)


def _part(rng: random.Random, parts: list[tuple[str, float]]) -> str:
    names, weights = zip(*parts, strict=True)
    return rng.choices(names, weights)[0]


# -- modsig vs openssl cms ----------------------------------------------------------------
EXPLANATIONS["modsig: signed attributes"] = (
    "openssl cms accepts a module signature with authenticated attributes; the kernel "
    "refuses it for modules (crypto/asymmetric_keys/pkcs7_verify.c, pkcs7_verify(), "
    "VERIFYING_MODULE_SIGNATURE: 'Invalid module sig (has authattrs)', -EKEYREJECTED)")
EXPLANATIONS["pkcs7: digestAlgorithms ignored"] = (
    "the kernel never reads SignedData.digestAlgorithms (crypto/asymmetric_keys/pkcs7.asn1: "
    "DigestAlgorithmIdentifier only calls pkcs7_note_OID; the digest is the SignerInfo's), "
    "so an unknown or changed OID there does not matter; openssl cms digests the content "
    "with these entries and fails on one it does not know (CMS_R_UNKNOWN_DIGEST_ALGORITHM) "
    "or when the SignerInfo's digest is not among them")
EXPLANATIONS["pkcs7: content type not data/SpcIndirectDataContent"] = (
    "the kernel refuses an encapsulated content type other than data or "
    "SpcIndirectDataContent (crypto/asymmetric_keys/pkcs7_parser.c, pkcs7_note_content(): "
    "'Unsupported data type', -EINVAL; a module signature must be data, pkcs7_verify.c "
    "VERIFYING_MODULE_SIGNATURE, a PE signature SpcIndirectDataContent, "
    "VERIFYING_KEXEC_PE_SIGNATURE); openssl cms without signed attributes, and sbverify "
    "(openssl PKCS7_verify) never compare eContentType with anything")


def _module_inputs(tmp: Path) -> Iterator[tuple[str, bytes, bytes, x509.Certificate]]:
    """(label, payload, PKCS#7, signer certificate): Debian's modules, then sign-file's."""
    from imasim.sig import parse_modsig
    from pki import pki

    debian = VECTORS / "debian"
    build = x509.load_der_x509_certificate((debian / "debian-6.1.0-56-build-key.der").read_bytes())
    modules = sorted((debian / "modules").glob("*.ko"))
    for m in modules:
        payload, sig = parse_modsig(m.read_bytes())
        yield f"debian/{m.name}", payload, sig.pkcs7, build
    sign_file = tool("sign-file")
    if sign_file is None:
        return
    payload = parse_modsig(modules[0].read_bytes())[0]
    for name, flags, alg in (("rsa_leaf", [], "sha256"), ("rsa_leaf", ["-k"], "sha512"),
                             ("leaf", [], "sha256"), ("leaf", ["-k"], "sha384")):
        s = pki()[name]
        (tmp / "key.pem").write_bytes(s.key_pem)
        (tmp / "cert.der").write_bytes(s.der)
        mod = tmp / "m.ko"
        mod.write_bytes(payload)
        subprocess.run([sign_file, *flags, alg, str(tmp / "key.pem"), str(tmp / "cert.der"),
                        str(mod)], check=True, timeout=60, capture_output=True)
        _, sig = parse_modsig(mod.read_bytes())
        yield f"sign-file/{name}{''.join(flags)}-{alg}", payload, sig.pkcs7, s.cert


def _openssl_cms(openssl: str, tmp: Path, payload: bytes, pkcs7: bytes,
                 cert: x509.Certificate) -> bool:
    (tmp / "payload").write_bytes(payload)
    (tmp / "sig.p7").write_bytes(pkcs7)
    (tmp / "cert.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    res = _run(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp / "sig.p7",
               "-content", tmp / "payload", "-certfile", tmp / "cert.pem", "-noverify",
               "-out", "/dev/null")
    return res.returncode == 0


_KNOWN_DIGESTS = {"1.3.14.3.2.26", "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2",
                  "2.16.840.1.101.3.4.2.3", "2.16.840.1.101.3.4.2.4"}
#: pkcs7_sig_note_digest_algo (6.1): sha1, sha224..512, sm3, streebog256/512, sha3-256..512
_KERNEL_DIGESTS = _KNOWN_DIGESTS | {"1.2.156.10197.1.401", "1.2.643.7.1.1.2.2",
                                   "1.2.643.7.1.1.2.3", "2.16.840.1.101.3.4.2.8",
                                   "2.16.840.1.101.3.4.2.9", "2.16.840.1.101.3.4.2.10"}
#: pkcs7_sig_note_pkey_algo (6.1): rsaEncryption, ecdsa-with-sha1..512, SM2, GOST 2012
_KERNEL_PKEY_ALGOS = {"1.2.840.113549.1.1.1", "1.2.840.10045.4.1", "1.2.840.10045.4.3.1",
                      "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4",
                      "1.2.156.10197.1.501", "1.2.643.7.1.1.1.1", "1.2.643.7.1.1.1.2"}
EXPLANATIONS["pkcs7: SignerInfo digest algorithm unknown to the kernel"] = (
    "the kernel refuses the message when a SignerInfo names a digest it does not know "
    "(crypto/asymmetric_keys/pkcs7_parser.c, pkcs7_sig_note_digest_algo(): 'Unsupported "
    "digest algo', -ENOPKG); openssl cms without signed attributes digests the content "
    "with the SignedData.digestAlgorithms entries and never needs the SignerInfo's")
EXPLANATIONS["pkcs7: SignerInfo signature algorithm unknown to the kernel"] = (
    "the kernel refuses the message when a SignerInfo names a signature algorithm it does "
    "not know (pkcs7_parser.c, pkcs7_sig_note_pkey_algo(): 'Unsupported pkey algo', "
    "-ENOPKG); openssl cms takes the algorithm from the signer's public key")


def _signer_oids(pkcs7: bytes) -> list[tuple[str, str]]:
    """(digestAlgorithm, signatureAlgorithm) OIDs of each SignerInfo, read from the DER."""
    out = []
    for si in _signed_data_items(pkcs7)[-1].children():
        items = si.items(5, "SignerInfo")
        sig_alg = items[4] if items[3].tag == 0xA0 else items[3]
        out.append((decode_oid(items[2].items(1, "alg")[0]),
                    decode_oid(sig_alg.items(1, "alg")[0])))
    return out


EXPLANATIONS["pkcs7: issuer compared byte for byte"] = (
    "the kernel finds the signer's key by an id made of the serial number and the issuer "
    "Name's DER bytes (crypto/asymmetric_keys/pkcs7_parser.c, pkcs7_sig_note_issuer() and "
    "pkcs7_sig_note_serial() -> asymmetric_key_generate_id(); asymmetric_type.c, "
    "asymmetric_key_id_same(): memcmp), so an issuer whose letters changed case names no "
    "key, -ENOKEY; openssl cms matches the -certfile certificate with X509_NAME_cmp(), "
    "which compares canonical, case-folded names")
EXPLANATIONS["pkcs7: version fields"] = (
    "the kernel checks the SignedData and SignerInfo versions (crypto/asymmetric_keys/"
    "pkcs7_parser.c, pkcs7_note_signeddata_version(): 1 or 3, 'Unsupported SignedData "
    "version', -EINVAL; pkcs7_note_signerinfo_version(): 1 with issuerAndSerialNumber in "
    "a version 1 SignedData, 3 with a subjectKeyIdentifier otherwise, 'SignedData-"
    "SignerInfo version mismatch', -EBADMSG); openssl ignores both version fields")


def _versions_disagree(pkcs7: bytes) -> bool:
    """A SignerInfo version that pkcs7_note_signerinfo_version() refuses for the
    SignedData's version (1 goes with 1, 3 with 3)."""
    try:
        items = _signed_data_items(pkcs7)
        sd_version = int.from_bytes(items[0].content, "big")
        for si in items[-1].children():
            si_version = int.from_bytes(si.items(1, "SignerInfo")[0].content, "big")
            if si_version not in (1, 3) or (si_version == 1) != (sd_version == 1):
                return True
    except (ImasimError, IndexError):
        return False
    return False


def _kernel_parse_reason(err: ImasimError | None, pkcs7: bytes) -> str | None:
    """A PKCS#7 the kernel's parser refuses for a reason the tools do not check."""
    from imasim.errors import UnsupportedAlgorithmError

    if _field(err) == "contentType" and "content type" in _message(err):
        return "pkcs7: content type not data/SpcIndirectDataContent"
    if _field(err) in ("SignedData.version", "SignerInfo.version") or (
            _field(err) in ("subjectKeyIdentifier", "issuerAndSerialNumber")
            and _versions_disagree(pkcs7)):
        return "pkcs7: version fields"
    if isinstance(err, UnsupportedAlgorithmError):
        try:
            oids = _signer_oids(pkcs7)
        except (ImasimError, IndexError):
            oids = []
        if any(d not in _KERNEL_DIGESTS for d, _ in oids):
            return "pkcs7: SignerInfo digest algorithm unknown to the kernel"
        if any(a not in _KERNEL_PKEY_ALGOS for _, a in oids):
            return "pkcs7: SignerInfo signature algorithm unknown to the kernel"
    return None


def _digest_set_reason(pkcs7: bytes) -> str | None:
    """An accepted PKCS#7 whose SignedData.digestAlgorithms openssl cannot use."""
    try:
        algs = _signed_data_items(pkcs7)[1]
        oids = {decode_oid(a.items(0, "alg")[0]) for a in algs.children()}
        signer_digests = {d for d, _ in _signer_oids(pkcs7)}
    except (ImasimError, IndexError):
        return None
    if not oids <= _KNOWN_DIGESTS or not signer_digests <= oids:
        return "pkcs7: digestAlgorithms ignored"
    return None


def _issuer_case_only(pkcs7: bytes, cert: x509.Certificate) -> bool:
    """The first SignerInfo names the certificate's issuer up to the case of letters."""
    try:
        si = next(_signed_data_items(pkcs7)[-1].children()).items(2, "SignerInfo")
        issuer = si[1].items(2, "issuerAndSerialNumber")[0].raw
    except (ImasimError, IndexError, StopIteration):
        return False
    real = cert.issuer.public_bytes()
    return issuer != real and issuer.lower() == real.lower()


def _pkcs7_reason(ours: bool, theirs: bool, err: ImasimError | None,
                  pkcs7: bytes, cert: x509.Certificate) -> str | None:
    """Which documented difference explains a modsig disagreement, if any."""
    from imasim.errors import KeyNotFoundError
    from imasim.sig import parse_pkcs7

    if ours == theirs:
        return None
    if theirs and err is not None:
        reason = _kernel_parse_reason(err, pkcs7)
        if reason is not None:
            return reason
    if theirs and isinstance(err, KeyNotFoundError) and _issuer_case_only(pkcs7, cert):
        return "pkcs7: issuer compared byte for byte"
    if theirs and isinstance(err, ImasimError):
        try:
            if any(si.signed_attrs is not None for si in parse_pkcs7(pkcs7).signer_infos):
                return "modsig: signed attributes"
        except ImasimError:
            pass
    if ours and not theirs:
        return _digest_set_reason(pkcs7)
    return None


def check_modsig_openssl(rng: random.Random, n: int, tmp: Path) -> Iterator[Case]:
    from imasim.keys import Key, Keyring
    from imasim.sig import verify_modsig
    from imasim.sig.modsig import append_signature

    openssl = tool("openssl")
    assert openssl is not None
    inputs = list(_module_inputs(tmp))
    for i in range(n):
        label, payload, pkcs7, cert = inputs[i % len(inputs)]
        part = _part(rng, [("pkcs7", 0.85), ("payload", 0.1), ("none", 0.05)])
        if part == "pkcs7":
            pkcs7 = mutate(rng, pkcs7)
        elif part == "payload":
            payload = mutate(rng, payload, 1)
        ring = Keyring(".secondary_trusted_keys")
        ring.add(Key.from_certificate(cert.public_bytes(Encoding.DER)))
        module = append_signature(payload, pkcs7)
        ours, err = _verdict(lambda m=module, r=ring: verify_modsig(m, keyring=r))
        theirs = _openssl_cms(openssl, tmp, payload, pkcs7, cert)
        yield Case(f"{label} {part}", ours, theirs,
                   _pkcs7_reason(ours, theirs, err, pkcs7, cert),
                   {"module.ko": module, "sig.p7": pkcs7,
                    "cert.pem": cert.public_bytes(Encoding.PEM)})


# -- PE/COFF vs sbverify -------------------------------------------------------------------
def _pe_inputs(tmp: Path) -> tuple[list[tuple[str, bytes]], bytes]:
    """Images signed by sbsign (leaf + intermediate embedded), and the root's PEM (the
    stranger's PEM is left in ``tmp/stranger.pem``)."""
    from pe.make_pe import default_sections, make_pe
    from pe.pe_support import rsa_chain

    sbsign = tool("sbsign")
    assert sbsign is not None
    c = rsa_chain()
    (tmp / "leaf.key").write_bytes(c["leaf"].key_pem)
    (tmp / "leaf.pem").write_bytes(c["leaf"].pem)
    (tmp / "inter.pem").write_bytes(c["inter"].pem)
    (tmp / "stranger.pem").write_bytes(c["stranger"].pem)
    images = {"pe32plus": make_pe(sections=default_sections(2, 0x200)),
              "pe32-3-sections": make_pe(pe32=True, sections=default_sections(3, 0x300))}
    out = []
    for name, image in images.items():
        (tmp / "in.efi").write_bytes(image)
        subprocess.run([sbsign, "--key", str(tmp / "leaf.key"), "--cert", str(tmp / "leaf.pem"),
                        "--addcert", str(tmp / "inter.pem"), "--output", str(tmp / "out.efi"),
                        str(tmp / "in.efi")], check=True, capture_output=True, timeout=60)
        out.append((f"sbsign/{name}", (tmp / "out.efi").read_bytes()))
    return out, c["root"].pem


def _pe_mutant(rng: random.Random, image: bytes) -> tuple[str, bytes]:
    from imasim.sig.pefile import parse_pe

    img = parse_pe(image)
    d = img.certificate_directory
    assert d is not None
    va, size = d.virtual_address, d.size
    part = _part(rng, [("headers", 0.2), ("sections", 0.1), ("directory", 0.1),
                       ("win-certificate", 0.1), ("pkcs7", 0.4), ("append", 0.05),
                       ("truncate", 0.05)])
    if part == "headers":
        lo, hi = 0, img.size_of_headers
    elif part == "sections":
        lo, hi = img.size_of_headers, va
    elif part == "directory":
        lo, hi = d.offset, d.offset + 8
    elif part == "win-certificate":
        lo, hi = va, va + 8
    elif part == "pkcs7":
        lo, hi = va + 8, va + size
    elif part == "append":
        return part, image + bytes(rng.randrange(256) for _ in range(rng.choice((1, 8, 64))))
    else:
        return part, image[:rng.randrange(len(image))]
    if part in ("headers", "sections", "directory", "win-certificate"):
        chunk = bytearray(image[lo:hi])  # same length: offsets elsewhere stay right
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(chunk))
            chunk[i] = rng.choice((chunk[i] ^ (1 << rng.randrange(8)), 0, 0xFF,
                                   rng.randrange(256)))
        return part, image[:lo] + bytes(chunk) + image[hi:]
    return part, image[:lo] + mutate(rng, image[lo:hi]) + image[hi:]


def check_pe_sbverify(rng: random.Random, n: int, tmp: Path) -> Iterator[Case]:
    from imasim.keys import Key, Keyring
    from imasim.sig.authenticode import verify_authenticode

    sbverify = tool("sbverify")
    assert sbverify is not None
    images, root_pem = _pe_inputs(tmp)
    (tmp / "root.pem").write_bytes(root_pem)
    ring = Keyring(".secondary_trusted_keys")
    ring.add(Key.from_certificate(x509.load_pem_x509_certificate(root_pem)
                                  .public_bytes(Encoding.DER)))
    for i in range(n):
        label, image = images[i % len(images)]
        part, image = _pe_mutant(rng, image)
        ours, err = _verdict(lambda m=image: verify_authenticode(m, keyrings=[ring]))
        (tmp / "m.efi").write_bytes(image)
        res = _run(sbverify, "--cert", tmp / "root.pem", tmp / "m.efi")
        theirs = res.returncode == 0 and b"Signature verification OK" in res.stdout
        lax = False
        if theirs and not ours:  # would sbverify accept it from anybody?
            res2 = _run(sbverify, "--cert", tmp / "stranger.pem", tmp / "m.efi")
            lax = res2.returncode == 0 and b"Signature verification OK" in res2.stdout
        yield Case(f"{label} {part}", ours, theirs, _pe_reason(ours, theirs, err, lax, image),
                   {"image.efi": image, "root.pem": root_pem,
                    "sbverify.txt": res.stdout + res.stderr})


EXPLANATIONS["pe: certificate table past the end of the file"] = (
    "the kernel refuses a certificate table that does not lie inside the file "
    "(crypto/asymmetric_keys/verify_pefile.c, pefile_parse_binary(): chkaddr(header_size, "
    "sig_offset, sig_len), -ELIBBAD); sbverify 0.9.4 zero-extends the image up to the end "
    "of what the headers describe (sbsigntools src/image.c, image_load()) and verifies the "
    "first signature it finds there")
EXPLANATIONS["pe: dwLength past the table"] = (
    "the kernel refuses a WIN_CERTIFICATE whose dwLength exceeds the table "
    "(verify_pefile.c, pefile_strip_sig_wrapper(): 'Signature wrapper bigger than sig "
    "len', -ELIBBAD; before 6.3 round_up(dwLength, 8) had to equal it); sbverify reads "
    "the PKCS#7 by its own DER length and does not check dwLength against the table")


EXPLANATIONS["pe: sbverify accepts an issuer it cannot chain"] = (
    "a damaged or re-issued embedded intermediate certificate: the kernel verifies each "
    "link of the chain and needs a trusted key for one of them (crypto/asymmetric_keys/"
    "pkcs7_verify.c, pkcs7_verify_sig_chain(), -EKEYREJECTED; pkcs7_trust.c, "
    "pkcs7_validate_one_trust(), -ENOKEY); sbverify 0.9.4 accepts such a signature "
    "whatever --cert it is given (docs/pe.md, 'Where sbverify is laxer than the kernel'): "
    "counted only when sbverify also accepts the mutant with an unrelated certificate")


EXPLANATIONS["pe: SpcIndirectDataContent tag"] = (
    "the kernel takes the encapsulated content as ANY (crypto/asymmetric_keys/pkcs7.asn1, "
    "'Data ::= ANY ({ pkcs7_note_data })'), hashes only its contents octets "
    "(pkcs7_verify.c, pkcs7_digest()) and decodes those as SpcIndirectDataContent "
    "(mscode_parser.c, mscode_parse()), so the tag is neither signed nor checked; "
    "sbverify decodes the content with its own SEQUENCE template (sbsigntools src/idc.c, "
    "'Unable to get IDC from PKCS7')")


def _content_tag(image: bytes) -> int | None:
    """The tag of the first signature's encapsulated content (SEQUENCE, 0x30, normally)."""
    from imasim.sig.authenticode import strip_sig_wrapper

    try:
        encap = _signed_data_items(strip_sig_wrapper(image))[2].items(2, "encap")
        return encap[1].items(1, "[0]")[0].tag
    except (ImasimError, IndexError):
        return None


def _pe_reason(ours: bool, theirs: bool, err: ImasimError | None,
               lax: bool, image: bytes) -> str | None:
    from imasim.errors import KeyNotFoundError, KeyRejectedError, TruncatedError
    from imasim.sig.authenticode import strip_sig_wrapper

    if ours and not theirs:
        if _content_tag(image) not in (None, 0x30):
            return "pe: SpcIndirectDataContent tag"
        try:
            return _digest_set_reason(strip_sig_wrapper(image))
        except ImasimError:
            return None
    if ours == theirs or not theirs or err is None:
        return None
    if lax and isinstance(err, KeyNotFoundError | KeyRejectedError):
        return "pe: sbverify accepts an issuer it cannot chain"
    try:
        reason = _kernel_parse_reason(err, strip_sig_wrapper(image))
    except ImasimError:
        reason = None
    if reason is not None:
        return reason
    if _field(err) == "certificate_table" and isinstance(err, TruncatedError):
        return "pe: certificate table past the end of the file"
    if _field(err) == "dwLength" and "bigger than the table" in _message(err):
        return "pe: dwLength past the table"
    return None


# -- security.ima vs evmctl ima_verify -------------------------------------------------------
def _xattr_inputs(tmp: Path) -> list[tuple[str, bytes, bytes, x509.Certificate]]:
    """(label, file contents, evmctl ima_sign signature, signer certificate)."""
    from pki import pki

    evmctl = tool("evmctl")
    assert evmctl is not None
    out = []
    for name, alg in (("rsa_leaf", "sha256"), ("leaf", "sha256"), ("rsa_leaf", "sha512"),
                      ("leaf", "sha1")):
        s = pki()[name]
        (tmp / "key.pem").write_bytes(s.key_pem)
        f = tmp / "file"
        contents = f"contents signed by {name} with {alg}\n".encode()
        f.write_bytes(contents)
        subprocess.run([evmctl, "ima_sign", "--key", str(tmp / "key.pem"), "-a", alg,
                        "--sigfile", str(f)], check=True, capture_output=True, timeout=60)
        out.append((f"evmctl/{name}-{alg}", contents, (tmp / "file.sig").read_bytes(), s.cert))
    return out


def _ima_verdict(sig: bytes, contents: bytes, ring: object) -> None:
    """What IMA appraisal does with a signature: the file hashed with the signature's
    algorithm (ima_get_hash_algo), then asymmetric_verify."""
    from imasim.sig.xattr import parse_xattr, verify_xattr

    value = parse_xattr(sig)
    alg = value.hash_algo or H.SHA1
    verify_xattr(value, alg.hash(contents), keyring=ring)  # type: ignore[arg-type]


def check_xattr_evmctl(rng: random.Random, n: int, tmp: Path) -> Iterator[Case]:
    from imasim.keys import Key, Keyring

    evmctl = tool("evmctl")
    assert evmctl is not None
    inputs = _xattr_inputs(tmp)
    for i in range(n):
        label, contents, sig, cert = inputs[i % len(inputs)]
        part = _part(rng, [("header", 0.35), ("signature", 0.45), ("file", 0.1),
                           ("none", 0.1)])
        if part == "header":
            sig = mutate(rng, sig[:9], 1) + sig[9:]
        elif part == "signature":
            sig = sig[:9] + mutate(rng, sig[9:])
        elif part == "file":
            contents = mutate(rng, contents, 1)
        ring = Keyring(".ima")
        der = cert.public_bytes(Encoding.DER)
        ring.add(Key.from_certificate(der))
        ours, err = _verdict(lambda s=sig, c=contents, r=ring: _ima_verdict(s, c, r))
        (tmp / "f").write_bytes(contents)
        (tmp / "f.sig").write_bytes(sig)
        (tmp / "cert.der").write_bytes(der)
        res = _run(evmctl, "ima_verify", "--key", tmp / "cert.der", "--sigfile", tmp / "f")
        theirs = res.returncode == 0
        yield Case(f"{label} {part}", ours, theirs, _xattr_reason(ours, theirs, err, sig),
                   {"file": contents, "file.sig": sig, "cert.der": der,
                    "evmctl.txt": res.stdout + res.stderr})


EXPLANATIONS["xattr: sig_size"] = (
    "the kernel requires the header's sig_size to equal the bytes after the header "
    "(security/integrity/digsig_asymmetric.c, asymmetric_verify(): 'if (siglen != "
    "be16_to_cpu(hdr->sig_size)) return -EBADMSG'); evmctl 1.4 ima_verify ignores sig_size "
    "and verifies whatever follows the header")


def _xattr_reason(ours: bool, theirs: bool, err: ImasimError | None,
                  sig: bytes) -> str | None:
    if ours == theirs:
        return None
    if theirs and err is not None and _field(err) == "sig_size":
        return "xattr: sig_size"
    return None


# -- quotes vs tpm2_checkquote ------------------------------------------------------------
def check_quote_checkquote(rng: random.Random, n: int, tmp: Path) -> Iterator[Case]:
    from imasim.tpm import SoftTpm, verify_quote, write_pcr_file
    from imasim.tpm.verify import read_pcr_file

    checkquote = tool("tpm2_checkquote")
    assert checkquote is not None
    nonce = bytes.fromhex("00112233445566778899")
    tpm = SoftTpm((H.SHA1, H.SHA256))
    for i in range(3):
        tpm.extend(10, {a: a.hash(bytes([i])) for a in tpm.banks})
    quotes = []
    for kind in ("rsa", "ecc"):
        ak = tpm.create_ak(kind, seed=kind.encode())  # type: ignore[arg-type]
        for bank, pcrs in ((H.SHA256, [0, 7, 10]), (H.SHA1, [10]), (H.SHA256, list(range(24)))):
            q = tpm.quote(ak, {bank: pcrs}, nonce)
            pcr_file = write_pcr_file(q.selection, [v for _, _, v in q.pcr_values])
            quotes.append((f"{kind}-{bank.kernel_name}-{len(pcrs)}", ak.public_pem, q.attest,
                           q.signature, pcr_file))
    for i in range(n):
        label, pem, attest, sig, pcr_file = quotes[i % len(quotes)]
        q_nonce = nonce
        part = _part(rng, [("attest", 0.45), ("signature", 0.25), ("pcr-file", 0.2),
                           ("nonce", 0.05), ("none", 0.05)])
        if part == "attest":
            attest = mutate(rng, attest)
        elif part == "signature":
            sig = mutate(rng, sig)
        elif part == "pcr-file":
            pcr_file = mutate(rng, pcr_file, 1)
        elif part == "nonce":
            q_nonce = mutate(rng, nonce, 1)

        def ours_fn(a: bytes = attest, s: bytes = sig, p: bytes = pcr_file,
                    k: bytes = pem, q: bytes = q_nonce) -> object:
            return verify_quote(a, s, k, nonce=q, pcrs=read_pcr_file(p))

        ours, err = _verdict(ours_fn)
        files = {"ak.pem": pem, "q.msg": attest, "q.sig": sig, "q.pcrs": pcr_file}
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        res = _run(checkquote, "-u", tmp / "ak.pem", "-m", tmp / "q.msg", "-s", tmp / "q.sig",
                   "-f", tmp / "q.pcrs", "-g", "sha256", "-q", q_nonce.hex())
        theirs = res.returncode == 0
        yield Case(f"{label} {part}", ours, theirs,
                   _quote_reason(ours, theirs, err, attest, pcr_file),
                   {**files, "nonce": q_nonce, "checkquote.txt": res.stdout + res.stderr})


EXPLANATIONS["quote: PCR file selection differs from the quote's"] = (
    "no kernel involved: the PCR file's own TPML_PCR_SELECTION (bank ids, sizeofSelect, "
    "bitmaps) no longer matches the selection the TPM signed in TPMS_ATTEST; "
    "tpm2_checkquote 5.4 only hashes the file's digests in order and never compares the "
    "two selections, so it accepts values labelled with a bank or PCR they do not belong "
    "to (CVE-2024-29039); tpm2-tools 5.7 added compare_pcr_selection() "
    "(tools/misc/tpm2_checkquote.c, commit 98599df9) and imasim refuses such a file as it "
    "does")


EXPLANATIONS["quote: PCR file digest counts"] = (
    "no kernel involved: a TPML_DIGEST holds at most 8 digests of at most sizeof(TPMU_HA) "
    "= 64 bytes (TPM 2.0 Part 2); tpm2_checkquote 5.4 never checks either and reads past "
    "the arrays (tpm2-tools lib/tpm2_openssl.c, tpm2_openssl_hash_pcr_banks()); 5.8 "
    "refuses such a file (commit 14b9445b, 'Add size checks for PCR desearialization'), "
    "and so does imasim")


def _quote_reason(ours: bool, theirs: bool, err: ImasimError | None, attest: bytes,
                  pcr_file: bytes) -> str | None:
    from imasim.tpm import parse_attest, write_pcr_file

    if ours == theirs or not theirs:
        return None
    try:
        quoted = write_pcr_file(parse_attest(attest).pcr_select, [])
    except ImasimError:
        return None
    selection = 4 + 16 * 8  # TPML_PCR_SELECTION as tpm2-tools writes it
    if pcr_file[:selection] != quoted[:selection]:
        return "quote: PCR file selection differs from the quote's"
    if _field(err) in ("TPML_DIGEST.count", "digest blocks", "digests", "TPM2B_DIGEST.size"):
        return "quote: PCR file digest counts"
    return None


# -- measurement lists vs evmctl ima_measurement -----------------------------------------
def _list_inputs() -> list[tuple[str, bytes, dict[H, dict[int, bytes]]]]:
    from imasim.ima import DigestWithAlgo, MeasurementEntry, MeasurementList
    from imasim.ima.replay import replay
    from realdata import stages

    out = []
    for st in stages():
        entries = st.entries()
        names = {e.template_name for e in entries}
        if "ima" in names and len(names) > 1:
            continue  # evmctl refuses mixed lists (documented in docs/security.md)
        if len(st.binary) > 256 * 1024:
            continue
        pcrs = {a: dict(v) for a, v in st.pcrs().items() if a in (H.SHA1, H.SHA256)}
        out.append((f"real/{st.id}", st.binary, pcrs))
    gen = [MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", H.SHA256.hash(b"agg")),
                                              "boot_aggregate"])]
    for i in range(30):
        gen.append(MeasurementEntry.create(
            "ima-sig" if i % 3 else "ima-ng",
            [DigestWithAlgo("sha256", H.SHA256.hash(str(i).encode())), f"/usr/bin/p{i}"]
            + ([None] if i % 3 else []), violation=(i == 7)))
    lst = MeasurementList(gen)
    pcrs = {a: dict(v) for a, v in replay(lst, banks=(H.SHA1, H.SHA256)).pcrs.items()}
    out.append(("generated", lst.to_bytes(), pcrs))
    return out


def _pcr_text(alg: H, values: dict[int, bytes]) -> str:
    return "".join(f"PCR-{i:02d} {values.get(i, alg.zero).hex()}\n" for i in range(24))


def check_list_evmctl(rng: random.Random, n: int, tmp: Path) -> Iterator[Case]:
    from imasim.ima import parse_measurement_list
    from imasim.ima.replay import MatchStatus, match

    evmctl = tool("evmctl")
    assert evmctl is not None
    inputs = _list_inputs()
    for i in range(n):
        label, data, pcrs = inputs[i % len(inputs)]
        part = _part(rng, [("list", 0.9), ("none", 0.1)])
        if part == "list":
            data = mutate(rng, data, 1)

        def ours_fn(d: bytes = data, p: dict[H, dict[int, bytes]] = pcrs) -> object:
            result = match(parse_measurement_list(d), p)
            if result.status is not MatchStatus.MATCH:
                raise ImasimError(f"replay: {result.status.value}")
            if result.bad_digests:
                raise ImasimError(f"template digests differ: entries {result.bad_digests}")
            return result

        ours, err = _verdict(ours_fn)
        (tmp / "list").write_bytes(data)
        args: list[str | Path] = [evmctl, "ima_measurement", "--ignore-violations"]
        for alg, values in pcrs.items():
            f = tmp / f"pcrs-{alg.kernel_name}"
            f.write_text(_pcr_text(alg, values))
            args += ["--pcrs", f"{alg.kernel_name},{f}"]
        res = _run(*args, tmp / "list")
        theirs = res.returncode == 0
        yield Case(f"{label} {part}", ours, theirs, _list_reason(ours, theirs, err, data),
                   {"list": data, **{f"pcrs-{a.kernel_name}": _pcr_text(a, v).encode()
                                     for a, v in pcrs.items()},
                    "evmctl.txt": res.stdout + res.stderr})


EXPLANATIONS["list: unknown template"] = (
    "a template name that is neither a known template nor a format of known field ids "
    "cannot be read: the kernel's reader of lists, the kexec restore, refuses it "
    "(security/integrity/ima/ima_template.c, ima_restore_measurement_list(): "
    "lookup_template_desc(), then restore_template_fmt() -> template_desc_init_fields() "
    "fails, 'restore_template_fmt: template_desc_init_fields failed'); evmctl "
    "ima_measurement replays the stored digest of any name (the name is not hashed)")
EXPLANATIONS["list: template fields do not parse"] = (
    "template data that does not split into the template's fields (a field length past "
    "the data, a legacy 'ima' name length past the entry): the kexec restore refuses it "
    "(ima_template.c, ima_restore_template_data() -> ima_parse_buf() with ENFORCE_BUFEND "
    "and ENFORCE_FIELDS, 'Restoring the template field failed'); evmctl only warns "
    "('contains unprocessed data') and replays the stored digests")


EXPLANATIONS["list: partial record at the end"] = (
    "bytes after the last whole record: securityfs only ever writes whole records "
    "(security/integrity/ima/ima_fs.c, ima_measurements_show()), and the kernel's reader "
    "parses the last record with ENFORCE_BUFEND (ima_template.c, "
    "ima_restore_measurement_list(): a partial or extra record fails, -EINVAL); evmctl "
    "ima_measurement stops at the first short read and replays what came before")


def _list_reason(ours: bool, theirs: bool, err: ImasimError | None,
                 data: bytes) -> str | None:
    from imasim.errors import TruncatedError, UnknownTemplateError

    if ours == theirs:
        return None
    if theirs and isinstance(err, TruncatedError):
        return "list: partial record at the end"
    if theirs and isinstance(err, UnknownTemplateError):
        return "list: unknown template"
    if theirs and err is not None and _field(err) in (
            "field_len", "template_data", "ima_digest", "ima_name_len"):
        return "list: template fields do not parse"
    return None


CHECKS: dict[str, tuple[Callable[[random.Random, int, Path], Iterator[Case]], str]] = {
    "modsig-openssl": (check_modsig_openssl, "openssl"),
    "pe-sbverify": (check_pe_sbverify, "sbverify"),
    "xattr-evmctl": (check_xattr_evmctl, "evmctl"),
    "quote-checkquote": (check_quote_checkquote, "tpm2_checkquote"),
    "list-evmctl": (check_list_evmctl, "evmctl"),
}


#: tools a check needs besides the one it compares with (sign-file is optional)
_ALSO_NEEDS: dict[str, tuple[str, ...]] = {"pe-sbverify": ("sbsign",),
                                          "xattr-evmctl": ("evmctl",)}


def run_check(name: str, mutants: int, seed: int, save: Path | None = None,
              log: Callable[[str], None] | None = None) -> Tally:
    fn, needs = CHECKS[name]
    tally = Tally(name)
    rng = random.Random(f"{name}:{seed}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"imasim-{name}-") as d:
        for case in fn(rng, mutants, Path(d)):
            tally.tried += 1
            if case.ours == case.theirs:
                if case.ours:
                    tally.both_accept += 1
                else:
                    tally.both_reject += 1
            elif case.reason is not None:
                assert case.reason in EXPLANATIONS, case.reason
                tally.explained[case.reason] += 1
            else:
                digest = hashlib.sha256(b"".join(case.files.values())).hexdigest()[:12]
                what = (f"{case.label}: imasim {'accepts' if case.ours else 'rejects'}, "
                        f"{needs} {'accepts' if case.theirs else 'rejects'} [{digest}]")
                tally.unexplained.append(what)
                if log:
                    log("UNEXPLAINED " + what)
                if save is not None:
                    out = save / name / digest
                    out.mkdir(parents=True, exist_ok=True)
                    for fname, data in case.files.items():
                        (out / fname).write_bytes(data)
    tally.seconds = time.monotonic() - t0
    return tally


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", nargs="?", help="check name, or 'all'")
    ap.add_argument("--mutants", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=Path(tempfile.gettempdir())
                    / "imasim-differential")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list or not args.check:
        for name, (_, needs) in CHECKS.items():
            print(f"{name} ({needs})")
        return 0
    names = list(CHECKS) if args.check == "all" else [args.check]
    rc = 0
    for name in names:
        missing = [t for t in (CHECKS[name][1], *_ALSO_NEEDS.get(name, ())) if tool(t) is None]
        if missing:
            print(f"{name}: skipped, {', '.join(missing)} not installed")
            continue
        tally = run_check(name, args.mutants, args.seed, args.save, log=print)
        print(tally.line(), flush=True)
        rc |= bool(tally.unexplained)
    return rc


if __name__ == "__main__":
    sys.exit(main())
