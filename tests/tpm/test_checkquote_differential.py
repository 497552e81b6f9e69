"""Forged evidence, judged by imasim (library and CLI) and by the real tpm2_checkquote.

Every case is a quote plus files a verifier might be handed: PCR files whose selection,
bank, order or values differ from the quote's, truncated files, another nonce or AK, plain
signatures. imasim follows tpm2-tools 5.8 (tools/misc/tpm2_checkquote.c): the PCR file's
selection must be the quote's (compare_pcr_selection), the digests hash to pcrDigest in the
file's order, bytes after what the selection needs are ignored. Where an older
tpm2_checkquote judged otherwise, the case names the fix and the old verdict, and the test
expects exactly that verdict from the installed tool:

* CVE-2024-29039 (fixed in 5.7, commit 98599df9): the file's selection was never compared
  with the quote's, so a quoted value could be relabelled as another PCR's;
* tpm2-tools #3542 (fixed in 5.8, commit 140a9e70): with ``-l``, 8 or more selected PCRs
  always failed (the 8th digest was dropped);
* RSA-PSS (5.7, commit b4687c3f): before it only PKCS#1 v1.5 signatures verified;
* compare_pcr_selection also compares sizeofSelect (5.7).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import utils

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.errors import ImasimError
from imasim.tpm import PcrSelection, SoftTpm
from imasim.tpm.marshal import SigScheme, parse_signature
from imasim.tpm.verify import (
    parse_pcrread_yaml,
    read_pcr_file,
    read_signature,
    verify_quote,
    write_pcr_file,
)
from tools import need

pytestmark = pytest.mark.interop

NONCE = bytes.fromhex("c0ffee0011223344")


@cache
def tool_version() -> tuple[int, ...]:
    out = subprocess.run([need("tpm2_checkquote"), "--version"], capture_output=True,
                         text=True, timeout=30).stdout
    m = re.search(r'version="(\d+)\.(\d+)', out)
    assert m, out
    return (int(m.group(1)), int(m.group(2)))


@dataclass
class Case:
    """Files for one check, what imasim (and tpm2-tools 5.8) says, and an older verdict."""

    name: str
    files: dict[str, bytes]
    args: list[str]
    ok: bool
    #: (version the behaviour changed in, the verdict of tpm2_checkquote before it)
    before: tuple[tuple[int, int], bool] | None = None
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def tool_expected(self) -> bool:
        if self.before is not None and tool_version() < self.before[0]:
            return self.before[1]
        return self.ok


def _tpm() -> SoftTpm:
    tpm = SoftTpm((H.SHA1, H.SHA256))
    for i in range(11):
        tpm.extend(i, {a: a.hash(b"pcr %d" % i) for a in tpm.banks})
    return tpm


def _plain(sig: bytes) -> bytes:
    s = parse_signature(sig)
    if s.scheme is SigScheme.ECDSA:
        return utils.encode_dss_signature(int.from_bytes(s.r, "big"), int.from_bytes(s.s, "big"))
    return s.sig


def _values(tpm: SoftTpm, sel: str) -> list[bytes]:
    return [tpm.read(a, i) for a, idx in PcrSelection.from_string(sel).items() for i in idx]


def _serialized_raw(entries: list[tuple[H, list[int], int]], blocks: list[list[bytes]]) -> bytes:
    """A serialized PCR file with any selection and digest blocks (sizes as given)."""
    import struct
    out = bytearray(struct.pack("<I", len(entries)))
    for alg, pcrs, size in entries:
        bitmap = bytearray(4)
        for p in pcrs:
            bitmap[p // 8] |= 1 << (p % 8)
        assert alg.tpm_alg_id is not None
        out += struct.pack("<HB4sx", alg.tpm_alg_id, size, bytes(bitmap))
    out += bytes(8 * (16 - len(entries)))
    out += struct.pack("<I", len(blocks))
    for block in blocks:
        out += struct.pack("<I", len(block))
        for v in block:
            out += struct.pack("<H", len(v)) + v.ljust(64, b"\0")
        out += bytes(66 * (8 - len(block)))
    return bytes(out)


def cases() -> list[Case]:
    tpm = _tpm()
    rsa = tpm.create_ak("rsa", seed=b"diff-rsa")
    ecc = tpm.create_ak("ecc", seed=b"diff-ecc")
    pss = tpm.create_ak("rsa", seed=b"diff-pss", scheme=SigScheme.RSAPSS)
    other = SoftTpm((H.SHA256,)).create_ak("rsa", seed=b"another TPM")
    out: list[Case] = []

    def quote(ak, sel: str):  # type: ignore[no-untyped-def]
        return tpm.quote(ak, PcrSelection.from_string(sel), NONCE)

    def add(name: str, ak, q, pcrs: bytes | None, ok: bool, *args: str,  # type: ignore[no-untyped-def]
            sig: bytes | None = None, pem: bytes | None = None, nonce: bytes = NONCE,
            before: tuple[tuple[int, int], bool] | None = None) -> None:
        files = {"ak.pem": pem or ak.public_pem, "q.msg": q.attest,
                 "q.sig": sig if sig is not None else q.signature}
        argv = ["-u", "ak.pem", "-m", "q.msg", "-s", "q.sig", "-q", nonce.hex()]
        if pcrs is not None:
            files["q.pcrs"] = pcrs
            argv += ["-f", "q.pcrs"]
        out.append(Case(name, files, argv + list(args), ok, before))

    for kind, ak in (("rsa", rsa), ("ecc", ecc)):
        q = quote(ak, "sha256:0,1,10")
        good = write_pcr_file(q.selection, _values(tpm, "sha256:0,1,10"))
        add(f"{kind} good", ak, q, good, True)
        add(f"{kind} no PCR file", ak, q, None, True)
        add(f"{kind} plain signature", ak, q, good, True, "-g", "sha256", sig=_plain(q.signature))
        add(f"{kind} plain signature, -g sha1", ak, q, good, False, "-g", "sha1",
            sig=_plain(q.signature))
        add(f"{kind} wrong nonce", ak, q, good, False, nonce=b"\x01")
        add(f"{kind} other AK", ak, q, good, False, pem=other.public_pem)
        vals = _values(tpm, "sha256:0,1,10")
        add(f"{kind} changed value", ak, q,
            write_pcr_file(q.selection, [*vals[:2], bytes(32)]), False)
        add(f"{kind} truncated PCR file", ak, q, good[:-70], False)
        add(f"{kind} truncated signature", ak, q, good, False, sig=q.signature[:-1])

    # -- the attack of issue 17 and its variants, on a quote of sha256:0 ------------------
    q0 = quote(rsa, "sha256:0")
    add("quote sha256:0, file claims 0-10", rsa, q0,
        write_pcr_file(PcrSelection.from_string("sha256:0,1,2,3,4,5,6,7,8,9,10"),
                       _values(tpm, "sha256:0,1,2,3,4,5,6,7,8,9,10")), False)
    add("quote sha256:0, file relabels the value as PCR 10", rsa, q0,
        write_pcr_file(PcrSelection.from_string("sha256:10"), _values(tpm, "sha256:0")), False,
        before=((5, 7), True))
    add("quote sha256:0, file relabels the bank as sha1-sized sha256", rsa, q0,
        _serialized_raw([(H.SHA1, [0], 3)], [[tpm.read(H.SHA256, 0)]]), False,
        before=((5, 7), True))
    add("quote sha256:0, file with sizeofSelect 4", rsa, q0,
        _serialized_raw([(H.SHA256, [0], 4)], [[tpm.read(H.SHA256, 0)]]), False,
        before=((5, 7), True))
    q3 = quote(rsa, "sha256:0,1,10")
    add("missing PCR", rsa, q3,
        write_pcr_file(PcrSelection.from_string("sha256:0,10"), _values(tpm, "sha256:0,10")),
        False)
    add("extra bank", rsa, q3,
        write_pcr_file(PcrSelection.from_string("sha256:0,1,10+sha1:0"),
                       _values(tpm, "sha256:0,1,10+sha1:0")), False)
    qb = quote(ecc, "sha1:10+sha256:10")
    add("two banks", ecc, qb,
        write_pcr_file(qb.selection, _values(tpm, "sha1:10+sha256:10")), True)
    add("two banks, swapped order", ecc, qb,
        write_pcr_file(PcrSelection.from_string("sha256:10+sha1:10"),
                       _values(tpm, "sha256:10+sha1:10")), False)
    add("two banks, one missing", ecc, qb,
        write_pcr_file(PcrSelection.from_string("sha1:10"), _values(tpm, "sha1:10")), False)
    # what tpm2_checkquote accepts although the file is odd
    add("digests after the selection's", rsa, q3,
        _serialized_raw([(H.SHA256, [0, 1, 10], 3)], [[*_values(tpm, "sha256:0,1,10"),
                                                       bytes(32)]]), True)
    add("trailing bytes after the digest blocks", rsa, q3,
        write_pcr_file(q3.selection, _values(tpm, "sha256:0,1,10")) + b"junk", True)
    v0, v1, v10 = _values(tpm, "sha256:0,1,10")
    add("digest sizes cut elsewhere, same bytes", rsa, q3,
        _serialized_raw([(H.SHA256, [0, 1, 10], 3)], [[v0 + v1, b"", v10]]), True)
    add("one digest per block", rsa, q3,
        _serialized_raw([(H.SHA256, [0, 1, 10], 3)], [[v0], [v1], [v10]]), True)
    add("an empty block before the last digest", rsa, q3,
        _serialized_raw([(H.SHA256, [0, 1, 10], 3)], [[v0, v1], [], [v10]]), False)
    # values-only files with -l
    raw = b"".join(_values(tpm, "sha256:0,1,10"))
    add("values with -l", rsa, q3, raw, True, "-l", "sha256:0,1,10")
    add("values with -l in another order", rsa, q3, raw, True, "-l", "sha256:10,1,0")
    add("values with -l and trailing bytes", rsa, q3, raw + bytes(32), True, "-l", "sha256:0,1,10")
    add("values with -l selecting an extra PCR", rsa, q3, raw + bytes(32), False,
        "-l", "sha256:0,1,10,11")
    add("values with -l missing a PCR", rsa, q3, raw[:64], False, "-l", "sha256:0,1")
    add("values with -l, short file", rsa, q3, raw[:-1], False, "-l", "sha256:0,1,10")
    q11 = quote(rsa, "sha256:0,1,2,3,4,5,6,7,8,9,10")
    add("values with -l, 11 PCRs", rsa, q11,
        b"".join(_values(tpm, "sha256:0,1,2,3,4,5,6,7,8,9,10")), True,
        "-l", "sha256:0,1,2,3,4,5,6,7,8,9,10", before=((5, 8), False))
    add("serialized, 11 PCRs", rsa, q11,
        write_pcr_file(q11.selection, _values(tpm, "sha256:0,1,2,3,4,5,6,7,8,9,10")), True)
    # RSA-PSS
    qp = quote(pss, "sha256:0")
    pgood = write_pcr_file(qp.selection, _values(tpm, "sha256:0"))
    add("rsapss", pss, qp, pgood, True, before=((5, 7), False))
    add("rsapss plain", pss, qp, pgood, True, sig=_plain(qp.signature), before=((5, 7), False))
    add("rsapss, file claims 0-10", pss, qp,
        write_pcr_file(PcrSelection.from_string("sha256:0,1,2,3,4,5,6,7,8,9,10"),
                       _values(tpm, "sha256:0,1,2,3,4,5,6,7,8,9,10")), False)
    return out


CASES = cases()


def _imasim_library(files: dict[str, Path], args: list[str]) -> bool:
    opts = dict(zip(args[::2], args[1::2], strict=True))
    try:
        halg = H.from_name(opts.get("-g", "sha256"))
        sig = read_signature(files["q.sig"].read_bytes(), hash_alg=halg)
        pcrs = (read_pcr_file(files["q.pcrs"].read_bytes(), selection=opts.get("-l"))
                if "-f" in opts else None)
        verify_quote(files["q.msg"].read_bytes(), sig, files["ak.pem"].read_bytes(),
                     nonce=bytes.fromhex(opts["-q"]), pcrs=pcrs)
    except ImasimError:
        return False
    return True


@pytest.mark.parametrize("cold", [False, True], ids=["openssl", "integers"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_verdict_as_tpm2_checkquote(case: Case, cold: bool, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Both of verify_quote's verifiers: OpenSSL (cryptography loaded) and the
    integer-only one a cold ``imasim tpm checkquote`` uses."""
    import imasim.tpm.verify as verify_mod

    monkeypatch.setattr(verify_mod, "_cold_start", lambda: cold)
    files = {}
    for name, data in case.files.items():
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    tool = subprocess.run([need("tpm2_checkquote"), *case.args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert (tool.returncode == 0) is case.tool_expected(), (tool.stdout, tool.stderr)
    assert _imasim_library(files, case.args) is case.ok
    monkeypatch.chdir(tmp_path)
    rc = main(["tpm", "checkquote", *case.args])
    capsys.readouterr()
    assert rc in (0, 1, 2)
    assert (rc == 0) is case.ok


def test_the_forged_file_prints_only_quoted_pcrs(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """On the relabelled file tpm2_checkquote <= 5.6 exits 0 and prints 'sha256: 10: ...'
    (the file's label); imasim refuses it, and on the real file prints the quote's labels."""
    case = next(c for c in CASES if c.name == "rsa good")
    for name, data in case.files.items():
        (tmp_path / name).write_bytes(data)
    args = [a if not a.startswith(("ak.", "q.")) else str(tmp_path / a) for a in case.args]
    assert main(["tpm", "checkquote", *args]) == 0
    printed = parse_pcrread_yaml(capsys.readouterr().out)
    assert [str(e) for e in printed.selection] == ["sha256:0,1,10"]


def test_a_cold_checkquote_process_loads_no_cryptography(tmp_path: Path) -> None:
    """``imasim tpm checkquote`` in its own process: the verdicts above, and no
    cryptography, pyasn1, measurement-list or machine module imported."""
    import os
    import sys

    for case in CASES:
        if case.name not in ("ecc good", "rsa plain signature", "quote sha256:0, file claims "
                             "0-10", "rsapss", "ecc other AK"):
            continue
        for name, data in case.files.items():
            (tmp_path / name).write_bytes(data)
        code = ("import sys\nfrom imasim.cli import main\nrc = main(sys.argv[1:])\n"
                "bad = [m for m in sys.modules if m.split('.')[0] in ('cryptography', 'pyasn1')"
                " or m.startswith(('imasim.ima', 'imasim.machine'))]\n"
                "assert not bad, bad\nsys.exit(rc)\n")
        proc = subprocess.run([sys.executable, "-c", code, "tpm", "checkquote", *case.args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert "AssertionError" not in proc.stderr, proc.stderr
        assert (proc.returncode == 0) is case.ok, (case.name, proc.stderr)
