"""Short, readable reprs for the public result types: one line, the verdict first,
digests cut to a prefix, never a dump of raw bytes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .algorithms import HashAlgorithm

#: hex digits of a digest a repr shows (the rest is elided)
HEX = 12


def short(value: bytes) -> str:
    """``6806d00f8efc…`` (the whole hex when it is short)."""
    text = value.hex()
    return text if len(text) <= HEX + 2 else text[:HEX] + "…"


def indices(values: Iterable[int]) -> str:
    """``0-7,10`` for 0,1,...,7,10."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(values)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)))
    return ",".join(out)


def pcr10(pcrs: Mapping[HashAlgorithm, Mapping[int, bytes]]) -> str:
    """``sha256 PCR 10 6806d00f8efc…, sha1 PCR 10 …`` (PCR 10, else the first PCR)."""
    parts = []
    for alg, bank in pcrs.items():
        if not bank:
            parts.append(f"{alg.kernel_name} (no PCRs)")
            continue
        idx = 10 if 10 in bank else min(bank)
        parts.append(f"{alg.kernel_name} PCR {idx} {short(bank[idx])}")
    return ", ".join(parts) or "no banks"
