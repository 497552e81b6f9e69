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

Also the library call ``attest_file`` in a fresh interpreter (with the policy's record
index, and with every record hashed), the peak RSS of the command, and the sha1-bank command
against Keylime on a list of the shape a real kernel writes: each allowed record once
(100,000 entries), where the record index never pays within one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _mem import child_usage
from bench_replay import ALLOWED, allowed_digest, allowed_path, allowlist_list

from imasim.algorithms import HashAlgorithm as H
from imasim.ima.codec import iter_measurement_list
from imasim.ima.replay import boot_aggregate, replay_file
from imasim.runtime_policy import RuntimePolicy
from imasim.tpm import PcrSelection, SoftTpm
from imasim.tpm.verify import write_pcr_file

NONCE = bytes.fromhex("0011223344556677")
_LIBRARY = """
import time
from imasim.attest import attest_file, _KnownRecords
from imasim.runtime_policy import RuntimePolicy
from imasim.tpm.verify import parse_pcr_file
if not {index}:
    _KnownRecords.index_after = lambda *a: None
tmp = {tmp!r}
policy = RuntimePolicy.from_keylime_json(open(tmp + "/policy.json").read())
_, values = parse_pcr_file(open(tmp + "/q.pcrs", "rb").read())
t0 = time.process_time()
with open({lst!r}, "rb") as f:
    rep = attest_file(f, reference=policy, quote_attest=open(tmp + "/q.msg", "rb").read(),
                      quote_signature=open(tmp + "/q.sig", "rb").read(),
                      ak_public=open(tmp + "/q.ak.pem", "rb").read(),
                      nonce=bytes.fromhex({nonce!r}), pcr_values=values)
print(time.process_time() - t0, rep.verified_entries, len(rep.failures))
"""
# a verifier that keeps its policy: load it once, then attest LISTS lists (each its own
# file object), printing the CPU time of each attestation
_KEPT_IMASIM = """
import sys, time
from imasim.attest import attest_file
from imasim.runtime_policy import RuntimePolicy
from imasim.tpm.verify import parse_pcr_file
tmp, lst, lists = sys.argv[1], sys.argv[2], int(sys.argv[3])
policy = RuntimePolicy.from_keylime_json(open(tmp + "/policy.json").read())
_, values = parse_pcr_file(open(tmp + "/qd.pcrs", "rb").read())
quote = {{"quote_attest": open(tmp + "/qd.msg", "rb").read(),
          "quote_signature": open(tmp + "/qd.sig", "rb").read(),
          "ak_public": open(tmp + "/qd.ak.pem", "rb").read(),
          "nonce": bytes.fromhex({nonce!r}), "pcr_values": values}}
for _ in range(lists):
    t0 = time.process_time()
    with open(lst, "rb") as f:
        rep = attest_file(f, reference=policy, **quote)
    assert rep.verified_entries == rep.entries, rep.summary()
    print(time.process_time() - t0)
"""
_KEPT_KEYLIME = """
import json, sys, time, types
sys.modules.setdefault("gpg", types.ModuleType("gpg"))
from keylime.common.algorithms import Hash
from keylime.ima import ima
policy = json.load(open(sys.argv[2]))
for _ in range(int(sys.argv[4])):
    t0 = time.process_time()
    lines = open(sys.argv[1], encoding="utf-8").read().splitlines(True)
    ima.process_measurement_list(None, lines, policy, pcrval=sys.argv[3], hash_alg=Hash.SHA1)
    print(time.process_time() - t0)
"""
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


def _with_boot_aggregate(data: bytes, tpm: SoftTpm) -> bytes:
    """A list of allowlist_list with its first record made the boot_aggregate of ``tpm``."""
    agg = boot_aggregate({a: dict(enumerate(tpm.pcr_values(a))) for a in tpm.banks}).digest
    pack = struct.Struct("<I").pack
    f1 = b"sha256:\0" + agg
    f2 = b"boot_aggregate\0"
    rec_data = pack(len(f1)) + f1 + pack(len(f2)) + f2
    old_len = struct.unpack_from("<I", data, 4 + 20 + 4 + 6)[0]
    head = pack(10) + hashlib.sha1(rec_data).digest() + pack(6) + b"ima-ng" + pack(len(rec_data))
    return head + rec_data + data[4 + 20 + 4 + 6 + 4 + old_len:]


