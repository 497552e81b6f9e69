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
from imasim.sig.authenticode import (  # noqa: E402
    AuthenticodeBuilder,
    SignMode,
    SpcIndirectDataContent,
    parse_authenticode,
    parse_certificate_table,
    sign_pe,
)
from imasim.sig.pefile import parse_pe  # noqa: E402
from imasim.sig.xattr import sign_xattr  # noqa: E402
from imasim.tpm import SoftTpm  # noqa: E402
from imasim.tpm.soft_tpm import Quote  # noqa: E402
from imasim.tpm.verify import write_pcr_file  # noqa: E402
from pe.make_pe import default_sections, make_pe  # noqa: E402
from pki import pki  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
DEBIAN_PE = ROOT / "tests" / "vectors" / "pe" / "debian"


def put(target: str, name: str, data: bytes | str) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data.encode() if isinstance(data, str) else data)


def _pcr_files(tpm: SoftTpm, q: Quote) -> None:
    """PCR files in every form tpm2-tools writes, signatures in both, pcrread YAML."""
    vals = [v for _, _, v in q.pcr_values]
    ser = write_pcr_file(q.selection, vals)
    put("tpm-pcr-file", "serialized.bin", ser)
    put("tpm-pcr-file", "selection-count-huge.bin", b"\xff\xff\xff\xff" + ser[4:])
    put("tpm-pcr-file", "sizeofselect-255.bin", ser[:6] + b"\xff" + ser[7:])
    put("tpm-pcr-file", "blocks-count-huge.bin", ser[:132] + b"\xff\xff\xff\x7f" + ser[136:])
    put("tpm-pcr-file", "digest-count-9.bin", ser[:136] + b"\x09\0\0\0" + ser[140:])
    put("tpm-pcr-file", "digest-size-65535.bin", ser[:140] + b"\xff\xff" + ser[142:])
    put("tpm-pcr-file", "truncated.bin", ser[:150])
    marshaled = (q.selection.to_bytes() + struct.pack(">I", 1) + struct.pack(">I", len(vals))
                 + b"".join(struct.pack(">H", len(v)) + v for v in vals))
    put("tpm-pcr-file", "marshaled.bin", marshaled)
    put("tpm-pcr-file", "marshaled-size-huge.bin", marshaled[:-34] + b"\xff\xff" + marshaled[-32:])
    put("tpm-pcr-values", "values.bin", b"".join(tpm.read(a, i) for a, i in
                                                 ((H.SHA256, 0), (H.SHA256, 1), (H.SHA256, 10),
                                                  (H.SHA1, 0))))
    put("tpm-pcr-values", "short.bin", bytes(50))
    put("tpm-quote-signature", "plain-rsa.bin", bytes(range(256)))
    put("tpm-quote-signature", "plain-too-big.bin", bytes(1025))
    put("tpm-quote-signature", "tss-null.bin", b"\x00\x10\x00\x0b")
    put("tpm-quote-signature", "tss-hmac.bin", b"\x00\x05\x00\x0b" + bytes(32))
    put("tpm-quote-signature", "tss-unknown-hash.bin", b"\x00\x14\x12\x34\x00\x01\x00")
    yaml = "".join(f"  {a.kernel_name}:\n" + "".join(
        f"    {i:<2}: 0x{tpm.read(a, i).hex().upper()}\n" for i in (0, 10)) for a in tpm.banks)
    put("pcrread-yaml", "pcrread.yaml", yaml)
    put("pcrread-yaml", "quote-output.yaml", "quoted: ff54\nsignature:\n  alg: ecdsa\npcrs:\n"
        + yaml + "calcDigest: 00\n")
    put("pcrread-yaml", "short-value.yaml", "  sha256:\n    0 : 0x00\n")
    put("pcrread-yaml", "bad-utf8.yaml", b"  sha256:\n    0 : 0x\xff\xfe\n")
    put("pcrread-yaml", "value-before-bank.yaml", "    0 : 0x00\n")
    put("pcr-list", "list.txt", "sha256:0,1,0x0a+sha1:all+sha384:none")
    put("pcr-list", "many-banks.txt", "+".join(["sha256:0"] * 40))
    put("pcr-list", "bad-index.txt", "sha256:0,99,1_0,09")


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
    _pcr_files(tpm, q)

    put("ima-policy", "tcb.policy", BUILTIN_POLICIES["tcb"])
    put("ima-policy", "garbage-tokens.policy", "measure func=BPRM_CHECK =\x00= mask=^^MAY\n")
    put("ima-policy", "long-line.policy", "measure " + "fsmagic=1 " * 20000 + "\n")
    put("keyring-restriction", "chain.txt", "asymmetric:key_or_keyring:1234:chain")
    put("keyring-restriction", "bad.txt", "asymmetric:key_or_keyring:::::")

    pe_corpus()


