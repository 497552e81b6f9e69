"""Fuzz targets: one per parser, each a function of ``bytes``.

The contract each target checks (STYLE.md, "Fuzz contract"): for ANY input, the parser
either returns or raises an :class:`imasim.errors.ImasimError`. Anything else (IndexError,
struct.error, a pyasn1 error, RecursionError, MemoryError...) is a bug.

Targets import their parser lazily, so one missing module does not stop the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


def _call(module: str, name: str) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        fn = getattr(importlib.import_module(module), name)
        return fn(data)

    return run


def _list_roundtrip(data: bytes) -> object:
    ima = importlib.import_module("imasim.ima")
    parsed = ima.parse_measurement_list(data)
    out = parsed.to_bytes()
    if out != data:
        raise AssertionError("a list that parses must re-serialize to the same bytes")
    return parsed


def _list_stream(data: bytes) -> object:
    import io

    ima = importlib.import_module("imasim.ima")
    return sum(1 for _ in ima.iter_measurement_list(io.BytesIO(data)))


def _ascii_list(data: bytes) -> object:
    ima = importlib.import_module("imasim.ima")
    return ima.parse_ascii_measurement_list(data.decode("utf-8", "replace"))


def _text(module: str, name: str) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        fn = getattr(importlib.import_module(module), name)
        return fn(data.decode("utf-8", "replace"))

    return run


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    seeds: tuple[str, ...]  # globs under tests/vectors


_LISTS = "realkernel/*/stage*/ima/"

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("list-binary", _list_roundtrip, (_LISTS + "binary_runtime_measurements",)),
        Target("list-stream", _list_stream, (_LISTS + "binary_runtime_measurements",)),
        Target("list-ascii", _ascii_list, (_LISTS + "ascii_runtime_measurements*",)),
        Target("kexec-buffer", _call("imasim.kexec", "restore_kexec_buffer"),
               ("../corpus/kexec-buffer/*",)),
        Target("pkcs7", _call("imasim.sig.pkcs7", "parse_pkcs7"), ("../corpus/pkcs7/*",)),
        Target("modsig", _call("imasim.sig.modsig", "parse_modsig"), ("../corpus/modsig/*",)),
        Target("xattr", _call("imasim.sig.xattr", "parse_xattr"), ("../corpus/xattr/*",)),
        Target("tpm-attest", _call("imasim.tpm", "parse_attest"), ("../corpus/tpm-attest/*",)),
        Target("tpm-signature", _call("imasim.tpm", "parse_signature"),
               ("../corpus/tpm-signature/*",)),
        Target("tpm-public", _call("imasim.tpm", "parse_public"), ("../corpus/tpm-public/*",)),
        Target("x509-key", _call("imasim.keys", "parse_key"), ("debian/*.pem",)),
        Target("ima-policy", _text("imasim.ima.policy", "parse_ima_policy"),
               ("../corpus/ima-policy/*",)),
        Target("keyring-restriction", _text("imasim.keys", "parse_restriction"),
               ("../corpus/keyring-restriction/*",)),
    )
}


def seeds(target: Target) -> list[bytes]:
    out: list[bytes] = []
    for pattern in target.seeds:
        for p in sorted(VECTORS.glob(pattern)):
            if p.is_file() and p.stat().st_size <= 4 * 1024 * 1024:
                out.append(p.read_bytes())
    return out or [b""]
