"""The builders rebuild every real-kernel entry byte for byte from what it means."""

from __future__ import annotations

import pytest

from imasim.algorithms import HashAlgorithm
from imasim.errors import UsageError
from imasim.ima import DigestWithAlgo, MeasurementEntry
from imasim.ima.builders import (
    boot_aggregate_entry,
    file_entry,
    ima_buf_entry,
    ima_ng_entry,
    violation_entry,
)
from realdata import Stage, stages

STAGES = stages()


def rebuild(e: MeasurementEntry, ima_hash: HashAlgorithm) -> MeasurementEntry:
    f = e.fields
    name = e.event_name
    if e.is_violation:
        return violation_entry(e.template_name, name, ima_hash=ima_hash, uid=f.get("iuid"),  # type: ignore[arg-type]
                               gid=f.get("igid"), mode=f.get("imode"), pcr=e.pcr)  # type: ignore[arg-type]
    d = e.file_digest
    assert d is not None
    if name == "boot_aggregate":
        sha1 = f.get("d")
        return boot_aggregate_entry(d, template=e.template_name, pcr=e.pcr,
                                    sha1_digest=sha1 if isinstance(sha1, bytes) else None)
    if "buf" in f:
        buf = f["buf"]
        assert isinstance(buf, bytes)
        return ima_buf_entry(name, buf, alg=HashAlgorithm.from_name(d.algo), pcr=e.pcr,
                             template=e.template_name)
    alg = HashAlgorithm.from_name(d.algo)
    sig = f.get("sig")
    evm = None
    if "xattrnames" in f:  # evm-sig: what evm_read_protected_xattrs returned
        evm = (f.get("evmsig"), f["xattrnames"], f["xattrlengths"], f["xattrvalues"])
    return file_entry(e.template_name, name, d.digest, alg, pcr=e.pcr,
                      sha1_digest=d.digest if e.template_name == "ima" else None,
                      sig=sig if isinstance(sig, bytes) else None, evm=evm,  # type: ignore[arg-type]
                      uid=f.get("iuid"), gid=f.get("igid"), mode=f.get("imode"))  # type: ignore[arg-type]


def ima_hash_of(st: Stage) -> HashAlgorithm:
    """The ima_hash of a boot: the algorithm of the first non-legacy d-ng digest of a
    file (boot_aggregate's is the bank's: sha256 when ima_hash=sha512 has no bank)."""
    for e in st.entries():
        d = e.file_digest
        if d is not None and e.template_name != "ima" and e.event_name != "boot_aggregate":
            return HashAlgorithm.from_name(d.algo)
    return HashAlgorithm.SHA1


@pytest.mark.parametrize("st", STAGES, ids=[s.id for s in STAGES])
def test_builders_reproduce_real_entries(st: Stage) -> None:
    ima_hash = ima_hash_of(st)
    kinds = set()
    for e in st.entries():
        again = rebuild(e, ima_hash)
        assert again.to_bytes() == e.to_bytes(), e
        kinds.add("violation" if e.is_violation else e.template_name)
    assert kinds


def test_ima_buf_digest_is_the_buffer_hash() -> None:
    e = ima_buf_entry(".builtin_trusted_keys", b"\x30\x82", alg=HashAlgorithm.SHA512)
    assert e.fields["d-ng"] == DigestWithAlgo("sha512", HashAlgorithm.SHA512.hash(b"\x30\x82"))
    assert e.ascii_line().endswith(" .builtin_trusted_keys 3082\n")


def test_file_entry_rules() -> None:
    digest = HashAlgorithm.SHA256.hash(b"x")
    with pytest.raises(UsageError):
        file_entry("ima", "/x", digest, HashAlgorithm.SHA256)  # needs the SHA-1 digest
    with pytest.raises(UsageError):
        ima_ng_entry("/x", digest[:20], HashAlgorithm.SHA256)
    # a digest-only security.ima (type 4) is not recorded in the sig field
    e = file_entry("ima-sig", "/x", digest, HashAlgorithm.SHA256, sig=b"\x04\x04" + digest)
    assert e.fields["sig"] is None
    long = "/" + "d" * 300 + "/file"
    legacy = file_entry("ima", long, digest[:20], HashAlgorithm.SHA1)
    assert legacy.event_name == "file"
    assert ima_ng_entry(long, digest, HashAlgorithm.SHA256).event_name == long


def test_violation_of_the_legacy_template() -> None:
    v = violation_entry("ima", "/etc/passwd", ima_hash=HashAlgorithm.SHA512)
    assert v.template_data[:20] == bytes(20) and v.template_digest == bytes(20)
    assert v.extend_value(HashAlgorithm.SHA256) == b"\xff" * 32
