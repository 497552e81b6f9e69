"""Access to the real-kernel captures in tests/vectors/realkernel/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imasim.algorithms import HashAlgorithm
from imasim.ima import MeasurementList, parse_measurement_list

REALKERNEL = Path(__file__).parent / "vectors" / "realkernel"


@dataclass(frozen=True)
class Stage:
    scenario: str
    stage: str
    path: Path

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.stage}"

    @property
    def binary(self) -> bytes:
        return (self.path / "ima" / "binary_runtime_measurements").read_bytes()

    @property
    def ascii(self) -> str:
        return (self.path / "ima" / "ascii_runtime_measurements").read_text()

    def entries(self) -> MeasurementList:
        return parse_measurement_list(self.binary)

    def pcrs(self) -> dict[HashAlgorithm, dict[int, bytes]]:
        d = json.loads((self.path / "pcrs.json").read_text())
        return {HashAlgorithm.from_name(a): {int(i): bytes.fromhex(v) for i, v in b.items()}
                for a, b in d.items()}

    def per_bank_files(self) -> list[tuple[HashAlgorithm, Path]]:
        out = []
        for p in sorted((self.path / "ima").glob("binary_runtime_measurements_*")):
            out.append((HashAlgorithm.from_name(p.name.rsplit("_", 1)[1]), p))
        return out


def stages() -> list[Stage]:
    out = []
    for sc in sorted(p for p in REALKERNEL.iterdir() if p.is_dir()):
        for st in sorted(sc.glob("stage*")):
            out.append(Stage(sc.name, st.name, st))
    return out


def stage(scenario: str, name: str = "stage1") -> Stage:
    return Stage(scenario, name, REALKERNEL / scenario / name)
