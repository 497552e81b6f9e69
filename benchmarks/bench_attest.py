"""``imasim attest`` (per process) vs ``evmctl ima_measurement`` and Keylime's own verifier.

One realistic list of N ima-ng entries (a boot_aggregate, then paths drawn from a
100,000-path allowlist with their digests, a stray unknown path and wrong digest every
10,000 entries, a violation every 100,000), the Keylime runtime policy of that allowlist,
and a quote of PCRs 0-10 (sha1+sha256) by imasim's TPM loaded with what the list replays
to. Timed as CPU time of each process (user+sys of the child), interleaved (each
reference tool beside the imasim command it is compared with), five rounds, each ratio
the median of the rounds' own:

- ``imasim attest -u -m -s -f -q --list --policy`` (the command users run), with a quote
  of sha1+sha256 (compared with evmctl, which replays both) and of sha1 alone (compared
  with Keylime, whose verifier replays one bank);
- ``evmctl ima_measurement --pcrs sha1,F --pcrs sha256,F LIST`` (replay only, no policy);
- Keylime's ``process_measurement_list`` on the same list (ASCII, as its agent sends it)
  and policy, run by the Python that has Keylime: ``KEYLIME_PYTHON=/path/to/python``
  (``python3 -m venv kl && kl/bin/pip install keylime pyyaml jsonschema ...``; skipped
  without it).

Also the library call ``attest_file`` in this process, and the peak RSS of the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from _mem import child_usage
from bench_replay import ALLOWED, allowed_digest, allowed_path, allowlist_list

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import attest_file
from imasim.ima.codec import iter_measurement_list
from imasim.ima.replay import boot_aggregate, replay_file
from imasim.runtime_policy import RuntimePolicy
from imasim.tpm import PcrSelection, SoftTpm
from imasim.tpm.verify import write_pcr_file

NONCE = bytes.fromhex("0011223344556677")
_KEYLIME = """
import json, sys, types
sys.modules.setdefault("gpg", types.ModuleType("gpg"))
from keylime.common.algorithms import Hash
from keylime.ima import ima
lines = open(sys.argv[1], encoding="utf-8").read().splitlines(True)
policy = json.load(open(sys.argv[2]))
_, failure = ima.process_measurement_list(None, lines, policy, pcrval=sys.argv[3],
                                          hash_alg=Hash.SHA1)
