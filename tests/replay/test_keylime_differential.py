"""imasim's attestation against Keylime's own verifier, on every real capture.

tests/vectors/keylime holds, per captured list, the runtime policy Keylime's generator
(``keylime-policy create runtime --keyrings --ima-buf``) made from it, tampered copies of
that policy, and the verdict of Keylime's verifier code (``process_measurement_list``)
on each: which lines failed and why (see make_keylime_vectors.py there). imasim gets the
same list, the same policy, and a quote of the captured PCRs made by its own TPM, and
must fail exactly the same entries, except where Keylime is wrong:

* **entries in a PCR other than 10** (kexec-cmdline in PCR 11, ``pcr=`` policy rules):
  Keylime fails every one (``ima_pcr``), whatever the quote covers; imasim verifies them
  against the quoted PCR they were extended into and judges them by the policy.
* **templates Keylime cannot parse** (ima-sigv2, ima-ngv2, ima-modsig, evm-sig, custom
  ``ima_template_fmt``): Keylime fails the line (``parser.entry``), skips its extend and so
  reports a PCR mismatch for the whole list; imasim replays and judges them.
* **boot_aggregate**: Keylime looks its digest up in the policy's ``digests`` (where its
  generator copies it from ima-ng lines, or its verifier adds what the quoted PCRs give);
  imasim checks it against the quoted PCRs 0-9 only. A legacy ``ima`` list gets no
  policy entry from the generator, so this harness's Keylime fails it; imasim does not.
* **lists whose boot_aggregate Keylime's generator cannot read** (a custom template):
  ``keylime-policy`` refuses to make a policy; there is nothing to compare.

* **lists that do not replay** (a kexec without IMA_KEXEC: the list starts over while
  the TPM does not): both refuse the list, but Keylime still judges every line of it;
  imasim appraises only entries the quote covers, so none.

Both fail a violation (Keylime's ``tomtou`` event), an unknown path (``not_in_allowlist``)
and a wrong digest (``runtime_policy_hash``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import AttestationStatus, Verdict, attest, attest_file
from imasim.ima.codec import parse_measurement_list
from imasim.io import load_pcrs_json
from imasim.runtime_policy import RuntimePolicy, create_runtime_policy
from imasim.tpm import PcrSelection, SoftTpm

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
KEYLIME = VECTORS / "keylime"
KEYLIME_PARSES = frozenset({"ima", "ima-ng", "ima-sig", "ima-buf"})
NONCE = b"keylime-differential"
# Keylime's event ids and the verdict imasim gives the same entry
EVENTS = {
    "ima.validation.tomtou": Verdict.VIOLATION,
    "ima.validation.ima-ng.not_in_allowlist": Verdict.UNKNOWN_PATH,
    "ima.validation.ima-ng.runtime_policy_hash": Verdict.DIGEST_MISMATCH,
}


def _vectors() -> list[Path]:
    return sorted(p for p in KEYLIME.iterdir() if (p / "keylime.json").is_file())


def _capture(v: Path) -> Path:
    scenario, stage = v.name.rsplit("-", 1)
    return VECTORS / "realkernel" / scenario / stage


def _policy(v: Path, case: str) -> RuntimePolicy:
    doc = json.loads((v / "policy.json").read_text())
    change: dict[str, Any] = json.loads((v / "cases.json").read_text())[case]
    doc["digests"].update(change.get("digests", {}))
    for path in change.get("remove", []):
        doc["digests"].pop(path, None)
    doc["excludes"] = sorted(set(doc["excludes"]) | set(change.get("excludes", [])))
    return RuntimePolicy.from_keylime_json(json.dumps(doc))


def _quote(pcrs: dict[H, dict[int, bytes]]) -> dict[str, Any]:
    """A quote over every captured PCR, from imasim's TPM loaded with the captured values."""
    banks = [a for a in pcrs if a in (H.SHA1, H.SHA256, H.SHA384, H.SHA512)]
    state = json.loads(SoftTpm(tuple(banks)).to_json())
    for a in banks:
        for i, v in pcrs[a].items():
            state["pcrs"][a.kernel_name][i] = v.hex()
    tpm = SoftTpm.from_json(json.dumps(state))
    ak = tpm.create_ak("ecc", seed=b"keylime")
    q = tpm.quote(ak, PcrSelection({a: sorted(pcrs[a]) for a in banks}), NONCE)
    return {"quote_attest": q.attest, "quote_signature": q.signature,
            "ak_public": ak.public_pem, "nonce": NONCE, "pcr_values": q.values_by_bank()}


CASES = [(v, case) for v in _vectors()
         for case in json.loads((v / "keylime.json").read_text())]


