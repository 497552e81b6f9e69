"""Real big-endian lists: Debian's s390x kernel under qemu (tests/vectors/s390x/README.md).

Without ``ima_canonical_fmt`` a big-endian kernel writes every integer of the list, and of
the template data it hashes, in its own byte order; with it, little endian.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm
from imasim.errors import ParseError
from imasim.ima import (
    iter_measurement_list,
    parse_ascii_measurement_list,
    parse_measurement_list,
)

S390X = Path(__file__).parent.parent / "vectors" / "s390x"
CAPTURES = {"be": "big", "le": "little", "be-ima": "big"}


def _files(name: str) -> tuple[bytes, str]:
    d = S390X / name / "ima"
    return (d / "binary_runtime_measurements").read_bytes(), \
        (d / "ascii_runtime_measurements").read_text()


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_roundtrip_ascii_and_template_digests(name: str) -> None:
    binary, ascii_text = _files(name)
    order = CAPTURES[name]
    lst = parse_measurement_list(binary, byte_order=order)
    assert len(lst) == int((S390X / name / "ima" / "runtime_measurements_count").read_text())
    assert lst.to_bytes() == binary
    assert lst.to_ascii() == ascii_text
    assert list(iter_measurement_list(binary, byte_order=order, chunk_size=7)) == list(lst)
    violations = [e for e in lst if e.is_violation]
    assert len(violations) == int((S390X / name / "ima" / "violations").read_text())
    for e in lst:
        if not e.is_violation:  # the kernel hashed the template data in this byte order
            assert e.template_digest == e.template_hash(HashAlgorithm.SHA1)


def test_native_order_reaches_inside_the_template_data() -> None:
    be = parse_measurement_list(_files("be")[0], byte_order="big")
    le = parse_measurement_list(_files("le")[0], byte_order="little")
    (b,) = [e for e in be if e.event_name == "/opt/owned.txt"]
    (c,) = [e for e in le if e.event_name == "/opt/owned.txt"]
    assert (b.fields["iuid"], b.fields["igid"], b.fields["imode"]) == (1000, 1001, 0o100640)
    assert b.fields == c.fields
    # the same record, other bytes: field lengths and iuid as big-endian u32s
    assert struct.pack(">I", 1000) in b.template_data and struct.pack("<I", 1000) in c.template_data
    assert b.template_digest != c.template_digest
    # the ASCII files differ only in the template-digest column
    def strip(text: str) -> list[tuple[str, str]]:
        return [(line.split(" ", 2)[0], line.split(" ", 2)[2]) for line in text.splitlines()]
    assert strip(_files("be")[1]) == strip(_files("le")[1])


@pytest.mark.parametrize("name", ["be", "be-ima"])
def test_wrong_byte_order_is_a_parse_error_not_garbage(name: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_measurement_list(_files(name)[0], byte_order="little")
    assert info.value.offset is not None


def test_ascii_back_to_big_endian_binary() -> None:
    binary, ascii_text = _files("be")
    assert parse_ascii_measurement_list(ascii_text, byte_order="big").to_bytes() == binary
    # parsed as little endian, the same text gives the canonical-format records, which
    # to_bytes re-encodes (template digests recomputed) for the big-endian kernel
    assert parse_ascii_measurement_list(ascii_text).to_bytes(byte_order="big") == binary


def test_converting_the_order_gives_what_the_other_kernel_wrote() -> None:
    """The big-endian kernel's list, re-encoded, is byte for byte the list the same kernel
    wrote with ima_canonical_fmt for the same workload (and back)."""
    be = parse_measurement_list(_files("be")[0], byte_order="big")
    le = parse_measurement_list(_files("le")[0])
    assert be.to_bytes(byte_order="little") == le.to_bytes()
    assert le.to_bytes(byte_order="big") == be.to_bytes()
    assert [e.with_byte_order("little") for e in be] == list(le)
    legacy = parse_measurement_list(_files("be-ima")[0], byte_order="big")
    again = parse_measurement_list(legacy.to_bytes(byte_order="little"))
    assert again.to_bytes(byte_order="big") == legacy.to_bytes()
    assert again.to_ascii() == legacy.to_ascii()  # the legacy digest does not cover the order


def test_a_forged_digest_survives_the_conversion() -> None:
    e = parse_measurement_list(_files("be")[0], byte_order="big")[2]
    forged = e._replace(template_digest=bytes(19) + b"\x01")
    assert forged.with_byte_order("little").template_digest == forged.template_digest


def test_cli_show_and_convert(tmp_path: Path) -> None:
    binary, ascii_text = _files("be")
    src = S390X / "be" / "ima" / "binary_runtime_measurements"
    run = [sys.executable, "-m", "imasim", "log"]
    shown = subprocess.run([*run, "show", str(src), "--big-endian"], capture_output=True,
                           text=True, check=True)
    assert shown.stdout == ascii_text
    out = tmp_path / "list.bin"
    subprocess.run([*run, "convert", str(S390X / "be" / "ima" / "ascii_runtime_measurements"),
                    str(out), "--to", "binary", "--big-endian"], check=True)
    assert out.read_bytes() == binary
    # without --big-endian the order is detected from the records
    detected = subprocess.run([*run, "show", str(src)], capture_output=True, text=True)
    assert detected.returncode == 0 and detected.stdout == ascii_text
    # forced to the wrong order, the parser says where it broke
    bad = subprocess.run([*run, "show", "-"], input=binary[:4][::-1] + binary[4:],
                         capture_output=True)
    assert bad.returncode == 2 and b"offset" in bad.stderr

