"""The edge: reading and writing the files imasim's formats live in.

The core takes bytes and objects; this module turns paths into them (and back), for the
CLI and for users who want one call: measurement lists (binary or ASCII, detected),
PCR value files (``{"sha256": {"10": "<hex>"}}``, the shape ``imasim log replay --json``
prints and the real-kernel captures' ``pcrs.json`` use). JSON and TOML are read through
:func:`load_json_bounded` and :func:`load_toml_bounded`, which refuse nesting deeper than
:data:`MAX_DOCUMENT_DEPTH` before the recursive parsers see it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from ._bounded import MAX_DOCUMENT_DEPTH, load_json_bounded, load_toml_bounded
from .algorithms import HashAlgorithm
from .errors import LimitExceededError, ParseError, UnsupportedAlgorithmError, UsageError
from .ima.codec import (
    MeasurementList,
    detect_list_kind,
    parse_ascii_measurement_list,
    parse_measurement_list,
)

__all__ = [
    "KEYLIME_BASE_EXCLUDE_DIRS",
    "MAX_DOCUMENT_DEPTH",
    "MAX_SCENARIO_FILE",
    "confined_reader",
    "dump_pcrs_json",
    "is_ascii_list",
    "list_name_hint",
    "load_json_bounded",
    "load_pcrs_json",
    "load_toml_bounded",
    "read_measurement_list",
    "tree_digests",
    "write_artifacts",
]

#: the folders ``keylime-policy create runtime --rootfs`` never walks
KEYLIME_BASE_EXCLUDE_DIRS = ("/sys", "/run", "/proc", "/lost+found", "/dev", "/media", "/snap",
                             "/mnt", "/var", "/tmp")

#: the largest file a scenario may name (``source =``): 64 MiB
MAX_SCENARIO_FILE: Final = 64 << 20

PcrMap = dict[HashAlgorithm, dict[int, bytes]]


def is_ascii_list(head: bytes) -> bool:
    """Does a list file start like ``ascii_runtime_measurements`` (``10 <hex> ``)?"""
    head = head[:64]
    return bool(head) and head[:3].replace(b" ", b"").isdigit() and all(
        32 <= b < 127 or b in (9, 10) for b in head)


def list_name_hint(path: str | Path) -> HashAlgorithm | None:
    """The bank a file name suggests (``binary_runtime_measurements_sha256``): a hint for
    :func:`~imasim.ima.codec.detect_list_kind`, never the answer alone."""
    name = Path(path).name
    for prefix in ("binary_runtime_measurements_", "ascii_runtime_measurements_"):
        if name.startswith(prefix):
            try:
                return HashAlgorithm.from_name(name[len(prefix):])
            except UnsupportedAlgorithmError:
                return None
    return None


def read_measurement_list(path: str | Path, *, byte_order: str | None = None,
                          digest_alg: HashAlgorithm | None = None) -> MeasurementList:
    """A binary or ASCII list from a file (ASCII when it starts like ``10 <hex> ``).

    Unless given, a binary list's digest algorithm and byte order are found from its
    content (:func:`~imasim.ima.codec.detect_list_kind`; the file name only breaks a tie).
    """
    data = Path(path).read_bytes()
    if is_ascii_list(data):
        try:
            text = data.decode("utf-8", "surrogateescape")
        except UnicodeDecodeError:  # pragma: no cover - surrogateescape never fails
            raise ParseError("not UTF-8", field="ascii list") from None
        return parse_ascii_measurement_list(text, byte_order=byte_order or "little",
                                            digest_alg=digest_alg)
    kind = detect_list_kind(data, digest_alg=digest_alg, byte_order=byte_order,
                            hint=list_name_hint(path))
    return parse_measurement_list(data, byte_order=kind.byte_order, digest_alg=kind.digest_alg)


def load_pcrs_json(text: str | bytes) -> PcrMap:
    """``{"sha256": {"10": "<hex>", ...}, ...}`` into bank -> index -> value."""
    try:
        doc = load_json_bounded(text, what="pcrs")
        if not isinstance(doc, dict):
            raise ParseError("expected a JSON object of banks", field="pcrs")
        out: PcrMap = {}
        for bank, values in doc.items():
            alg = HashAlgorithm.from_name(bank)
            out[alg] = {}
            for idx, hexval in values.items():
                v = bytes.fromhex(hexval.removeprefix("0x"))
                if len(v) != alg.digest_size:
                    raise ParseError(f"{bank} PCR {idx} has {len(v)} bytes", field="pcrs",
                                     expected=alg.digest_size, actual=len(v))
                out[alg][int(idx)] = v
        return out
    except ParseError:
        raise
    except UnsupportedAlgorithmError as exc:
        raise ParseError(str(exc), field="pcrs") from None
    except (ValueError, AttributeError, TypeError) as exc:
        raise ParseError(f"bad PCR JSON: {exc}", field="pcrs") from None


def dump_pcrs_json(pcrs: Mapping[HashAlgorithm, Mapping[int, bytes]]) -> str:
    """The inverse of :func:`load_pcrs_json`."""
    return json.dumps({a.kernel_name: {str(i): v.hex() for i, v in sorted(b.items())}
                       for a, b in pcrs.items()}, indent=1)


def write_artifacts(directory: str | Path, artifacts: Mapping[str, bytes]) -> None:
    """Write named files (a demo's or a scenario's artifacts) into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in artifacts.items():
        (out / name).write_bytes(data)


