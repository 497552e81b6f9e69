"""Authenticode digest of a 10 MB PE image vs hashlib's raw sha256 over 10 MB; pesign -h.

The target (issue 7): the image hash runs at >= 80% of hashlib's throughput, in one run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _mem import peak_rss_mb

from imasim.algorithms import HashAlgorithm
from imasim.sig.authenticode import authenticode_digest
from imasim.sig.pefile import parse_pe

_MAKE_PE = Path(__file__).resolve().parent.parent / "tests" / "pe" / "make_pe.py"


def _make_image(size: int) -> bytes:
    spec = importlib.util.spec_from_file_location("make_pe", _MAKE_PE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_pe"] = mod
    spec.loader.exec_module(mod)
    n = 8
    return bytes(mod.make_pe(sections=mod.default_sections(n, size // n)))


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(quick: bool = False) -> None:
    size = 10 * 1024 * 1024
    image = _make_image(size)
    repeat = 3 if quick else 15
    mb = len(image) / 1e6
    raw = _best(lambda: hashlib.sha256(image).digest(), repeat)
    auth = _best(lambda: authenticode_digest(image, HashAlgorithm.SHA256), repeat)
    img = parse_pe(image)
    parsed = _best(lambda: authenticode_digest(img, HashAlgorithm.SHA256), repeat)
    print(f"image: {mb:.1f} MB, {len(img.sections)} sections")
    print(f"hashlib.sha256 over the whole file: {mb / raw:,.0f} MB/s")
    print(f"authenticode_digest (parse + hash):  {mb / auth:,.0f} MB/s "
          f"({raw / auth:.1%} of hashlib)")
    print(f"authenticode_digest (parsed image):  {mb / parsed:,.0f} MB/s "
          f"({raw / parsed:.1%} of hashlib)")
    pesign = shutil.which("pesign")
    if pesign is not None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "big.efi"
            p.write_bytes(image)
            t = _best(lambda: subprocess.run([pesign, "-h", "-i", str(p)], check=True,
                                             capture_output=True), max(2, repeat // 3))
        print(f"pesign -h (one process): {mb / t:,.0f} MB/s")
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"from bench_pe import _make_image\n"
            f"from imasim.sig.authenticode import authenticode_digest\n"
            f"authenticode_digest(_make_image({size}))")
    print(f"peak RSS (make a 10 MB image + digest, fresh interpreter): "
          f"{peak_rss_mb(code):.0f} MB")


if __name__ == "__main__":
    main()
