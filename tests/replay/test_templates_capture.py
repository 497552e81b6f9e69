"""Real ima-sigv2, ima-modsig, evm-sig and ima-ngv2 entries: the signed-ext4-templates capture.

A Debian 6.1 kernel measured files from an ext4 disk with per-rule templates (see the
capture's notes.md). Checked here: what the fields hold against the files and xattrs the
harness made, the signatures they carry against the test key (made by evmctl and sign-file,
not by imasim), and that tampering with any input of the EVM digest is caught.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import Verdict, check_entry_signature
from imasim.errors import SignatureInvalidError
from imasim.ima import MeasurementEntry
from imasim.ima.replay import MatchStatus, match
from imasim.keys import Key, Keyring
from imasim.sig.evm import verify_evm
from imasim.sig.modsig import split_modsig, verify_modsig
from pki import pki
from realdata import stage

CAPTURE = Path(__file__).parent.parent / "vectors" / "realkernel" / "signed-ext4-templates"


def _ring(der: bytes | None = None) -> Keyring:
    ring = Keyring("_ima")
    ring.add(Key.from_certificate(der or (CAPTURE / "keys" / "ima-test-cert.der").read_bytes()))
    return ring


def _entry(path: str) -> MeasurementEntry:
    (e,) = [e for e in stage("signed-ext4-templates").entries()
            if not e.is_violation and e.fields.get("n-ng") == path]
    return e


def _host_xattrs() -> dict[str, dict[str, bytes]]:
    """keys/xattrs.txt: the security.* values getfattr printed on the host."""
    out: dict[str, dict[str, bytes]] = {}
    current = ""
    for line in (CAPTURE / "keys" / "xattrs.txt").read_text().splitlines():
        if line.startswith("/"):
            current = "/mnt" + line.split()[0]
            out[current] = {}
        elif m := re.fullmatch(r"(security\.\w+)=0x([0-9a-f]+)", line):
            out[current][m[1]] = bytes.fromhex(m[2])
    return out


def test_templates_and_their_fields() -> None:
    names = {e.template_name for e in stage("signed-ext4-templates").entries()}
    assert {"ima-sig", "ima-sigv2", "ima-modsig", "evm-sig", "ima-ngv2"} <= names
    xattrs = _host_xattrs()
    for path in ("/mnt/bin/sigv2.sh", "/mnt/bin/hashonly.sh", "/mnt/bin/modsig.sh",
                 "/mnt/data/evm-portable.txt", "/mnt/data/ima-only.txt", "/mnt/data/ngv2.txt"):
        e = _entry(path)
        data = (CAPTURE / "files" / path.removeprefix("/mnt/")).read_bytes()
        assert e.file_digest is not None
        assert e.file_digest.digest == hashlib.sha256(data).digest(), path
    # ima-sigv2: d-ngv2 with the "ima:" type, the signature as in security.ima
    e = _entry("/mnt/bin/sigv2.sh")
    assert e.template_name == "ima-sigv2"
    assert e.fields["sig"] == xattrs["/mnt/bin/sigv2.sh"]["security.ima"]
    # a digest-form security.ima is not recorded
    assert _entry("/mnt/bin/hashonly.sh").fields["sig"] is None
    assert xattrs["/mnt/bin/hashonly.sh"]["security.ima"][0] == 0x04
    # evm-sig: the portable signature and the protected xattrs
    e = _entry("/mnt/data/evm-portable.txt")
    assert e.fields["evmsig"] == xattrs["/mnt/data/evm-portable.txt"]["security.evm"]
    assert e.fields["xattrnames"] == "security.ima"
    assert e.fields["xattrvalues"] == xattrs["/mnt/data/evm-portable.txt"]["security.ima"]
    assert (e.fields["iuid"], e.fields["igid"], e.fields["imode"]) == (1000, 1000, 0o100640)
    assert _entry("/mnt/data/ima-only.txt").fields["evmsig"] is None


def test_signatures_verify_against_the_test_key_only() -> None:
    ring = _ring()
    signed = [(i, e) for i, e in enumerate(stage("signed-ext4-templates").entries())
              if not e.is_violation and (e.fields.get("sig") or e.fields.get("evmsig")
                                         or e.fields.get("xattrnames"))]
    assert {e.fields["n-ng"] for _, e in signed} >= {
        "/mnt/bin/sigv2.sh", "/mnt/data/evm-portable.txt", "/mnt/data/ima-only.txt"}
    for i, e in signed:
        assert check_entry_signature(i, e, ring) is None, e.fields["n-ng"]
    stranger = _ring(pki()["stranger"].der)
    for i, e in signed:
        got = check_entry_signature(i, e, stranger)
        assert got is not None and got.verdict is Verdict.BAD_SIGNATURE


def test_evm_sig_entry_without_evmsig_has_its_ima_signature_checked() -> None:
    """evm-sig has no sig field: the security.ima signature is in xattrvalues."""
    e = _entry("/mnt/data/ima-only.txt")
    assert check_entry_signature(0, e, _ring()) is None
    # the same entry built with one bit of the recorded signature flipped
    values = e.fields["xattrvalues"]
    assert isinstance(values, bytes)
    bad = MeasurementEntry(e.pcr, e.template_name, e.template_digest,
                           e.template_data.replace(values, values[:-1] + bytes([values[-1] ^ 1])))
    got = check_entry_signature(0, bad, _ring())
    assert got is not None and got.verdict is Verdict.BAD_SIGNATURE
    assert "SignatureInvalidError" in got.detail


@pytest.mark.parametrize("change", ["uid", "gid", "mode", "xattr"])
def test_evm_signature_covers_what_the_entry_records(change: str) -> None:
    f = _entry("/mnt/data/evm-portable.txt").fields
    evmsig, ima = f["evmsig"], f["xattrvalues"]
    assert isinstance(evmsig, bytes) and isinstance(ima, bytes)
    meta = {"uid": f["iuid"], "gid": f["igid"], "mode": f["imode"]}
    verify_evm(evmsig, {"security.ima": ima}, keyring=_ring(), **meta)  # type: ignore[arg-type]
    if change == "xattr":
        ima = ima[:-1] + bytes([ima[-1] ^ 1])
    else:
        meta[change] = int(meta[change]) + 1  # type: ignore[call-overload]
    with pytest.raises(SignatureInvalidError):
        verify_evm(evmsig, {"security.ima": ima}, keyring=_ring(), **meta)  # type: ignore[arg-type]


def test_modsig_without_kernel_support_hashes_the_whole_file() -> None:
    e = _entry("/mnt/bin/modsig.sh")
    assert (e.fields["d-modsig"], e.fields["modsig"]) == (None, None)
    data = (CAPTURE / "files" / "bin" / "modsig.sh").read_bytes()
    payload_sig = split_modsig(data)
    assert payload_sig is not None
    payload, _ = payload_sig
    assert payload == b"#!/bin/sh\necho modsig\nexit 0\n"
    verify_modsig(data, keyring=_ring())  # sign-file's signature, the test key
    assert e.file_digest is not None
    assert e.file_digest.digest == hashlib.sha256(data).digest() != hashlib.sha256(payload).digest()


def test_replays_to_the_captured_pcr() -> None:
    st = stage("signed-ext4-templates")
    result = match(list(st.entries()), st.pcrs())
    assert result.status is MatchStatus.MATCH
    by_bank = {b.bank: b for b in result.banks}
    assert by_bank[H.SHA1].matched and by_bank[H.SHA256].matched
    assert by_bank[H.SHA384].padded  # 6.1 could not allocate sha384 at IMA init
