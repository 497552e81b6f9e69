"""Make the Keylime vectors: runtime policies by Keylime's own generator, and Keylime's
own verdicts on the real captures' lists under those policies (Keylime 7.14.3).

Run with a Python that has Keylime installed (not one of imasim's dependencies)::

    python3 -m venv /tmp/kl && /tmp/kl/bin/pip install keylime
    /tmp/kl/bin/python tests/vectors/keylime/make_keylime_vectors.py

For every list of tests/vectors/realkernel (each stage's ascii_runtime_measurements,
the SHA-1 list Keylime's agent sends) it writes into ``<scenario>-<stage>/``:

* ``policy.json``: ``keylime-policy create runtime --ima-measurement-list LIST
  --keyrings --ima-buf`` (the timestamp removed);
* ``cases.json``: the policies of the tampered cases (a digest changed, a path
  removed, an exclude added) as differences to ``policy.json``;
* ``keylime.json``: per case, what Keylime's verifier
  (``keylime.ima.ima.process_measurement_list`` with PCR 10 of the capture's SHA-1 bank,
  or SHA-256 for a TPM without SHA-1)
  says: whether PCR 10 matched, and for each list line the ids of the failure events
  its validation raised (lines without events are left out), plus events not tied to a
  line (parse errors, pcr_mismatch).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

# keylime.signing imports the gpg bindings (policy signatures, not used here); Debian's
# python3-gpg is not on PyPI, so a stand-in module lets the import succeed
sys.modules.setdefault("gpg", types.ModuleType("gpg"))

from keylime.cmd import keylime_policy  # noqa: E402
from keylime.common.algorithms import Hash  # noqa: E402
from keylime.ima import ast, ima  # noqa: E402

HERE = Path(__file__).resolve().parent
CAPTURES = HERE.parent / "realkernel"


def lists() -> list[tuple[str, Path, Path]]:
    out = []
    for stage in sorted(CAPTURES.glob("*/stage*")):
        ascii_list = stage / "ima" / "ascii_runtime_measurements"
        if ascii_list.is_file() and (stage / "pcrs.json").is_file():
            out.append((f"{stage.parent.name}-{stage.name}", ascii_list, stage / "pcrs.json"))
    return out


def make_policy(ascii_list: Path, out: Path) -> dict[str, Any]:
    """``keylime-policy create runtime`` (its main(), in this process: see the gpg note)."""
    argv = sys.argv
    sys.argv = ["keylime-policy", "create", "runtime", "--ima-measurement-list",
                str(ascii_list), "--keyrings", "--ima-buf", "--output", str(out)]
    try:
        keylime_policy.main()
    except SystemExit as exc:
        if exc.code:
            raise
    finally:
        sys.argv = argv
    if not out.is_file():
        raise SystemExit(1)
    policy: dict[str, Any] = json.loads(out.read_text())
    policy["meta"].pop("timestamp", None)
    return policy


def cases(policy: dict[str, Any], lines: list[str]) -> dict[str, dict[str, Any]]:
    """Tampered copies of the policy: each names the file entries it changes."""
    files = [p for p in policy["digests"] if p != "boot_aggregate"]
    out: dict[str, dict[str, Any]] = {"honest": {}}
    if len(files) >= 3:
        a, b, c = files[0], files[len(files) // 2], files[-1]
        out["digest-changed"] = {"digests": {a: ["00" * 32]}}
        out["path-removed"] = {"remove": [b]}
        out["excluded"] = {"excludes": [c.rsplit("/", 1)[0] + "/.*"], "remove": [c]}
    return out


def apply(policy: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    p = json.loads(json.dumps(policy))
    p["digests"].update(change.get("digests", {}))
    for path in change.get("remove", []):
        p["digests"].pop(path, None)
    p["excludes"] = sorted(set(p["excludes"]) | set(change.get("excludes", [])))
    return p


def keylime_verdict(lines: list[str], policy: dict[str, Any], pcr10: str, bank: str
                    ) -> dict[str, Any]:
    per_line: dict[int, list[str]] = {}
    calls: list[int] = []
    original = ast.Entry.invalid
    line_of = {}
    n = 0
    for i, line in enumerate(lines):
        if line.strip("\n"):
            line_of[n] = i
            n += 1

    def invalid(self: ast.Entry) -> Any:
        failure = original(self)
        k = len(calls)
        calls.append(k)
        if failure.events:
            per_line[k] = sorted({e.event_id for e in failure.events})
        return failure

    ast.Entry.invalid = invalid  # type: ignore[method-assign]
    try:
        _, failure = ima.process_measurement_list(None, lines, json.loads(json.dumps(policy)),
                                                  pcrval=pcr10, hash_alg=Hash(bank))
    finally:
        ast.Entry.invalid = original  # type: ignore[method-assign]
    attributed = {ev for evs in per_line.values() for ev in evs}
    return {
        "pcr_match": not any(e.event_id.endswith("pcr_mismatch") for e in failure.events),
        "failing_lines": {str(k): v for k, v in sorted(per_line.items())},
        "other_events": sorted({e.event_id for e in failure.events} - attributed),
        "parsed_lines": len(calls),
    }


def main() -> None:
    for name, ascii_list, pcrs_json in lists():
        for old in (HERE / name).glob("*"):
            old.unlink()
        lines = ascii_list.read_text(encoding="utf-8", errors="surrogateescape").splitlines(True)
        banks = json.loads(pcrs_json.read_text())
        bank = "sha1" if "sha1" in banks else "sha256"  # the TPM's bank Keylime quotes
        pcr10 = banks[bank]["10"]
        out = HERE / name
        out.mkdir(exist_ok=True)
        try:
            policy = make_policy(ascii_list, out / "policy.json")
        except SystemExit as exc:
            (out / "generator-refused.txt").write_text(
                f"keylime-policy create runtime exited {exc.code} on this list\n")
            print(name, "generator refused")
            continue
        (out / "policy.json").write_text(json.dumps(policy, indent=1, sort_keys=True) + "\n")
        cs = cases(policy, lines)
        (out / "cases.json").write_text(json.dumps(cs, indent=1, sort_keys=True) + "\n")
        verdicts = {c: keylime_verdict(lines, apply(policy, ch), pcr10, bank)
                    for c, ch in cs.items()}
        (out / "keylime.json").write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
        print(name, {c: len(v["failing_lines"]) for c, v in verdicts.items()})


if __name__ == "__main__":
    main()
