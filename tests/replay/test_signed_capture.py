"""Real ima-sig entries with signatures: the signed-ext4-ima-sig capture.

The guest executed two scripts from an ext4 disk whose security.ima signatures were made
by `evmctl ima_sign` with keys/ima-test-key.pem; the kernel recorded the 265-byte
signatures in the ima-sig entries (no appraisal). `files/` holds the two scripts.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import Verdict, check_entry_signature
from imasim.errors import ImasimError
from imasim.ima import MeasurementEntry
from imasim.ima.builders import file_entry
from imasim.ima.replay import MatchStatus, match
from imasim.keys import Key, Keyring
from imasim.sig.xattr import verify_xattr
from pki import pki
from realdata import stage
from tools import need

CAPTURE = Path(__file__).parent.parent / "vectors" / "realkernel" / "signed-ext4-ima-sig"
SIGNED = ("/mnt/bin/signed-one.sh", "/mnt/bin/signed-two.sh")


def _ring(cert: bytes | None = None) -> Keyring:
    ring = Keyring("_ima")
    ring.add(Key.from_certificate(cert or (CAPTURE / "keys" / "ima-test-cert.der").read_bytes()))
    return ring


def _entries() -> list[MeasurementEntry]:
    return list(stage("signed-ext4-ima-sig").entries())


def test_capture_replays_and_its_signatures_verify() -> None:
    st = stage("signed-ext4-ima-sig")
    entries = _entries()
    assert match(entries, st.pcrs()).status is MatchStatus.MATCH
    verdicts = {e.event_name: check_entry_signature(i, e, _ring(), require=True)
                for i, e in enumerate(entries)}
    assert all(verdicts[p] is None for p in SIGNED)
    unsigned = verdicts["/mnt/bin/unsigned.sh"]
    assert unsigned is not None and unsigned.verdict is Verdict.UNSIGNED
    # the digests in the list are those of the committed scripts
    by_name = {e.event_name: e for e in entries}
    for p in SIGNED:
        d = by_name[p].file_digest
        assert d is not None
        assert d.digest == hashlib.sha256((CAPTURE / "files" / Path(p).name).read_bytes()
                                          ).digest()


def _resigned(e: MeasurementEntry, sig: bytes) -> MeasurementEntry:
    d = e.file_digest
    assert d is not None
    return file_entry("ima-sig", e.event_name, d.digest, H.SHA256, sig=sig)


def test_a_flipped_signature_bit_or_an_unknown_key_is_a_bad_signature() -> None:
    e = next(x for x in _entries() if x.event_name == SIGNED[0])
    sig = e.fields["sig"]
    assert isinstance(sig, bytes) and len(sig) == 265
    flipped = _resigned(e, sig[:-1] + bytes([sig[-1] ^ 1]))
    v = check_entry_signature(0, flipped, _ring())
    assert v is not None and v.verdict is Verdict.BAD_SIGNATURE
    assert check_entry_signature(0, _resigned(e, sig), _ring()) is None
    other = pki()["rsa_leaf"].as_key().der
    assert other is not None
    v = check_entry_signature(0, e, _ring(other))
    assert v is not None and "KeyNotFound" in v.detail


@pytest.mark.interop
def test_evmctl_and_imasim_agree_on_the_captured_signatures(tmp_path: Path) -> None:
    evmctl = need("evmctl")
    cert = CAPTURE / "keys" / "ima-test-cert.der"
    by_name = {e.event_name: e for e in _entries()}
    for p in SIGNED:
        sig = by_name[p].fields["sig"]
        assert isinstance(sig, bytes)
        for tamper in (False, True):
            blob = sig[:-1] + bytes([sig[-1] ^ 1]) if tamper else sig
            f = tmp_path / Path(p).name
            f.write_bytes((CAPTURE / "files" / Path(p).name).read_bytes())
            (tmp_path / (f.name + ".sig")).write_bytes(blob)
            r = subprocess.run([evmctl, "ima_verify", "--key", str(cert), "--sigfile", str(f)],
                               capture_output=True, timeout=60, check=False)
            try:
                verify_xattr(blob, hashlib.sha256(f.read_bytes()).digest(), keyring=_ring())
                ours = True
            except ImasimError:
                ours = False
            assert (r.returncode == 0) is ours is (not tamper), (p, tamper, r.stderr)