print(len(failure.events))
"""


def _list_with_boot_aggregate(n: int, tpm: SoftTpm) -> bytes:
    """allowlist_list(n) with its first record made the boot_aggregate of ``tpm``."""
    data = bytearray(allowlist_list(n))
    agg = boot_aggregate({a: dict(enumerate(tpm.pcr_values(a))) for a in tpm.banks}).digest
    pack = struct.Struct("<I").pack
    f1 = b"sha256:\0" + agg
    f2 = b"boot_aggregate\0"
    rec_data = pack(len(f1)) + f1 + pack(len(f2)) + f2
    old_len = struct.unpack_from("<I", data, 4 + 20 + 4 + 6)[0]
    head = pack(10) + hashlib.sha1(rec_data).digest() + pack(6) + b"ima-ng" + pack(len(rec_data))
    data[:4 + 20 + 4 + 6 + 4 + old_len] = head + rec_data
    return bytes(data)


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 1_000_000
    tmp = Path(tempfile.gettempdir()) / "imasim-bench-attest"
    tmp.mkdir(exist_ok=True)
    tpm = SoftTpm((H.SHA1, H.SHA256))
    lst = tmp / f"attest-{n}.bin"
    if not lst.exists():
        lst.write_bytes(_list_with_boot_aggregate(n, tpm))
    with lst.open("rb") as f:
        r = replay_file(f, banks=(H.SHA1, H.SHA256))
    state = json.loads(tpm.to_json())
    for a in (H.SHA1, H.SHA256):
        state["pcrs"][a.kernel_name][10] = r.pcrs[a][10].hex()
    tpm = SoftTpm.from_json(json.dumps(state))
    ak = tpm.create_ak("ecc", seed=b"bench")
    q = tpm.quote(ak, PcrSelection({H.SHA1: range(11), H.SHA256: range(11)}), NONCE)
    q1 = tpm.quote(ak, PcrSelection({H.SHA1: range(11)}), NONCE)  # Keylime's one bank
    files = {"ak.pem": ak.public_pem, "q.msg": q.attest, "q.sig": q.signature,
             "q.pcrs": write_pcr_file(q.selection, [v for _, _, v in q.pcr_values]),
             "q1.msg": q1.attest, "q1.sig": q1.signature,
             "q1.pcrs": write_pcr_file(q1.selection, [v for _, _, v in q1.pcr_values])}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    policy = RuntimePolicy({allowed_path(j).decode(): frozenset({allowed_digest(j).hex()})
                            for j in range(ALLOWED)})
    (tmp / "policy.json").write_text(policy.to_keylime_json())
    for a in (H.SHA1, H.SHA256):
        (tmp / f"pcrs-{a.kernel_name}").write_text(
            "".join(f"PCR-{i:02d} {tpm.read(a, i).hex()}\n" for i in range(24)))

    imasim = [sys.executable, "-m", "imasim", "attest", "-u", str(tmp / "ak.pem"), "-m",
              str(tmp / "q.msg"), "-s", str(tmp / "q.sig"), "-f", str(tmp / "q.pcrs"), "-q",
              NONCE.hex(), "--list", str(lst), "--policy", str(tmp / "policy.json"),
              "--json"]
    imasim1 = [*imasim]
    for old, new in (("q.msg", "q1.msg"), ("q.sig", "q1.sig"), ("q.pcrs", "q1.pcrs")):
        imasim1[imasim1.index(str(tmp / old))] = str(tmp / new)
    runs: dict[str, list[float]] = {"imasim attest": [], "imasim attest (sha1 bank)": []}
    evmctl = shutil.which("evmctl")
    if evmctl:
        runs["evmctl ima_measurement"] = []
        evm = [evmctl, "ima_measurement", "--pcrs", f"sha1,{tmp / 'pcrs-sha1'}", "--pcrs",
               f"sha256,{tmp / 'pcrs-sha256'}", str(lst)]
    keylime_py = os.environ.get("KEYLIME_PYTHON")
    if keylime_py:
        runs["Keylime process_measurement_list"] = []
        ascii_path = tmp / f"attest-{n}.ascii"
        if not ascii_path.exists():
            with lst.open("rb") as f, ascii_path.open("w", encoding="utf-8") as out:
                for e in iter_measurement_list(f):
                    out.write(e.ascii_line() + "\n")
        script = tmp / "keylime_bench.py"
        script.write_text(_KEYLIME)
        kl = [keylime_py, str(script), str(ascii_path), str(tmp / "policy.json"),
              tpm.read(H.SHA1, 10).hex()]
    # the host's speed drifts (shared cores): each reference tool runs right beside the
    # imasim command it is compared with, and each ratio is the median of the rounds' own
    rss = 0.0
    for _ in range(2 if quick else 5):
        if evmctl:
            runs["evmctl ima_measurement"].append(child_usage(evm)[0])
        cpu, rc, rss = child_usage(imasim)
        assert rc in (0, 1), rc
        runs["imasim attest"].append(cpu)
        runs["imasim attest (sha1 bank)"].append(child_usage(imasim1)[0])
        if keylime_py:
            runs["Keylime process_measurement_list"].append(child_usage(kl)[0])
    for k, v in runs.items():
        t = statistics.median(v)
        print(f"{k}: {n / t:,.0f} entries/s ({t:.2f} s CPU, median of "
              f"{', '.join(f'{x:.2f}' for x in v)})")
    print(f"imasim attest peak RSS {rss:.1f} MB (the 100,000-path policy included)")

    def ratio(ref: str, mine: str) -> str:
        r = [a / b for a, b in zip(runs[ref], runs[mine], strict=True)]
        return f"{statistics.median(r):.2f}x ({', '.join(f'{x:.2f}' for x in r)})"

    if "evmctl ima_measurement" in runs:  # both replay sha1 + sha256
        print("imasim attest / evmctl (sha1+sha256 banks), median of rounds: "
              + ratio("evmctl ima_measurement", "imasim attest"))
    if "Keylime process_measurement_list" in runs:  # both replay the sha1 bank
        print("imasim attest / Keylime (sha1 bank, same policy), median of rounds: "
              + ratio("Keylime process_measurement_list", "imasim attest (sha1 bank)"))
    t0 = time.process_time()
    with lst.open("rb") as f:
        rep = attest_file(f, reference=policy, quote_attest=q.attest,
                          quote_signature=q.signature, ak_public=ak.public_pem, nonce=NONCE,
                          pcr_values=q.values_by_bank())
    t_lib = time.process_time() - t0
    print(f"library attest_file: {n / t_lib:,.0f} entries/s ({t_lib:.2f} s CPU); "
          f"{rep.verified_entries} entries verified, {len(rep.failures)} failures")
