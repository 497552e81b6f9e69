"""The real firmware event logs in tests/vectors/realkernel and tpm2_eventlog's YAML of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from realdata import REALKERNEL, Stage

LOG = "tpm0/binary_bios_measurements"


def log_stages() -> list[Stage]:
    out = []
    for sc in sorted(p for p in REALKERNEL.iterdir() if p.is_dir()):
        for st in sorted(sc.glob("stage*")):
            if (st / LOG).is_file():
                out.append(Stage(sc.name, st.name, st))
    return out


def norm(x: Any) -> Any:
    """tpm2_eventlog's YAML read with BaseLoader (every scalar a string, empty blocks "")."""
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [norm(v) for v in x]
    return "" if x is None else x


def read_tpm2_yaml(text: str) -> Any:
    doc = yaml.load(text, Loader=yaml.BaseLoader)
    doc["pcrs"] = {a: {k.strip(): v for k, v in (b or {}).items()}
                   for a, b in (doc.get("pcrs") or {}).items()}
    return doc


def yaml_of(path: Path) -> Any:
    return read_tpm2_yaml(path.read_text())
