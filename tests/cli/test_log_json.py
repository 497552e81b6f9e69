"""``imasim log convert``: binary -> JSON -> binary is the same file, on every real capture.

The captures are the committed ones (tests/vectors) and, when this checkout sits in the
session's workspace, the shared ones (../shared/vectors, /work/shared/vectors).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imasim.cli import main
from imasim.ima.jsonfmt import FORMAT, measurement_list_from_json, parse_json_measurement_list

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "tests" / "vectors", ROOT.parent / "shared" / "vectors",
           Path("/work/shared/vectors")]
CAPTURES = sorted({p.resolve() for src in SOURCES if src.is_dir()
                   for p in src.rglob("binary_runtime_measurements*")})


def _id(p: Path) -> str:
    parts = p.parts
    return "/".join(parts[parts.index("vectors") - 1:]) if "vectors" in parts else str(p)


def test_the_captures_are_there() -> None:
    assert len([p for p in CAPTURES if "tests" in p.parts]) >= 30


@pytest.mark.parametrize("capture", CAPTURES, ids=[_id(p) for p in CAPTURES])
def test_binary_json_binary_byte_for_byte(capture: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    j, back, auto = tmp_path / "list.json", tmp_path / "back.bin", tmp_path / "auto.bin"
    assert main(["log", "convert", str(capture), str(j), "--to", "json"]) == 0
    doc = json.loads(j.read_text())
    assert doc["format"] == FORMAT and doc["entries"]
    assert main(["log", "convert", str(j), str(back), "--to", "binary", "--from", "json"]) == 0
    assert back.read_bytes() == capture.read_bytes()
    assert main(["log", "convert", str(j), str(auto), "--to", "binary"]) == 0  # detected
    assert auto.read_bytes() == capture.read_bytes()
    ascii_file = capture.with_name(capture.name.replace("binary", "ascii"))
    if ascii_file.exists():   # the JSON shows as the kernel's ASCII file, too
        assert main(["log", "show", str(j)]) == 0
        assert capsys.readouterr().out.encode("utf-8", "surrogateescape") == \
            ascii_file.read_bytes()


def test_a_forged_template_digest_survives_the_round_trip(tmp_path: Path) -> None:
    """The JSON keeps what the list said, wrong digests included: replay judges it."""
    capture = next(p for p in CAPTURES if p.name == "binary_runtime_measurements")
    data = bytearray(capture.read_bytes())
    data[4] ^= 1   # the first entry's stored template digest
    (tmp_path / "forged").write_bytes(data)
    assert main(["log", "convert", str(tmp_path / "forged"), str(tmp_path / "j"),
                 "--to", "json"]) == 0
    assert main(["log", "convert", str(tmp_path / "j"), str(tmp_path / "b"),
                 "--to", "binary"]) == 0
    assert (tmp_path / "b").read_bytes() == bytes(data)


@pytest.mark.parametrize(("doc", "why"), [
    ([{"pcr": 10, "template_name": "ima-ng"}], "older"),
    ({"format": "imasim-measurement-list/9"}, "unknown version"),
    ({"format": FORMAT, "template_digest_alg": "nope", "byte_order": "little",
      "entries": []}, "nope"),
    ({"format": FORMAT, "template_digest_alg": "sha1", "byte_order": "middle",
      "entries": []}, "byte_order"),
    ({"format": FORMAT, "template_digest_alg": "sha1", "byte_order": "little",
      "entries": [{"pcr": True, "template_name": "ima-ng", "template_digest": "00" * 20,
                   "template_data": ""}]}, "pcr"),
    ({"format": FORMAT, "template_digest_alg": "sha1", "byte_order": "little",
      "entries": [{"pcr": 10, "template_name": "ima-ng", "template_digest": "00" * 19,
                   "template_data": ""}]}, "digest size"),
    ({"format": FORMAT, "template_digest_alg": "sha1", "byte_order": "little",
      "entries": [{"pcr": 10, "template_name": "ima-ng", "template_digest": "00" * 20,
                   "template_data": "zz"}]}, "hex"),
    ({"format": FORMAT, "template_digest_alg": "sha1", "byte_order": "little",
      "entries": [{"pcr": 10, "template_name": "ima-ng", "template_digest": "00" * 20,
                   "template_data": "01000000"}]}, "exceeds the template data"),
])
def test_bad_documents_are_parse_errors(doc: object, why: str) -> None:
    from imasim.errors import ParseError

    with pytest.raises(ParseError, match=why):
        measurement_list_from_json(doc)


def test_deep_json_is_a_parse_error() -> None:
    from imasim.errors import ParseError

    with pytest.raises(ParseError):
        parse_json_measurement_list("[" * 100_000 + "]" * 100_000)


def test_a_path_that_is_not_utf8_is_written_as_the_kernel_writes_it(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """The kernel prints a file name's bytes as they are; so do show and convert."""
    from imasim.ima import DigestWithAlgo, MeasurementEntry, MeasurementList

    e = MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", bytes(32)), "/x\udcffy"])
    binary = MeasurementList([e]).to_bytes()
    (tmp_path / "list.bin").write_bytes(binary)
    line = b"/x\xffy\n"
    assert main(["log", "convert", str(tmp_path / "list.bin"), str(tmp_path / "a"),
                 "--to", "ascii"]) == 0
    assert (tmp_path / "a").read_bytes().endswith(b" " + line)
    assert main(["log", "show", str(tmp_path / "list.bin")]) == 0
    assert capsysbinary.readouterr().out.endswith(line)
    for to in ("binary", "json"):   # ASCII -> binary, ASCII -> JSON -> binary
        assert main(["log", "convert", str(tmp_path / "a"), str(tmp_path / to),
                     "--to", to]) == 0
    assert main(["log", "convert", str(tmp_path / "json"), str(tmp_path / "b2"),
                 "--to", "binary"]) == 0
    assert (tmp_path / "binary").read_bytes() == binary == (tmp_path / "b2").read_bytes()
