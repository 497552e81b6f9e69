"""The evidence bundle: round trips (folder, tar), malformed bundles refused with
ParseError, and a simulated bundle's folder read as it is by tpm2_checkquote."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from imasim.errors import LimitExceededError, ParseError, UsageError
from imasim.fleet.bundle import FILES, EvidenceBundle
from imasim.fleet.io import bundle_paths, read_bundle, write_bundle
from imasim.fleet.simulate import FleetSpec, simulate_machines
from imasim.limits import Limits
from tools import need

SPEC = FleetSpec(machines=14, tamper=7, seed=5, entries=40)


@pytest.fixture(scope="module")
def machines() -> list[tuple[EvidenceBundle, bytes, object]]:
    return list(simulate_machines(SPEC, range(SPEC.machines)))


def _small() -> EvidenceBundle:
    return EvidenceBundle(machine="web-1", quote_message=b"m", quote_signature=b"s",
                          pcr_file=b"p", ak_public=b"k", nonce=b"n", measurement_list=b"l",
                          event_log=b"e")


def test_round_trip_folder_and_tar(machines: list, tmp_path: Path) -> None:
    for b, _, _ in machines:
        assert EvidenceBundle.from_files(b.to_files()) == b
        assert EvidenceBundle.from_tar(b.to_tar()) == b
        assert read_bundle(write_bundle(tmp_path / "d", b)) == b
        assert read_bundle(write_bundle(tmp_path / "t", b, tar=True)) == b
    b = _small()
    assert EvidenceBundle.from_tar(b.to_tar()) == b  # the optional event log too
    assert b.to_tar() == b.to_tar()  # deterministic
    assert [p.name for p in bundle_paths(tmp_path / "t")] == \
        sorted(f"{m.machine}.tar" for m, _, _ in machines)


def test_header_names_every_file() -> None:
    b = _small()
    files = b.to_files()
    head = json.loads(files["bundle.json"])
    assert head == {"format": "imasim-evidence-bundle/1", "machine": "web-1",
                    "list_digest_alg": "sha1", "files": dict(FILES)}
    assert "event_log" not in json.loads(replace(b, event_log=None).to_files()["bundle.json"]
                                         )["files"]


@pytest.mark.parametrize("damage", [
    lambda f: f.pop("bundle.json"),
    lambda f: f.pop("quote.sig"),
    lambda f: f.update({"bundle.json": b"{"}),
    lambda f: f.update({"bundle.json": b"[1]"}),
    lambda f: f.update({"bundle.json": b"[" * 100000 + b"]" * 100000}),
    lambda f: f.update({"bundle.json": f["bundle.json"].replace(b"web-1", b"../x")}),
    lambda f: f.update({"bundle.json": f["bundle.json"].replace(b"sha1", b"nonsense")}),
    lambda f: f.update({"bundle.json": f["bundle.json"].replace(b"quote.sig", b"/etc/pa")}),
    lambda f: f.update({"bundle.json": f["bundle.json"].replace(b'"nonce"', b'"nonc"')}),
    lambda f: f.update({"bundle.json": f["bundle.json"].replace(b"-bundle/1", b"-bundle/2")}),
], ids=["no-header", "no-signature", "not-json", "not-object", "deep-json", "bad-id",
        "bad-alg", "renamed-file", "unlisted-nonce", "format-version"])
def test_malformed_bundles_are_parse_errors(damage: object) -> None:
    files = _small().to_files()
    damage(files)  # type: ignore[operator]
    with pytest.raises(ParseError):
        EvidenceBundle.from_files(files)


def _tar(members: list[tuple[str, bytes]], kind: bytes = tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.type = len(data), kind
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_malformed_tars_are_parse_errors() -> None:
    files = _small().to_files()
    with pytest.raises(ParseError):
        EvidenceBundle.from_tar(b"not a tar" * 100)
    with pytest.raises(ParseError):  # a member twice
        EvidenceBundle.from_tar(_tar([*files.items(), ("x/quote.msg", b"again")]))
    with pytest.raises(LimitExceededError):
        EvidenceBundle.from_tar(_tar([(f"f{i}", b"") for i in range(65)]))
    with pytest.raises(LimitExceededError):
        EvidenceBundle.from_tar(_small().to_tar(), limits=Limits(max_archive_size=100))
    # links and folders named like bundle files are not read
    with pytest.raises(ParseError):
        EvidenceBundle.from_tar(_tar([(f"web-1/{n}", d) for n, d in files.items()],
                                     tarfile.SYMTYPE))


def test_fields_must_be_bytes() -> None:
    with pytest.raises(UsageError):
        replace(_small(), nonce="00")  # type: ignore[arg-type]


@pytest.mark.interop
def test_tpm2_checkquote_reads_a_bundle_folder_as_it_is(machines: list, tmp_path: Path
                                                         ) -> None:
    """The bundle's quote files are tpm2-tools' forms: tpm2_checkquote -u ak.pub -m
    quote.msg -s quote.sig -f quote.pcrs -q nonce.bin in the folder (untampered and
    replayed-quote machines: the quote itself is sound, against its own nonce.bin)."""
    tool = need("tpm2_checkquote")
    args = ["-u", "ak.pub", "-m", "quote.msg", "-s", "quote.sig", "-f", "quote.pcrs",
            "-q", "nonce.bin"]
    for b, challenge, truth in machines:
        d = write_bundle(tmp_path, b)
        rc = subprocess.run([tool, *args], cwd=d, capture_output=True).returncode
        if truth.tamper == "forged-pcr-file":
            # the file's selection (PCRs 0-10) is not the quote's (0-9): refused
            assert rc != 0, truth
        else:
            assert rc == 0, truth
        if truth.tamper == "replayed-quote":
            # against the verifier's own challenge the replayed quote fails
            (d / "challenge.bin").write_bytes(challenge)
            args2 = [*args[:-1], "challenge.bin"]
            assert subprocess.run([tool, *args2], cwd=d, capture_output=True).returncode != 0