@pytest.mark.parametrize(("vector", "case"), CASES, ids=[f"{v.name}:{c}" for v, c in CASES])
def test_same_failing_entries_as_keylime(vector: Path, case: str) -> None:
    keylime = json.loads((vector / "keylime.json").read_text())[case]
    capture = _capture(vector)
    entries = list(parse_measurement_list(
        (capture / "ima" / "binary_runtime_measurements").read_bytes()))
    pcrs = load_pcrs_json((capture / "pcrs.json").read_bytes())
    policy = _policy(vector, case)
    report = attest(entries=entries, reference=policy, **_quote(pcrs))
    assert report.quote_valid and report.authenticated
    mine = {f.index: f.verdict for f in report.failures}
    theirs = {int(k): v for k, v in keylime["failing_lines"].items()}
    unparsed = {i for i, e in enumerate(entries) if e.template_name not in KEYLIME_PARSES}
    if not keylime["pcr_match"] and not unparsed:
        assert report.replay is not None and not report.replay.matched
        assert report.verified_entries == 0 and not report.trusted and mine == {}
        return
    assert report.verified_entries == len(entries), report.summary()
    for i, events in theirs.items():
        if entries[i].event_name == "boot_aggregate":
            assert i not in mine  # checked against the quoted PCRs instead
            continue
        if events == ["ima.validation.ima_pcr"]:
            # Keylime's mistake: the entry is in a quoted PCR other than 10
            assert entries[i].pcr != 10 and i not in mine, (i, mine.get(i))
            continue
        assert i in mine, (i, entries[i].ascii_line()[:120], events)
        assert mine[i] == EVENTS[events[0]], (i, events, mine[i])
    for i, verdict in mine.items():
        if i in unparsed:
            continue  # Keylime cannot parse this template: nothing of its to compare
        assert i in theirs, (i, verdict, entries[i].ascii_line()[:120])
    if unparsed:
        assert "ima.parser.entry" in keylime["other_events"] and not keylime["pcr_match"]
    else:
        assert keylime["pcr_match"] and keylime["other_events"] == []
        keylime_ok = not [k for k, v in theirs.items() if v != ["ima.validation.ima_pcr"]
                          and entries[k].event_name != "boot_aggregate"]
        assert report.trusted == keylime_ok


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v.name)
def test_without_a_quote_the_same_checks_are_unauthenticated(vector: Path) -> None:
    capture = _capture(vector)
    entries = list(parse_measurement_list(
        (capture / "ima" / "binary_runtime_measurements").read_bytes()))
    pcrs = load_pcrs_json((capture / "pcrs.json").read_bytes())
    policy = _policy(vector, "honest")
    with_quote = attest(entries=entries, reference=policy, **_quote(pcrs))
    without = attest(entries=entries, reference=policy, pcr_values=pcrs)
    assert not without.authenticated and not without.trusted
    assert without.failures == with_quote.failures
    assert without.status is (AttestationStatus.CONSISTENT if with_quote.trusted
                              else AttestationStatus.NOT_TRUSTED)


PER_BANK = sorted(p for p in (VECTORS / "realkernel").glob("*/stage1/ima/"
                                                           "binary_runtime_measurements_sha*"))


@pytest.mark.parametrize("per_bank", PER_BANK, ids=lambda p: f"{p.parts[-4]}:{p.name}")
def test_per_bank_lists_get_the_verdict_of_the_sha1_list(per_bank: Path) -> None:
    """6.10+ writes one list per bank (template digests in that bank's hash); each
    gets the verdict of the SHA-1 list under the same policy."""
    stage = per_bank.parents[1]
    vector = KEYLIME / f"{stage.parent.name}-{stage.name}"
    policy = _policy(vector, "honest")
    pcrs = load_pcrs_json((stage / "pcrs.json").read_bytes())
    alg = H.from_name(per_bank.name.rsplit("_", 1)[1])
    sha1 = attest(entries=list(parse_measurement_list(
        (stage / "ima" / "binary_runtime_measurements").read_bytes())),
        reference=policy, **_quote(pcrs))
    mine = attest(entries=list(parse_measurement_list(per_bank.read_bytes(), digest_alg=alg)),
                  reference=policy, digest_alg=alg, **_quote(pcrs))
    assert mine.replay is not None and mine.replay.matched, mine.summary()
    assert mine.failures == sha1.failures and mine.trusted == sha1.trusted


