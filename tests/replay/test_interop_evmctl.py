"""evmctl ima_measurement gives the same verdict as imasim, on real and generated lists."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.cli import main
from imasim.ima import DigestWithAlgo, MeasurementEntry, MeasurementList
from imasim.ima.builders import boot_aggregate_entry, ima_ng_entry, violation_entry
from imasim.ima.replay import MatchStatus, match, replay
from imasim.tpm.pcrs import PcrBanks
from realdata import stage, stages
from tools import need

pytestmark = pytest.mark.interop


def evmctl_run(tmp: Path, data: bytes, pcrs: dict[H, dict[int, bytes]]
               ) -> subprocess.CompletedProcess[str]:
    """evmctl ima_measurement (--ignore-violations = the kernel's 0xff extends)."""
    evmctl = need("evmctl")
    lst = tmp / "list"
    lst.write_bytes(data)
    args = [evmctl, "ima_measurement", "--ignore-violations"]
    for alg, values in pcrs.items():
        f = tmp / f"pcrs-{alg.kernel_name}"
        f.write_text("".join(f"PCR-{i:02d} {values.get(i, alg.zero).hex()}\n" for i in range(24)))
        args += ["--pcrs", f"{alg.kernel_name},{f}"]
    return subprocess.run([*args, str(lst)], capture_output=True, text=True, timeout=60)


def evmctl_verdict(tmp: Path, data: bytes, pcrs: dict[H, dict[int, bytes]]) -> bool:
    """True when evmctl matches every given bank."""
    return evmctl_run(tmp, data, pcrs).returncode == 0


CASES = stages()


@pytest.mark.parametrize("st", CASES, ids=[s.id for s in CASES])
def test_same_verdict_on_real_captures(st, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pcrs = {a: v for a, v in st.pcrs().items() if a in (H.SHA1, H.SHA256)}
    ours = match(st.entries(), pcrs).status is MatchStatus.MATCH
    proc = evmctl_run(tmp_path, st.binary, pcrs)
    if any(e.template_name == "ima" for e in st.entries()) and any(
            e.template_name != "ima" for e in st.entries()):
        # documented difference: evmctl 1.4 refuses lists mixing the legacy 'ima' template
        # with others; the kernel writes such lists, and the real PCRs confirm imasim's replay
        assert "Mixed measurement list" in proc.stderr + proc.stdout
    else:
        assert ours == (proc.returncode == 0)
    # lists that do not replay from zero: a kexec without IMA_KEXEC starts over; a restore
    # that stopped at the first legacy 'ima' entry kept only the entries before it; a 6.1
    # kexec copied the list at load, before after-load.sh
    assert ours == (st.id not in ("kexec-carry/stage2", "template-mix-sha512/stage2",
                                  "k612-custom-ima-kexec-template-mix/stage2",
                                  "custom-ima-kexec-late-measure/stage2"))


def _generated(n: int = 50) -> MeasurementList:
    out = [MeasurementEntry.create("ima-ng", [DigestWithAlgo("sha256", H.SHA256.hash(b"agg")),
                                              "boot_aggregate"])]
    for i in range(n):
        out.append(MeasurementEntry.create(
            "ima-sig" if i % 3 else "ima-ng",
            [DigestWithAlgo("sha256", H.SHA256.hash(str(i).encode())), f"/usr/bin/p{i}"]
            + ([None] if i % 3 else []), violation=(i == 7)))
    return MeasurementList(out)


def test_same_verdict_on_generated_and_tampered_lists(tmp_path: Path) -> None:
    lst = _generated()
    pcrs = replay(lst, banks=(H.SHA1, H.SHA256)).pcrs
    assert evmctl_verdict(tmp_path, lst.to_bytes(), dict(pcrs))
    assert match(lst, pcrs).matched
    entries = list(lst)
    variants = {
        "dropped": entries[:5] + entries[6:],
        "reordered": [*entries[:5], entries[6], entries[5], *entries[7:]],
        "tampered": [*entries[:5], entries[5]._replace(template_data=entries[5].template_data[:-2]
                                                       + b"x\0"), *entries[6:]],
    }
    for name, variant in variants.items():
        data = b"".join(e.to_bytes() for e in variant)
        ours = match(variant, pcrs).matched
        assert ours is False, name
        assert evmctl_verdict(tmp_path, data, dict(pcrs)) is False, name


def test_kexec_carry_pre_list_in_front(tmp_path: Path) -> None:
    s1, s2 = stage("kexec-carry", "stage1"), stage("kexec-carry", "stage2")
    pcrs = {a: v for a, v in s2.pcrs().items() if a in (H.SHA1, H.SHA256)}
    assert evmctl_verdict(tmp_path, s1.binary + s2.binary, pcrs)
    assert match(list(s1.entries()) + list(s2.entries()), pcrs).matched


# -- verified prefix and PCRs outside the quote, against evmctl ------------------------------
def _entries(n: int, pcr11: Sequence[int] = (), viol: Sequence[int] = ()) -> list[MeasurementEntry]:
    out = [boot_aggregate_entry(DigestWithAlgo("sha256", H.SHA256.hash(b"agg")))]
    for i in range(1, n):
        if i in viol:
            out.append(violation_entry("ima-ng", f"/etc/v{i}"))
            continue
        out.append(ima_ng_entry(f"/usr/bin/p{i}", H.SHA256.hash(b"%d" % i), H.SHA256,
                                pcr=11 if i in pcr11 else 10))
    return out


def _quoted(entries: Sequence[MeasurementEntry], k: int, pcrs: Sequence[int],
            padded: bool = False) -> dict[H, dict[int, bytes]]:
    """What a quote of ``pcrs`` taken after k entries holds (PCRs 0-9: boot values)."""
    state = replay(entries[:k], banks=(H.SHA1, H.SHA256),
                   padded_banks=[H.SHA256] if padded else []).pcrs
    boot = {p: H.SHA256.hash(b"boot %d" % p) for p in range(10)}
    return {a: {p: state[a].get(p, boot[p][:a.digest_size] if p < 10 else a.zero)
                for p in pcrs} for a in (H.SHA1, H.SHA256)}


def _evmctl_verdict(tmp: Path, data: bytes, quoted: dict[H, dict[int, bytes]],
                    ignore_violations: bool = True) -> bool:
    """evmctl ima_measurement, given the quoted PCRs only (the others read as absent)."""
    evmctl = need("evmctl")
    (tmp / "list").write_bytes(data)
    args = [evmctl, "ima_measurement"] + (["--ignore-violations"] if ignore_violations else [])
    for alg, values in quoted.items():
        f = tmp / f"pcrs-{alg.kernel_name}"
        # evmctl reads "PCR-NN hex" lines in order from PCR 0 up (it can only be given
        # PCRs 0..m); the ones after are absent and read as zeros
        assert sorted(values) == list(range(len(values)))
        f.write_text("".join(f"PCR-{i:02d} {v.hex()}\n" for i, v in sorted(values.items())))
        args += ["--pcrs", f"{alg.kernel_name},{f}"]
    proc = subprocess.run([*args, str(tmp / "list")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode == 0


def _cases() -> list[tuple[str, list[MeasurementEntry], dict[H, dict[int, bytes]]]]:
    base = _entries(12)
    with11 = _entries(12, pcr11=(5,))
    late11 = _entries(12, pcr11=(9,))
    viol = _entries(12, viol=(4,))
    q10 = list(range(11))
    q11 = list(range(12))
    swapped = [*base[:3], base[4], base[3], *base[5:]]
    data_tampered = [*base[:6], base[6]._replace(
        template_data=base[6].template_data.replace(b"/p6", b"/q6")), *base[7:]]
    digest_tampered = [*base[:6], base[6]._replace(template_digest=H.SHA1.hash(b"x")),
                       *base[7:]]
    return [
        ("whole list", base, _quoted(base, 12, q10)),
        ("grew after the quote", base, _quoted(base, 7, q10)),
        ("truncated: entries dropped at the end", base[:9], _quoted(base, 12, q10)),
        ("an entry dropped", base[:4] + base[5:], _quoted(base, 12, q10)),
        ("reordered", swapped, _quoted(base, 12, q10)),
        ("template data tampered", data_tampered, _quoted(base, 12, q10)),
        ("stored digest tampered", digest_tampered, _quoted(base, 12, q10)),
        ("tampered after the quoted prefix", data_tampered, _quoted(base, 5, q10)),
        ("PCR 11 entry, quote of 0-10", with11, _quoted(with11, 12, q10)),
        ("PCR 11 entry after the quote of 0-10", late11, _quoted(late11, 8, q10)),
        ("PCR 11 entry before a quote of 0-10 taken later", late11, _quoted(late11, 11, q10)),
        ("PCR 11 entry, quote of 0-11", with11, _quoted(with11, 12, q11)),
        ("PCR 11 entry dropped, quote of 0-11", with11[:5] + with11[6:],
         _quoted(with11, 12, q11)),
        ("PCR 11 entry moved to PCR 10, quote of 0-10",
         [*with11[:5], with11[5]._replace(pcr=10), *with11[6:]], _quoted(with11, 12, q10)),
        ("violation", viol, _quoted(viol, 12, q10)),
        ("violation after the quote", viol, _quoted(viol, 3, q10)),
        ("padded SHA-1 sha256 bank", base, _quoted(base, 12, q10, padded=True)),
    ]


CASES_PREFIX = _cases()


@pytest.mark.parametrize("name,entries,quoted", CASES_PREFIX,
                         ids=[c[0] for c in CASES_PREFIX])
def test_verified_prefix_and_uncovered_pcrs_agree_with_evmctl(
        name: str, entries: list[MeasurementEntry], quoted: dict[H, dict[int, bytes]],
        tmp_path: Path) -> None:
    """Same verdict as evmctl ima_measurement every time: evmctl accepts a list when some
    prefix replays to the PCRs it is given (it compares after every entry) with every
    template digest it read right; imasim's ``matched`` is that verified prefix."""
    data = MeasurementList(entries).to_bytes()
    ours = match(entries, PcrBanks.unauthenticated(quoted))
    assert ours.matched == _evmctl_verdict(tmp_path, data, quoted), ours.summary()
    # without --ignore-violations evmctl extends a violation as zeros: it fails exactly
    # when a violation is in the verified prefix, imasim's verified_violations
    strict = ours.matched and not ours.verified_violations
    assert strict == _evmctl_verdict(tmp_path, data, quoted, ignore_violations=False)
    # and the CLI says the same
    (tmp_path / "pcrs.json").write_text(json.dumps(
        {a.kernel_name: {str(i): v.hex() for i, v in b.items()} for a, b in quoted.items()}))
    rc = main(["log", "check", str(tmp_path / "list"), "--pcrs", str(tmp_path / "pcrs.json"),
               "--allow-prefix"])
    assert (rc == 0) == ours.matched


def test_the_differential_covers_every_verdict() -> None:
    seen = set()
    for _, entries, quoted in CASES_PREFIX:
        m = match(entries, quoted)
        seen.add((m.status, m.matched, bool(m.uncovered)))
    assert {(MatchStatus.MATCH, True, False), (MatchStatus.PREFIX, True, False),
            (MatchStatus.MISMATCH, False, True), (MatchStatus.MISMATCH, False, False),
            (MatchStatus.PREFIX, True, True), (MatchStatus.MATCH, False, False)} <= seen
