"""Write seeds and hand-made nasty inputs to tests/corpus/<target>/ (replayed by the tests).

``python fuzz/make_corpus.py`` is deterministic; each nasty input's name says what is
wrong with it. Crashers the fuzzers find are saved next to these by fuzz/run.py.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from imasim.algorithms import HashAlgorithm as H  # noqa: E402
from imasim.ima import DigestWithAlgo, MeasurementEntry  # noqa: E402
from imasim.ima.policy import BUILTIN_POLICIES  # noqa: E402
from imasim.kexec import pack_kexec_buffer  # noqa: E402
from imasim.sig import parse_modsig, sign_module  # noqa: E402
from imasim.sig.xattr import sign_xattr  # noqa: E402
from imasim.tpm import SoftTpm  # noqa: E402
from pki import pki  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"


def put(target: str, name: str, data: bytes | str) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data.encode() if isinstance(data, str) else data)


def main() -> None:
    e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/bin/sh"])
    rec = e.to_bytes()
    put("list-binary", "valid-one-entry.bin", rec)
    huge = bytearray(rec)
    struct.pack_into("<I", huge, 24 + 4 + 6, 0xFFFFFFF0)
    put("list-binary", "data-len-4GiB.bin", bytes(huge))
    bad = bytearray(rec)
    struct.pack_into("<I", bad, 24, 0xFFFFFFFF)
    put("list-binary", "name-len-4GiB.bin", bytes(bad))
    put("list-binary", "truncated-header.bin", rec[:10])
    legacy = MeasurementEntry.create("ima", [bytes(20), "/x"]).to_bytes()
    big = bytearray(legacy)
    struct.pack_into("<I", big, 24 + 4 + 3 + 20, 0xFFFFFFFF)
    put("list-binary", "ima-name-len-4GiB.bin", bytes(big))
    field = bytearray(rec)
    struct.pack_into("<I", field, 24 + 4 + 6 + 4, 0x7FFFFFFF)
    put("list-binary", "field-len-overflow.bin", bytes(field))
    put("list-binary", "unknown-template.bin",
        struct.pack("<I", 10) + bytes(20) + struct.pack("<I", 5) + b"nope!" + struct.pack("<I", 0))
    put("list-stream", "data-len-4GiB.bin", bytes(huge))
    put("list-ascii", "short-line.txt", "10 abcd\n")
    put("list-ascii", "bad-hex.txt", "10 zz ima-ng sha256:00 /x\n")

    buf = pack_kexec_buffer([e, e])
    put("kexec-buffer", "valid.bin", buf)
    b2 = bytearray(buf)
    struct.pack_into("<Q", b2, 8, 1 << 63)
    put("kexec-buffer", "buffer-size-huge.bin", bytes(b2))
    b3 = bytearray(buf)
    struct.pack_into("<Q", b3, 16, (1 << 64) - 1)
    put("kexec-buffer", "count-max.bin", bytes(b3))
    put("kexec-buffer", "with-ima-template.bin", pack_kexec_buffer(
        [e, MeasurementEntry.create("ima", [bytes(20), "/x"]), e]))

    s = pki()["leaf"]
    signed = sign_module(b"module", key=s.key, certificate=s.cert, include_certificate=True)
    blob = parse_modsig(signed)[1].pkcs7
    put("pkcs7", "valid-with-cert.der", blob)
    put("pkcs7", "deep-nesting.der", b"\x30\x82\x0f\xa0" + b"\x30\x82\x0f\x9c" * 1000)
    put("pkcs7", "length-4GiB.der", b"\x30\x84\xff\xff\xff\xff\x06\x09")
    put("pkcs7", "indefinite.der", b"\x30\x80\x06\x09" + bytes(9) + b"\x00\x00")
    put("modsig", "valid.ko", signed)
    m = bytearray(signed)
    m[-32:-28] = b"\xff\xff\xff\xff"
    put("modsig", "sig-len-4GiB.ko", bytes(m))
    m = bytearray(signed)
    m[-40 + 2] = 1
    put("modsig", "id-type-x509.ko", bytes(m))
    sig = sign_xattr(H.SHA256.hash(b"f"), key=s.key, keyid=s.as_key().key_id_v2)
    put("xattr", "v2.bin", sig)
    put("xattr", "sig-size-mismatch.bin", sig[:7] + b"\xff\xff" + sig[9:])
    put("xattr", "hash-algo-200.bin", bytes([3, 2, 200]) + sig[3:])
    put("xattr", "digest-ng-short.bin", bytes([4, 4, 1, 2, 3]))

    tpm = SoftTpm()
    ak = tpm.create_ak("ecc", seed=b"corpus")
    q = tpm.quote(ak, {H.SHA256: [0, 10]}, b"n")
    put("tpm-attest", "valid.bin", q.attest)
    att = bytearray(q.attest)
    att[-37 - 5:-37 - 1] = b"\xff\xff\xff\xff"  # pcrSelections.count
    put("tpm-attest", "selection-count-huge.bin", bytes(att))
    put("tpm-signature", "valid.bin", q.signature)
    put("tpm-signature", "size-huge.bin", q.signature[:4] + b"\xff\xff" + q.signature[6:])
    put("tpm-public", "valid.bin", ak.tpm2b_public)
    put("tpm-public", "size-too-big.bin", b"\xff\xff" + ak.tpm2b_public[2:])

    put("ima-policy", "tcb.policy", BUILTIN_POLICIES["tcb"])
    put("ima-policy", "garbage-tokens.policy", "measure func=BPRM_CHECK =\x00= mask=^^MAY\n")
    put("ima-policy", "long-line.policy", "measure " + "fsmagic=1 " * 20000 + "\n")
    put("keyring-restriction", "chain.txt", "asymmetric:key_or_keyring:1234:chain")
    put("keyring-restriction", "bad.txt", "asymmetric:key_or_keyring:::::")


if __name__ == "__main__":
    main()