def _with_table(image: bytes, table: bytes) -> bytes:
    """``image`` (unsigned) with ``table`` appended as its certificate table."""
    img = parse_pe(image)
    d = img.certificate_directory
    assert d is not None
    body = bytearray(image) + bytes(-len(image) % 8)
    body[d.offset:d.offset + 8] = struct.pack("<II", len(body), len(table))
    return bytes(body + table)


def pe_corpus() -> None:
    """PE/COFF seeds (small generated images, signed deterministically with RSA; a real
    Debian signature moved onto a small image) and nasty headers."""
    import datetime

    t = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)
    p = pki()
    rsa, root = p["rsa_leaf"], p["root"]
    small = make_pe(sections=default_sections(2, 0x200))
    put("pe-parse", "unsigned.efi", small)
    put("pe-parse", "unsigned-pe32-3-sections.efi",
        make_pe(pe32=True, sections=default_sections(3, 0x200)))
    signed = sign_pe(small, key=rsa.key, certificate=rsa.cert, signing_time=t)
    put("pe-parse", "signed-rsa.efi", signed)
    put("pe-parse", "signed-sha384-trailing.efi",
        sign_pe(make_pe(sections=default_sections(1, 0x200), trailing=b"overlay!"),
                key=rsa.key, certificate=rsa.cert, hash_alg=H.SHA384, signing_time=t))
    put("pe-parse", "signed-append.efi",
        sign_pe(signed, key=rsa.key, certificate=rsa.cert, mode=SignMode.APPEND,
                signing_time=t, extra_certificates=[root.cert]))
    put("pe-parse", "signed-nested.efi",
        AuthenticodeBuilder().signing_time(t).add_signer(rsa.key, rsa.cert)
        .add_signer(rsa.key, rsa.cert, hash_alg=H.SHA512).sign(small))
    grub = DEBIAN_PE / "grubx64.efi.signed"
    if grub.exists():  # tests/pe/fetch_debian_images.sh
        entry = parse_certificate_table(grub.read_bytes())[0]
        put("pe-parse", "debian-grub-signature-on-small-image.efi",
            _with_table(small, entry.to_bytes() + bytes(-entry.length % 8)))
        sig = parse_authenticode(grub.read_bytes())[0]
        put("spc-indirect-data", "debian-grub.der", sig.indirect_data.raw)
    for alg in (H.SHA256, H.SHA1, H.SHA512):
        put("spc-indirect-data", f"{alg.kernel_name}.der",
            SpcIndirectDataContent.create(alg.hash(b"image"), alg).raw)
    spc = SpcIndirectDataContent.create(bytes(32)).raw
    put("spc-indirect-data", "length-4GiB.der", b"\x30\x84\xff\xff\xff\xff" + spc[2:])
    put("spc-indirect-data", "trailing-byte.der", spc + b"\x00")

    # nasty headers: offsets below are those of make_pe's PE32+ layout (e_lfanew 0x80)
    opt = 0x80 + 24
    sec = opt + 112 + 16 * 8
    certdir = opt + 112 + 4 * 8

    def patched(base: bytes, at: int, fmt: str, *v: int) -> bytes:
        b = bytearray(base)
        struct.pack_into(fmt, b, at, *v)
        return bytes(b)

    put("pe-parse", "e-lfanew-4GiB.efi", patched(small, 0x3C, "<I", 0xFFFFFFF0))
    put("pe-parse", "sections-65535.efi", patched(small, 0x80 + 6, "<H", 0xFFFF))
    put("pe-parse", "size-of-headers-0.efi", patched(small, opt + 60, "<I", 0))
    put("pe-parse", "rva-and-sizes-4GiB.efi", patched(small, opt + 108, "<I", 0xFFFFFFFF))
    put("pe-parse", "rva-and-sizes-4.efi", patched(small, opt + 108, "<I", 4))
    put("pe-parse", "section-raw-beyond-file.efi",
        patched(small, sec + 16, "<II", 0x7FFFFFFF, 0x7FFFFFFF))
    put("pe-parse", "sections-overlap.efi", patched(small, sec + 40 + 20, "<I", 0x400))
    n = len(signed)
    va = struct.unpack_from("<I", signed, certdir)[0]
    put("pe-parse", "cert-table-size-4GiB.efi", patched(signed, certdir + 4, "<I", 0xFFFFFFFF))
    put("pe-parse", "cert-table-in-headers.efi", patched(signed, certdir, "<I", 0x10))
    put("pe-parse", "dwlength-4GiB.efi", patched(signed, va, "<I", 0xFFFFFFFF))
    put("pe-parse", "dwlength-7.efi", patched(signed, va, "<I", 7))
    put("pe-parse", "pkcs7-length-4-octets.efi", patched(signed, va + 9, "<B", 0x84))
    put("pe-parse", "pkcs7-indefinite.efi", patched(signed, va + 9, "<B", 0x80))
    put("pe-parse", "wrong-revision.efi", patched(signed, va + 4, "<H", 0x100))
    put("pe-parse", "truncated-in-table.efi", signed[:n - 100])


