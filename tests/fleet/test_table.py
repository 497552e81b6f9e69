"""``fleet table``: one Parquet row per entry, read back by pyarrow and DuckDB, verdicts
from each machine's attestation, written in row groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imasim.cli import main
from imasim.fleet.io import write_fleet
from imasim.fleet.simulate import FleetSpec
from imasim.ima.codec import parse_measurement_list

pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")

SPEC = FleetSpec(machines=14, tamper=7, seed=6, entries=60)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = write_fleet(SPEC, tmp_path_factory.mktemp("fleet"))
    out = d / "entries.parquet"
    assert main(["fleet", "table", str(d), "--policy", str(d / "policy.json"),
                 "--out", str(out)]) == 0
    return d, out


def test_every_entry_is_a_row(table: tuple[Path, Path]) -> None:
    d, out = table
    rows = pq.read_table(out).to_pylist()
    want = 0
    for m in sorted((d / "machines").iterdir()):
        entries = parse_measurement_list((m / "binary_runtime_measurements").read_bytes())
        got = [r for r in rows if r["machine"] == m.name]
        assert [r["index"] for r in got] == list(range(len(entries)))
        assert [r["path"] for r in got] == [e.event_name for e in entries]
        assert [r["file_digest"] for r in got] == [e.file_digest.digest.hex()
                                                   for e in entries]  # type: ignore[union-attr]
        want += len(entries)
    assert len(rows) == want
    assert {r["template"] for r in rows} == {"ima-ng"} and not any(r["signature"]
                                                                   for r in rows)


def test_verdicts_follow_the_attestation(table: tuple[Path, Path]) -> None:
    d, out = table
    truth = {t["machine"]: t for t in json.loads((d / "ground-truth.json").read_text())}
    con = duckdb.connect()
    by = dict(con.execute(
        f"select machine, list(distinct verdict) from '{out}' group by machine").fetchall())
    for m, t in truth.items():
        v = set(by[m])
        if t["tamper"] is None:
            assert v == {"ok"}, m
        elif t["tamper"] in ("unknown-binary", "changed-digest"):
            assert set(t["checks"]) <= v and v - set(t["checks"]) == {"ok"}, (m, v)
        else:  # the quote or the replay failed: nothing in the list is verified
            assert v == {"unverified"}, (m, t["tamper"], v)
    # the documented question: which machines ran a binary the policy does not know?
    unknown = con.execute(f"select distinct machine from '{out}' "
                          "where verdict = 'unknown-path'").fetchall()
    assert [m for (m,) in unknown] == [m for m, t in truth.items()
                                       if t["tamper"] == "unknown-binary"]


def test_row_groups_bound_memory(tmp_path: Path) -> None:
    from imasim.fleet.io import bundle_paths, read_bundle
    from imasim.fleet.table import write_entries_table

    d = write_fleet(FleetSpec(machines=3, seed=1, entries=40), tmp_path)
    n = write_entries_table((read_bundle(p) for p in bundle_paths(d)), tmp_path / "e.parquet",
                            row_group=16)
    meta = pq.ParquetFile(tmp_path / "e.parquet").metadata
    assert n == 120 and meta.num_rows == 120
    assert meta.num_row_groups == 8 and meta.row_group(0).num_rows == 16