def _distinct_list(tpm: SoftTpm) -> bytes:
    """A list shaped as a real kernel writes it: the boot_aggregate, then each allowed
    record once in a random order (with allowlist_list's strays every 10,000 entries)."""
    order = list(range(ALLOWED))
    random.Random(5).shuffle(order)
    return _with_boot_aggregate(allowlist_list(ALLOWED + 1, picks=order), tpm)


def _quoted(tpm: SoftTpm, lst: Path, tmp: Path, name: str,
            banks: tuple[H, ...]) -> tuple[SoftTpm, Any, list[str]]:
    """A TPM whose PCR 10 holds what ``lst`` replays to, its AK, its quote of PCRs 0-10
    in ``banks`` written to ``name``.msg/.sig/.pcrs, and the imasim attest arguments."""
    with lst.open("rb") as f:
        r = replay_file(f, banks=(H.SHA1, H.SHA256))
    state = json.loads(tpm.to_json())
    for a in (H.SHA1, H.SHA256):
        state["pcrs"][a.kernel_name][10] = r.pcrs[a][10].hex()
    tpm = SoftTpm.from_json(json.dumps(state))
    ak = tpm.create_ak("ecc", seed=b"bench")
    q = tpm.quote(ak, PcrSelection({a: range(11) for a in banks}), NONCE)
    (tmp / f"{name}.ak.pem").write_bytes(ak.public_pem)
    (tmp / f"{name}.msg").write_bytes(q.attest)
    (tmp / f"{name}.sig").write_bytes(q.signature)
    (tmp / f"{name}.pcrs").write_bytes(write_pcr_file(q.selection,
                                                      [v for _, _, v in q.pcr_values]))
    return tpm, q, [sys.executable, "-m", "imasim", "attest", "-u", str(tmp / f"{name}.ak.pem"),
                    "-m", str(tmp / f"{name}.msg"), "-s", str(tmp / f"{name}.sig"), "-f",
                    str(tmp / f"{name}.pcrs"), "-q", NONCE.hex(), "--list", str(lst),
                    "--policy", str(tmp / "policy.json"), "--json"]


