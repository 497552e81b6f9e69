"""The edge of :mod:`imasim.fleet`: bundles and fleet folders on disk.

A fleet folder, as ``imasim fleet simulate`` writes it::

    DIR/fleet.json           {"format": "imasim-fleet/1", "spec": {...}}
    DIR/policy.json          Keylime runtime policy of the fleet's software
    DIR/challenges.json      {"m000000": "<hex nonce>", ...}: the verifier's own record
    DIR/ground-truth.json    [{"machine", "tamper", "verdict", "checks", "detail"}, ...]
    DIR/machines/<id>/       one evidence bundle per machine (or <id>.tar)

>>> import tempfile
>>> from imasim.fleet.bundle import EvidenceBundle
>>> b = EvidenceBundle(machine="m1", quote_message=b"m", quote_signature=b"s",
...                    pcr_file=b"p", ak_public=b"k", nonce=b"n", measurement_list=b"")
>>> with tempfile.TemporaryDirectory() as d:
...     p, t = write_bundle(d, b), write_bundle(d, b, tar=True)
...     (p.name, t.name, read_bundle(p) == read_bundle(t) == b,
...      [x.name for x in bundle_paths(d)])
('m1', 'm1.tar', True, ['m1', 'm1.tar'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ..errors import LimitExceededError, ParseError
from .bundle import _HEADER, FILES, EvidenceBundle, check_machine_id
from .simulate import FleetSpec, fleet_policy, simulate_machines

__all__ = [
    "FLEET_FORMAT",
    "bundle_paths",
    "dump_challenges",
    "parse_challenges",
    "read_bundle",
    "read_challenges",
    "read_json",
    "write_bundle",
    "write_fleet",
    "write_json",
]

#: The ``format`` of ``fleet.json``.
FLEET_FORMAT: Final = "imasim-fleet/1"
_MAX_JSON: Final = 1 << 30


def write_bundle(directory: str | Path, bundle: EvidenceBundle, *, tar: bool = False) -> Path:
    """Write ``bundle`` as ``directory/<machine>/`` (or ``directory/<machine>.tar``)."""
    d = Path(directory)
    if tar:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{bundle.machine}.tar"
        path.write_bytes(bundle.to_tar())
        return path
    path = d / bundle.machine
    path.mkdir(parents=True, exist_ok=True)
    for name, data in bundle.to_files().items():
        (path / name).write_bytes(data)
    return path


def read_bundle(path: str | Path) -> EvidenceBundle:
    """A bundle from its folder or tar file."""
    p = Path(path)
    if p.is_dir():
        names = [_HEADER, *FILES.values()]
        return EvidenceBundle.from_files({n: (p / n).read_bytes() for n in names
                                          if (p / n).is_file()})
    return EvidenceBundle.from_tar(p.read_bytes())


def bundle_paths(directory: str | Path) -> list[Path]:
    """Every bundle in ``directory`` (folders holding ``bundle.json``, and ``*.tar``), or in
    its ``machines/`` subfolder when it has one; sorted by name."""
    d = Path(directory)
    if (d / "machines").is_dir():
        d = d / "machines"
    if (d / _HEADER).is_file():
        return [d]
    out = []
    with os.scandir(d) as it:
        for e in it:
            is_tar = e.name.endswith(".tar") and e.is_file()
            if is_tar or (e.is_dir() and os.path.isfile(os.path.join(e.path, _HEADER))):
                out.append(Path(e.path))
    return sorted(out, key=lambda p: p.name)


def read_json(path: str | Path) -> Any:
    """A JSON file (a fleet's ``policy.json``, ``challenges.json``, ``ground-truth.json``)."""
    p = Path(path)
    if p.stat().st_size > _MAX_JSON:
        raise LimitExceededError(f"{p} is larger than 1 GiB", field="json")
    try:
        return json.loads(p.read_bytes())
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"{p}: not JSON: {exc}", field="json") from None


def write_json(path: str | Path, doc: Any) -> None:
    """Write ``doc`` as JSON (indent 1, a final newline)."""
    Path(path).write_text(json.dumps(doc, indent=1) + "\n")


def read_challenges(path: str | Path) -> dict[str, bytes]:
    """``challenges.json``: machine id -> the nonce the verifier sent it."""
    doc = read_json(path)
    return parse_challenges(doc)


def parse_challenges(doc: Any) -> dict[str, bytes]:
    """``{"m000000": "<hex>"}`` into machine id -> nonce (ParseError when malformed)."""
    if not isinstance(doc, Mapping):
        raise ParseError("challenges must be a JSON object of machine -> hex nonce",
                         field="challenges")
    out = {}
    for k, v in doc.items():
        check_machine_id(k)
        try:
            out[k] = bytes.fromhex(v)
        except (ValueError, TypeError):
            raise ParseError(f"challenge of {k!r} is not hex", field="challenges") from None
    return out


def dump_challenges(challenges: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """The inverse of :func:`parse_challenges`."""
    return {m: n.hex() for m, n in challenges}


def _simulate_chunk(spec: FleetSpec, indices: Sequence[int], machines_dir: str, tar: bool
                    ) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for bundle, challenge, truth in simulate_machines(spec, indices):
        write_bundle(machines_dir, bundle, tar=tar)
        out.append((bundle.machine, challenge.hex(), truth.to_dict()))
    return out


def write_fleet(spec: FleetSpec, directory: str | Path, *, tar: bool = False,
                workers: int = 1, on_progress: Callable[[int], None] | None = None) -> Path:
    """Simulate ``spec`` into a fleet folder (the layout above), machines written as they
    are made; ``workers`` > 1 simulates chunks in that many processes (same bytes)."""
    d = Path(directory)
    machines = d / "machines"
    machines.mkdir(parents=True, exist_ok=True)
    chunk = 64
    chunks = [range(i, min(i + chunk, spec.machines)) for i in range(0, spec.machines, chunk)]
    rows: list[tuple[str, str, dict[str, Any]]] = []
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for res in pool.map(_simulate_chunk, [spec] * len(chunks), chunks,
                                [str(machines)] * len(chunks), [tar] * len(chunks)):
                rows += res
                if on_progress is not None:
                    on_progress(len(res))
    else:
        for c in chunks:
            res = _simulate_chunk(spec, c, str(machines), tar)
            rows += res
            if on_progress is not None:
                on_progress(len(res))
    write_json(d / "fleet.json", {"format": FLEET_FORMAT, "spec": spec.to_dict(),
                                  "bundles": "tar" if tar else "folder"})
    (d / "policy.json").write_bytes(fleet_policy(spec))
    write_json(d / "challenges.json", {m: c for m, c, _ in rows})
    write_json(d / "ground-truth.json", [t for _, _, t in rows])
    return d