def test_a_forged_pcr_outside_the_quote_is_not_trusted() -> None:
    """The attack of the verifier issue: a quote of sha256:0 and PCR values for 0-10."""
    vector = KEYLIME / "boot-tcb-ima-ng-sha256-stage1"
    capture = _capture(vector)
    entries = list(parse_measurement_list(
        (capture / "ima" / "binary_runtime_measurements").read_bytes()))
    pcrs = load_pcrs_json((capture / "pcrs.json").read_bytes())
    q = _quote({H.SHA256: {0: pcrs[H.SHA256][0]}})
    q["pcr_values"] = {H.SHA256: pcrs[H.SHA256]}  # claims 0-23: only 0 is quoted
    report = attest(entries=entries, reference=_policy(vector, "honest"), **q)
    assert not report.trusted
    if report.quote_valid:  # accepted files: still nothing but PCR 0 may be used
        assert report.pcrs is not None and set(report.pcrs[H.SHA256]) == {0}
        assert any(f.verdict is Verdict.UNCOVERED_PCR for f in report.failures)


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v.name)
def test_generator_makes_keylimes_policy(vector: Path) -> None:
    """create_runtime_policy (imasim runtime-policy create --keyrings --ima-buf) gives the
    digests, keyrings and ima-buf sections keylime-policy made from the same list, but
    for Keylime's mistake of allowing the all-zero digest of a violation entry."""
    capture = _capture(vector)
    entries = list(parse_measurement_list(
        (capture / "ima" / "binary_runtime_measurements").read_bytes()))
    mine = create_runtime_policy(entries, keyrings=True, ima_buf=True)
    theirs = _policy(vector, "honest")
    zero = {"0" * 2 * n for n in (20, 32, 48, 64)}
    assert mine.digests == {p: ds - zero for p, ds in theirs.digests.items() if ds - zero}
    assert mine.keyrings == theirs.keyrings
    assert mine.ima_buf == theirs.ima_buf
    assert RuntimePolicy.from_keylime_json(mine.to_keylime_json()) == mine


@pytest.mark.parametrize(("vector", "case"), CASES, ids=[f"{v.name}:{c}" for v, c in CASES])
def test_streaming_attest_file_equals_attest(vector: Path, case: str) -> None:
    """attest_file (one fused pass over the file: the CLI's path) == attest on the entries."""
    capture = _capture(vector)
    path = capture / "ima" / "binary_runtime_measurements"
    entries = list(parse_measurement_list(path.read_bytes()))
    pcrs = load_pcrs_json((capture / "pcrs.json").read_bytes())
    policy = _policy(vector, case)
    for ignore in (False, True):
        a = attest(entries=entries, reference=policy, ignore_violations=ignore, **_quote(pcrs))
        with path.open("rb") as f:
            b = attest_file(f, reference=policy, ignore_violations=ignore, **_quote(pcrs))
        assert [(x.index, x.verdict) for x in a.failures] == \
            [(x.index, x.verdict) for x in b.failures]
        assert (a.status, a.verified_entries, a.entries, a.boot_aggregate_ok, a.notes) == \
            (b.status, b.verified_entries, b.entries, b.boot_aggregate_ok, b.notes)


def test_verification_keys_accept_signed_files_by_keylimes_rule() -> None:
    """The real ima-sig capture: with the signer's key in ``verification-keys`` the two
    evmctl-signed scripts pass although the policy lists no digest for them (Keylime's
    _validate_ima_sig: a good signature is enough); with a stranger's key they fall back to
    the allowlist, where they are unknown."""
    from imasim.keys.key import Key
    from pki import ec_key, make_cert

    vector = KEYLIME / "signed-ext4-ima-sig-stage1"
    capture = _capture(vector)
    entries = list(parse_measurement_list(
        (capture / "ima" / "binary_runtime_measurements").read_bytes()))
    pcrs = load_pcrs_json((capture / "pcrs.json").read_bytes())
    signed = ("/mnt/bin/signed-one.sh", "/mnt/bin/signed-two.sh")
    doc = json.loads((vector / "policy.json").read_text())
    for path in signed:
        doc["digests"].pop(path)
    signer = Key.from_certificate((VECTORS / "realkernel" / "signed-ext4-ima-sig" / "keys"
                                   / "ima-test-cert.der").read_bytes())
    stranger = Key.from_certificate(make_cert("stranger", ec_key("stranger")).der)
    base = RuntimePolicy.from_keylime_json(json.dumps(doc))
    for key, expected in ((signer, set()), (stranger, set(signed))):
        policy = RuntimePolicy.from_keylime_json(
            replace(base, verification_keys=(key,)).to_keylime_json())
        report = attest(entries=entries, reference=policy, ignore_violations=True,
                        **_quote(pcrs))
        assert {f.path for f in report.failures} == expected, report.summary()