def _ascii(lst: Path) -> Path:
    out_path = lst.with_suffix(".ascii")
    if not out_path.exists():
        with lst.open("rb") as f, out_path.open("w", encoding="utf-8") as out:
            for e in iter_measurement_list(f):
                out.write(e.ascii_line() + "\n")
    return out_path


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 1_000_000
    tmp = Path(tempfile.gettempdir()) / "imasim-bench-attest"
    tmp.mkdir(exist_ok=True)
    tpm0 = SoftTpm((H.SHA1, H.SHA256))
    lst = tmp / f"attest-{n}.bin"
    if not lst.exists():
        lst.write_bytes(_with_boot_aggregate(allowlist_list(n), tpm0))
    distinct = tmp / f"distinct-{ALLOWED}.bin"
    if not quick and not distinct.exists():
        distinct.write_bytes(_distinct_list(tpm0))
    policy = RuntimePolicy({allowed_path(j).decode(): frozenset({allowed_digest(j).hex()})
                            for j in range(ALLOWED)})
    (tmp / "policy.json").write_text(policy.to_keylime_json())
    tpm, _, imasim = _quoted(tpm0, lst, tmp, "q", (H.SHA1, H.SHA256))
    _, _, imasim1 = _quoted(tpm0, lst, tmp, "q1", (H.SHA1,))  # Keylime's one bank
    tpm_d, _, imasim_d = _quoted(tpm0, distinct, tmp, "qd", (H.SHA1,)) if not quick \
        else (tpm, None, [])
    for a in (H.SHA1, H.SHA256):
        (tmp / f"pcrs-{a.kernel_name}").write_text(
            "".join(f"PCR-{i:02d} {tpm.read(a, i).hex()}\n" for i in range(24)))

    runs: dict[str, list[float]] = {"imasim attest": [], "imasim attest (sha1 bank)": []}
    if imasim_d:
        runs["imasim attest (sha1 bank, each record once)"] = []
    evmctl = shutil.which("evmctl")
    if evmctl:
        runs["evmctl ima_measurement"] = []
        evm = [evmctl, "ima_measurement", "--pcrs", f"sha1,{tmp / 'pcrs-sha1'}", "--pcrs",
               f"sha256,{tmp / 'pcrs-sha256'}", str(lst)]
    keylime_py = os.environ.get("KEYLIME_PYTHON")
    if keylime_py:
        runs["Keylime process_measurement_list"] = []
        script = tmp / "keylime_bench.py"
        script.write_text(_KEYLIME)
        kl = [keylime_py, str(script), str(_ascii(lst)), str(tmp / "policy.json"),
              tpm.read(H.SHA1, 10).hex()]
        if imasim_d:
            runs["Keylime (each record once)"] = []
            kl_d = [keylime_py, str(script), str(_ascii(distinct)), str(tmp / "policy.json"),
                    tpm_d.read(H.SHA1, 10).hex()]
    for cmd, size in ((imasim, n), (imasim1, n), (imasim_d, ALLOWED + 1)):
        if cmd:  # each command verifies its quote and the whole list (then times it)
            out = json.loads(subprocess.run(cmd, capture_output=True, check=False).stdout)
            assert out["quote"]["valid"] and out["verified_entries"] == size, out["notes"]
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
        if imasim_d:
            runs["imasim attest (sha1 bank, each record once)"].append(
                child_usage(imasim_d)[0])
            if keylime_py:
                runs["Keylime (each record once)"].append(child_usage(kl_d)[0])
    for k, v in runs.items():
        t = statistics.median(v)
        size = ALLOWED + 1 if "once" in k else n
        print(f"{k}: {size / t:,.0f} entries/s ({t:.2f} s CPU, median of "
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
        if imasim_d:
            print("the same on the list of each allowed record once: "
                  + ratio("Keylime (each record once)",
                          "imasim attest (sha1 bank, each record once)"))
    # the library call in a fresh interpreter (this one holds the benchmark's own heap),
    # with the policy's record index (a fresh policy: built once the list has paid for it)
    # and with every record hashed (the index refused); alternated, three rounds each
    lib: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(1 if quick else 3):
        for index in (True, False):
            code = _LIBRARY.format(index=index, lst=str(lst), tmp=str(tmp), nonce=NONCE.hex())
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.split()
            lib[index].append(float(out[0]))
            assert out[1:] == [str(n), "210" if not quick else out[2]], out
    for index in (True, False):
        t = statistics.median(lib[index])
        how = "with the record index" if index else "every record hashed"
        print(f"library attest_file (sha1+sha256), {how}: {n / t:,.0f} entries/s ({t:.2f} s "
              f"CPU, median of {', '.join(f'{x:.2f}' for x in lib[index])})")
    r = [a / b for a, b in zip(lib[True], lib[False], strict=True)]
    print(f"record index / every record hashed: {statistics.median(r):.2f} of the CPU time")
    if imasim_d:
        _kept(tmp, distinct, keylime_py, tpm_d.read(H.SHA1, 10).hex())


def _kept(tmp: Path, distinct: Path, keylime_py: str | None, pcr10: str) -> None:
    """A verifier that keeps its policy loaded (imasim's RuntimePolicy, Keylime's policy
    dict): the list of each allowed record once attested four times in one process (as
    four machines of one image would send it), CPU per list."""
    lists = 4
    out = subprocess.run([sys.executable, "-c", _KEPT_IMASIM.format(nonce=NONCE.hex()),
                          str(tmp), str(distinct), str(lists)], capture_output=True,
                         text=True, check=True).stdout.split()
    mine = [float(x) for x in out]
    print(f"policy kept, {lists} lists of each record once, imasim attest_file (sha1 "
          f"bank): {', '.join(f'{x:.3f}' for x in mine)} s CPU per list")
    if keylime_py:
        kl = [float(x) for x in subprocess.run(
            [keylime_py, "-c", _KEPT_KEYLIME, str(_ascii(distinct)), str(tmp / "policy.json"),
             pcr10, str(lists)], capture_output=True, text=True, check=True).stdout.split()]
        # the index pays for itself during the second list (as many known records met as
        # the policy allows): lists 3 and 4 are the steady state
        print(f"the same with Keylime's process_measurement_list: "
              f"{', '.join(f'{x:.3f}' for x in kl)} s CPU per list; lists 3-{lists}: "
              f"{statistics.median(kl[2:]) / statistics.median(mine[2:]):.2f}x (first list "
              f"{kl[0] / mine[0]:.2f}x)")