def eventlog_corpus() -> None:
    """Seeds of every event kind (a simulated OVMF log) and logs with lying length fields."""
    from dataclasses import replace

    from imasim.eventlog import EventLog, EventType
    from imasim.eventlog.simulate import BootImage, UefiBoot, ovmf_log, seabios_log
    from imasim.eventlog.uefi import EFI_GLOBAL_VARIABLE, VariableData

    banks = [H.SHA1, H.SHA256]
    pki_certs = [pki()["root"].der]

    def patched(base: bytes, at: int, fmt: str, *v: int) -> bytes:
        b = bytearray(base)
        struct.pack_into(fmt, b, at, *v)
        return bytes(b)

    good = ovmf_log(banks, UefiBoot(secure_boot=True, pk=tuple(pki_certs), db=tuple(pki_certs),
                                    dbx=(bytes(32),), authority=pki_certs[0],
                                    images=(BootImage("/EFI/BOOT/BOOTX64.EFI", make_pe()),),
                                    cmdline="root=/dev/vda", initrd=b"initrd"))
    raw = good.encode()
    put("eventlog", "ovmf-secure-boot.bin", raw)
    put("eventlog", "seabios.bin", seabios_log(banks).encode())
    hdr = len(good.events[0].encode())
    put("eventlog", "header-only.bin", raw[:hdr])
    put("eventlog", "truncated-in-digest.bin", raw[:hdr + 20])
    put("eventlog", "digest-count-4GiB.bin", patched(raw, hdr + 8, "<I", 0xFFFFFFFF))
    put("eventlog", "pcr-index-4GiB.bin", patched(raw, hdr, "<I", 0xFFFFFFFF))
    put("eventlog", "unknown-algorithm.bin", patched(raw, hdr + 12, "<H", 0x0099))
    first = good.events[1]
    size_at = hdr + len(first.encode()) - len(first.data) - 4
    put("eventlog", "event-size-4GiB.bin", patched(raw, size_at, "<I", 0xFFFFFFF0))
    put("eventlog", "spec-algorithms-4GiB.bin", patched(raw, 32 + 24, "<I", 0xFFFFFFFF))
    put("eventlog", "spec-algorithms-0.bin", patched(raw, 32 + 24, "<I", 0))
    put("eventlog", "spec-vendor-size-255.bin", patched(raw, hdr - 1, "<B", 255))
    put("eventlog", "sha1-format-garbage.bin", bytes(range(256)) * 4)
    put("eventlog", "sha1-format-size-4GiB.bin", struct.pack("<II20sI", 0, 1, bytes(20),
                                                             0xFFFFFFFF))
    # events whose data lies about its own structure (the digests are recomputed)
    def var(name: str, value: bytes) -> bytes:
        return VariableData(EFI_GLOBAL_VARIABLE, name, value).encode()

    nasty = [
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, bytes(16) + struct.pack(
            "<QQ", 2**63, 2**63)),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         var("db", struct.pack("<16sIII", bytes(16), 0xFFFFFFFF, 0, 16))),
        (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
         var("dbx", struct.pack("<16sIII", bytes(16), 28, 0, 0))),
        (7, EventType.EV_EFI_VARIABLE_AUTHORITY, var("db", b"x")),
        (1, EventType.EV_EFI_VARIABLE_BOOT, var("Boot0001", b"\x01\x00\x00\x00\xff\xff")),
        (1, EventType.EV_EFI_VARIABLE_BOOT, var("BootOrder", b"\x01")),
        (1, EventType.EV_EFI_VARIABLE_BOOT, bytes(16) + struct.pack("<QQ", 1, 0) + b"\x00\xd8"),
        (4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, struct.pack("<QQQQ", 0, 0, 0, 2**64 - 1)),
        (4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, struct.pack("<QQQQ", 0, 0, 0, 4)
         + b"\x04\x04\xff\xff"),
        (5, EventType.EV_EFI_GPT_EVENT, bytes(92) + struct.pack("<Q", 2**60)),
        (0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2, b"\xff"),
        (0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB, b"\x00" * 3),
        (0, EventType.EV_NO_ACTION, b"StartupLocality\x00\x03"),
        (8, EventType.EV_IPL, b"grub_cmd linux\x00"),
        (8, EventType.EV_IPL, b"\n\n\x00'\\"),
        (9, EventType.EV_EVENT_TAG, struct.pack("<II", 0x8F3B22EC, 2**32 - 1)),
    ]
    log = EventLog.build(banks, nasty)
    put("eventlog", "lying-event-data.bin", log.encode())
    # one bank missing from an event: replay cannot go on in that bank
    ev = log.events[1]
    short = replace(ev, digests=ev.digests[:1])
    put("eventlog", "missing-bank-digest.bin",
        EventLog(log.format, log.spec_id, (log.events[0], short, *log.events[2:])).encode())


