"""Every measurement-list entry of a fleet as a row, streamed into Parquet.

One row per entry: ``machine``, ``index``, ``pcr``, ``template``, ``digest_alg``,
``file_digest`` (hex), ``path``, ``signature`` (the entry carries a signature), and
``verdict``: the entry's verdict from the machine's attestation (``ok``, a failure such
as ``unknown-path``, or ``unverified`` for an entry no verified quote covers, the whole
list when the quote or the replay failed). Bundles are read one at a time and rows are
written in row groups of ``row_group`` rows, so memory stays bounded whatever the size
of the fleet. Needs the ``fleet`` extra (pyarrow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..attest import ReferenceValues
from ..errors import ImasimError
from ..ima.codec import parse_measurement_list
from .bundle import EvidenceBundle
from .verify import attest_bundle

__all__ = ["COLUMNS", "entry_rows", "write_entries_table"]

#: The columns of the entries table, in order.
COLUMNS = ("machine", "index", "pcr", "template", "digest_alg", "file_digest", "path",
           "signature", "verdict")
_SIG_FIELDS = ("sig", "modsig", "evmsig")


def entry_rows(bundle: EvidenceBundle, reference: ReferenceValues | None, *,
               nonce: bytes | None = None) -> Iterator[tuple[Any, ...]]:
    """The rows of one bundle (tuples in :data:`COLUMNS` order)."""
    try:
        report, _ = attest_bundle(bundle, reference,
                                  nonce=bundle.nonce if nonce is None else nonce)
        verified = report.verified_entries if report.quote_valid else 0
        failed: dict[int, str] = {}
        for f in report.failures:
            failed.setdefault(f.index, f.verdict.value)
    except ImasimError:
        verified, failed = 0, {}
    try:
        entries = parse_measurement_list(bundle.measurement_list,
                                         digest_alg=bundle.list_digest_alg)
    except ImasimError:
        return
    machine = bundle.machine
    alg: str | None
    digest: str | None
    for i, e in enumerate(entries):
        fast = _ima_ng(e.template_data) if e.template_name == "ima-ng" and \
            e.byte_order == "little" else None
        if fast is not None:
            alg, digest, name = fast
            signed = False
        else:
            try:
                d = e.file_digest
                alg, digest = (d.algo, d.digest.hex()) if d else (None, None)
                name = e.event_name
                signed = e.template_name not in ("ima", "ima-ngv2", "ima-buf") and any(
                    bool(e.fields.get(k)) for k in _SIG_FIELDS)
            except ImasimError:
                alg, digest, name, signed = None, None, e._safe_name(), False
        verdict = failed.get(i, "ok" if i < verified else "unverified")
        yield (machine, i, e.pcr, e.template_name, alg, digest, name, signed, verdict)


def _ima_ng(data: bytes) -> tuple[str, str, str] | None:
    """An ima-ng record's (algorithm, hex digest, name) read from its two fields, or None
    when the data does not have exactly that shape (then the entry decodes in full)."""
    n1 = int.from_bytes(data[0:4], "little")
    d = data[4:4 + n1]
    p = 4 + n1
    n2 = int.from_bytes(data[p:p + 4], "little")
    nul = d.find(b"\0")
    if len(data) != p + 4 + n2 or not n2 or data[-1:] != b"\0" or nul < 2 or \
            d[nul - 1:nul] != b":":
        return None
    try:
        alg = d[:nul - 1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return alg, d[nul + 1:].hex(), data[p + 4:-1].decode("utf-8", "surrogateescape")


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("machine", pa.string()), ("index", pa.int32()), ("pcr", pa.int32()),
                      ("template", pa.string()), ("digest_alg", pa.string()),
                      ("file_digest", pa.string()), ("path", pa.string()),
                      ("signature", pa.bool_()), ("verdict", pa.string())])


def write_entries_table(bundles: Iterable[EvidenceBundle], out: str | Path,
                        reference: ReferenceValues | None = None, *,
                        challenges: Mapping[str, bytes] | None = None,
                        row_group: int = 1 << 15,
                        on_progress: Callable[[int], None] | None = None) -> int:
    """Write every entry of ``bundles`` to the Parquet file ``out`` (zstd, dictionary
    encoded); returns the number of rows. Memory is bounded by one bundle and one row
    group. A bundle whose machine has no challenge (when ``challenges`` is given) gets
    every entry ``unverified``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    cols: list[list[Any]] = [[] for _ in COLUMNS]
    total = 0

    def flush() -> None:
        writer.write_table(pa.Table.from_arrays(
            [pa.array(c, type=schema.field(k).type) for k, c in enumerate(cols)],
            schema=schema), row_group_size=row_group)
        for c in cols:
            c.clear()

    with pq.ParquetWriter(str(out), schema, compression="zstd") as writer:
        for b in bundles:
            nonce = None
            if challenges is not None:
                nonce = challenges.get(b.machine, b"\0" * 20 + b"no challenge")
            n = 0
            for row in entry_rows(b, reference, nonce=nonce):
                for k, v in enumerate(row):
                    cols[k].append(v)
                n += 1
                if len(cols[0]) >= row_group:
                    flush()
            total += n
            if on_progress is not None:
                on_progress(1)
        if cols[0]:
            flush()
    return total
