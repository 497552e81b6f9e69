"""Measurement-list parsing: entries/s from a file, vs evmctl ima_measurement; memory."""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

from _gen import cached_list, time_evmctl
from _mem import peak_rss_mb

from imasim.ima import iter_measurement_list, parse_measurement_list


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 1_000_000
    tmp = Path(tempfile.gettempdir()) / "imasim-bench"
    tmp.mkdir(exist_ok=True)
    path = cached_list(n, tmp)
    size = path.stat().st_size
    print(f"list: {n} ima-ng entries, {size / 1e6:.1f} MB")

    t0 = time.perf_counter()
    lst = parse_measurement_list(path.read_bytes())
    count = 0
    for _entry in lst:  # every entry materialised once (fields decode on access)
        count += 1
    t_parse = time.perf_counter() - t0
    assert count == n
    print(f"parse file, validate, and build every entry: {n / t_parse:,.0f} entries/s "
          f"({t_parse:.2f} s)")
    t0 = time.perf_counter()
    entries = list(lst)
    t_hold = time.perf_counter() - t0
    print(f"  holding all {n} entry objects at once (list(lst)) adds {t_hold:.2f} s")
    del entries, lst
    gc.collect()

    base = peak_rss_mb("import imasim.ima")
    loaded = peak_rss_mb(
        "from pathlib import Path\nfrom imasim.ima import parse_measurement_list\n"
        f"lst = parse_measurement_list(Path({str(path)!r}).read_bytes())\n"
        "assert len(lst)")
    print(f"fully loaded list: peak RSS {loaded - base:.1f} MB above the interpreter "
          f"({(loaded - base) * 1e6 / size:.2f}x the file's {size / 1e6:.1f} MB)")
    t0 = time.perf_counter()
    with path.open("rb") as f:
        count = sum(1 for _ in iter_measurement_list(f))
    t_stream = time.perf_counter() - t0
    assert count == n
    streaming = peak_rss_mb(
        "from imasim.ima import iter_measurement_list\n"
        f"f = open({str(path)!r}, 'rb')\n"
        "n = sum(1 for _ in iter_measurement_list(f))")
    print(f"streaming from a file: {n / t_stream:,.0f} entries/s, peak RSS {streaming:.1f} MB "
          f"(interpreter + imasim alone: {base:.1f} MB)")

    t_evm = time_evmctl(path, tmp, n)
    if t_evm is not None:
        print(f"imasim parse / evmctl throughput: {t_evm / t_parse:.2f}x")

if __name__ == "__main__":
    main()