def tree_digests(root: str | Path, alg: HashAlgorithm = HashAlgorithm.SHA256, *,
                 skip: Iterable[str] = KEYLIME_BASE_EXCLUDE_DIRS,
                 only_owned_by_root: bool = True) -> dict[str, list[bytes]]:
    """The file digests of a root file system, keyed as IMA names the files: what
    ``keylime-policy create runtime --rootfs ROOT`` collects.

    Regular files only (symlinks are not followed), paths relative to ``root`` with a
    leading ``/`` and spaces replaced by ``_`` (as Keylime does), the folders in ``skip``
    (paths under ``root``) left out, and, by default, only files owned by uid 0.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "bin").mkdir(); _ = (d / "bin" / "true").write_bytes(b"x")
    >>> tree_digests(d, only_owned_by_root=False)["/bin/true"][0].hex()[:16]
    '2d711642b726b044'
    """
    base = Path(root).resolve()
    skipped = {s.rstrip("/") or "/" for s in skip}
    out: dict[str, list[bytes]] = {}
    stack = [base]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_symlink():
                    continue
                rel = "/" + Path(entry.path).relative_to(base).as_posix()
                if entry.is_dir(follow_symlinks=False):
                    if rel not in skipped:
                        stack.append(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                if only_owned_by_root and entry.stat(follow_symlinks=False).st_uid != 0:
                    continue
                h = alg.new()
                with open(entry.path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out.setdefault(rel.replace(" ", "_"), []).append(h.digest())
    return out


def confined_reader(base: str | Path, *, max_size: int = MAX_SCENARIO_FILE
                    ) -> Callable[[str], bytes]:
    """A reader for the files a scenario in ``base`` names: relative paths that stay
    inside ``base`` once symlinks are resolved, regular files only (no /dev/zero, no
    FIFOs), at most ``max_size`` bytes (read no further). Anything else is UsageError
    (LimitExceededError for a file too large)."""
    root = Path(base).resolve()

    def read(name: str) -> bytes:
        if not name or os.path.isabs(name) or "\0" in name:
            raise UsageError(f"source {name!r}: must be a path relative to the scenario")
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise UsageError(f"source {name!r}: outside the scenario's folder")
        try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
            with open(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise UsageError(f"source {name!r}: not a regular file")
                data = f.read(max_size + 1)
        except OSError as exc:
            raise UsageError(f"source {name!r}: {exc.strerror}") from None
        if len(data) > max_size:
            raise LimitExceededError(f"source {name!r}: larger than {max_size} bytes",
                                     field="source", expected=f"at most {max_size} bytes")
        return data

    return read