def edge_corpus() -> None:
    """Inputs at the bounds (issue 20): counts, digits, nesting and names just past them,
    small enough for the mutational engine (the MB-sized ones are in tests/bounds)."""
    import gzip
    import io
    import tarfile

    from imasim._der import der, der_int, der_oid
    from imasim.archive import ArchiveMember, write_cpio

    sha256 = der(0x30, der_oid("2.16.840.1.101.3.4.2.1"))
    signer = der(0x30, der_int(1) + der(0x30, der(0x30, b"") + der_int(1)) + sha256
                 + der(0x30, der_oid("1.2.840.113549.1.1.1")) + der(0x04, b"x"))

    def signed_data(algs: bytes, signers: bytes = signer) -> bytes:
        body = (der_int(1) + der(0x31, algs) + der(0x30, der_oid("1.2.840.113549.1.7.1"))
                + der(0x31, signers))
        return der(0x30, der_oid("1.2.840.113549.1.7.2") + der(0xA0, der(0x30, body)))

    put("pkcs7", "digest-algorithms-257.der", signed_data(sha256 * 257))
    put("pkcs7", "elements-20001.der", signed_data(der(0x30, der(0x06, b"\x01")) * 10_001))
    put("pkcs7", "oid-200-bytes.der", signed_data(sha256, der(0x30, der_int(1) + der(
        0x30, der(0x30, b"") + der_int(1)) + der(0x30, der(0x06, b"\x81" * 199 + b"\x01"))
        + der(0x30, der_oid("1.2.840.113549.1.1.1")) + der(0x04, b"x"))))
    one = gzip.compress(write_cpio([ArchiveMember("init", b"x" * 20, 0o100755)]), mtime=0)
    put("cpio", "gzip-members-x64.cpio", one * 64)
    put("cpio", "dot-dot.cpio", write_cpio([
        ArchiveMember("usr", mode=0o40755), ArchiveMember("usr/../bin/sh", b"sh"),
        ArchiveMember("missing/../x", b"x"), ArchiveMember("l", b"usr", 0o120777),
        ArchiveMember("./a//./b", b"b")]))

    def tar(name: str, pax: dict[str, str]) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo(name)
            info.pax_headers = pax
            t.addfile(info, io.BytesIO(b""))
        return out.getvalue()

    put("tar", "pax-uid-5000-digits.tar", tar("f", {"uid": "9" * 5000}))
    put("tar", "pax-mtime-400-digits.tar", tar("f", {"mtime": "9" * 400 + ".5"}))
    put("tar", "pax-size-21-digits.tar", tar("f", {"size": "1" * 21}))
    put("tar", "dot-dot.tar", tar("usr/../bin/sh", {}))
    put("tar", "pax-records-300.tar", tar("f", {f"SCHILY.xattr.user.{i}": "v"
                                                for i in range(300)}))
    put("list-ascii", "pcr-5000-digits.txt",
        "9" * 5000 + " " + "00" * 20 + " ima-ng sha1:" + "00" * 20 + " /init\n")
    put("ipe-policy", "version-5000-digits.policy",
        f"policy_name=a policy_version=0.{'9' * 5000}.0\nDEFAULT action=ALLOW\n")
    put("ima-policy", "uid-5000-digits.policy", f"measure uid={'9' * 5000}\n")
    put("xattr", "hash-algo-unknown.bin", bytes([4, 200]) + bytes(32))
    put("json-document", "deep-arrays.json", "[" * 10_000)
    put("json-document", "pcrs.json", '{"sha256": {"10": "' + "00" * 32 + '"}}')
    put("json-document", "unterminated-escapes.json", '"' + '\\"[' * 3000)
    put("toml-document", "deep-inline-tables.toml", "a = " + "{b=" * 3000)
    put("toml-document", "dotted-key-100.toml", "a" + ".a" * 100 + " = 1\n")
    put("toml-document", "integer-5000-digits.toml", "a = " + "9" * 5000 + "\n")


if __name__ == "__main__":
    main()
    eventlog_corpus()
    edge_corpus()
