"""Every real-kernel capture parses, re-serialises byte for byte, and renders its ASCII file."""

from __future__ import annotations

import io

import pytest

from imasim.algorithms import HashAlgorithm
from imasim.ima import (
    iter_measurement_list,
    parse_ascii_measurement_list,
    parse_measurement_list,
)
from realdata import Stage, stages

STAGES = stages()


@pytest.mark.parametrize("st", STAGES, ids=[s.id for s in STAGES])
def test_binary_roundtrip_and_ascii(st: Stage) -> None:
    lst = st.entries()
    assert len(lst) == int((st.path / "ima" / "runtime_measurements_count").read_text())
    assert lst.to_bytes() == st.binary
    assert lst.to_ascii() == st.ascii
    back = parse_ascii_measurement_list(st.ascii)
    assert back.to_bytes() == st.binary
    assert list(iter_measurement_list(io.BytesIO(st.binary), chunk_size=5)) == list(lst)
    assert list(iter_measurement_list(memoryview(st.binary))) == list(lst)


@pytest.mark.parametrize("st", STAGES, ids=[s.id for s in STAGES])
def test_stored_digests_and_violations(st: Stage) -> None:
    lst = st.entries()
    violations = int((st.path / "ima" / "violations").read_text())
    assert sum(e.is_violation for e in lst) >= violations  # restored ones are not counted
    for e in lst:
        if not e.is_violation:
            assert e.template_digest == e.template_hash(HashAlgorithm.SHA1)


@pytest.mark.parametrize("st", [s for s in STAGES if s.scenario.startswith("k612")],
                         ids=lambda s: s.id)
def test_per_bank_lists_of_6_12(st: Stage) -> None:
    classic = st.entries()
    banks = st.per_bank_files()
    assert {a for a, _ in banks} == set(st.pcrs())  # a list for every bank of the TPM
    for alg, path in banks:
        data = path.read_bytes()
        lst = parse_measurement_list(data, digest_alg=alg)
        assert lst.to_bytes() == data
        ascii_path = path.with_name(path.name.replace("binary", "ascii"))
        assert lst.to_ascii() == ascii_path.read_text()
        # the per-bank file is what imasim derives from the classic list
        assert classic.for_bank(alg).to_bytes() == data


def test_fields_of_a_real_entry() -> None:
    lst = STAGES[0].entries()
    first = lst[0]
    assert first.template_name == "ima-ng"
    assert first.event_name == "boot_aggregate"
    d = first.file_digest
    assert d is not None and d.algo == "sha256"
    assert d.digest.hex().startswith("835fcff8")
