"""Replay with every template digest checked, vs evmctl ima_measurement; appraisal overhead."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _gen import cached_list, time_evmctl
from _mem import peak_rss_mb

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import ReferenceValues, appraise_entry
from imasim.ima import MeasurementEntry, iter_measurement_list
from imasim.ima.replay import replay, replay_file


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 1_000_000
    tmp = Path(tempfile.gettempdir()) / "imasim-bench"
    tmp.mkdir(exist_ok=True)
    path = cached_list(n, tmp)
    t0 = time.perf_counter()
    with path.open("rb") as f:
        r0 = replay(iter_measurement_list(f), banks=(H.SHA1, H.SHA256))
    t_entries = time.perf_counter() - t0
    print(f"replay of streamed entry objects: {n / t_entries:,.0f} entries/s")
    t0 = time.perf_counter()
    with path.open("rb") as f:
        r = replay_file(f, banks=(H.SHA1, H.SHA256))
    t_replay = time.perf_counter() - t0
    assert r.count == n and not r.bad_digests and r.pcrs == r0.pcrs
    rss = peak_rss_mb(
        "from imasim.algorithms import HashAlgorithm as H\n"
        "from imasim.ima.replay import replay_file\n"
        f"f = open({str(path)!r}, 'rb')\n"
        "r = replay_file(f, banks=(H.SHA1, H.SHA256))")
    print(f"replay_file sha1+sha256, stored digests checked, streaming: {n / t_replay:,.0f} "
          f"entries/s ({t_replay:.2f} s), peak RSS {rss:.1f} MB")

    # appraisal against a 100,000-path allowlist (every tenth entry's path is unknown)
    allow = {}
    with path.open("rb") as f:
        for i, e in enumerate(iter_measurement_list(f)):
            if i >= 100_000:
                break
            fd = e.file_digest
            assert fd is not None
            allow[e.event_name] = frozenset({fd.digest.hex()})
    ref = ReferenceValues(allow)
    failures = []

    def appraised(it: Iterator[MeasurementEntry]) -> Iterator[MeasurementEntry]:
        for i, e in enumerate(it):
            v = appraise_entry(i, e, ref)
            if v is not None:
                failures.append(v)
            yield e

    t0 = time.perf_counter()
    with path.open("rb") as f:
        r2 = replay(appraised(iter_measurement_list(f)), banks=(H.SHA1, H.SHA256))
    t_both = time.perf_counter() - t0
    print(f"replay + appraisal in the same pass (100,000-path allowlist, {len(failures)} "
          f"unknown paths): {n / t_both:,.0f} entries/s, +{(t_both / t_replay - 1) * 100:.0f}% "
          "over replay")
    assert r2.count == n

    t_evm = time_evmctl(path, tmp, n)
    if t_evm is not None:
        print(f"imasim replay / evmctl throughput: {t_evm / t_replay:.2f}x")

if __name__ == "__main__":
    main()
