"""End to end: a quote from imasim's TPM over a list it was extended with; each attack is named."""

from __future__ import annotations

import json

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.attest import ReferenceValues, Verdict, attest
from imasim.machine import Machine
from imasim.tpm import PcrSelection

NONCE = b"0123456789abcdef0123"


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    m = Machine.create(cmdline="ima_policy=tcb", banks=(H.SHA1, H.SHA256))
    m.boot()
    for i in range(6):
        m.add_file(f"/usr/bin/p{i}", f"program {i}".encode())
        m.exec(f"/usr/bin/p{i}")
    ak = m.tpm.create_ak("rsa", seed=b"attest-test")
    q = m.tpm.quote(ak, PcrSelection({H.SHA256: range(11), H.SHA1: [10]}), NONCE)
    ref = ReferenceValues({f"/usr/bin/p{i}": frozenset({H.SHA256.hash(f"program {i}".encode())
                                                        .hex()}) for i in range(6)})
    return m, ak, q, ref


def run(setup, entries, nonce=NONCE):  # type: ignore[no-untyped-def]
    _m, ak, q, ref = setup
    return attest(quote_attest=q.attest, quote_signature=q.signature, ak_public=ak.public_pem,
                  nonce=nonce, pcr_values=q.values_by_bank(), entries=entries, reference=ref)


def test_honest(setup) -> None:  # type: ignore[no-untyped-def]
    rep = run(setup, list(setup[0].measurements))
    assert rep.trusted, rep.summary()
    assert json.loads(rep.to_json())["trusted"] is True


def test_tampered_entry_is_named(setup) -> None:  # type: ignore[no-untyped-def]
    e = list(setup[0].measurements)
    e[3] = e[3]._replace(template_data=e[3].template_data.replace(b"/usr/bin/p2", b"/usr/bin/pX"))
    rep = run(setup, e)
    assert not rep.trusted and not rep.replay.matched
    assert (3, Verdict.BAD_TEMPLATE_DIGEST) in {(f.index, f.verdict) for f in rep.failures}


def test_dropped_entry(setup) -> None:  # type: ignore[no-untyped-def]
    e = list(setup[0].measurements)
    rep = run(setup, e[:2] + e[3:])
    assert not rep.trusted
    assert {m.pcr for m in rep.replay.mismatches} == {10}


def test_reordered_entries(setup) -> None:  # type: ignore[no-untyped-def]
    e = list(setup[0].measurements)
    rep = run(setup, [e[0], e[2], e[1], *e[3:]])
    assert not rep.trusted and rep.replay.mismatches


def test_swapped_nonce(setup) -> None:  # type: ignore[no-untyped-def]
    rep = run(setup, list(setup[0].measurements), nonce=b"x" * 20)
    assert not rep.quote_valid and "NonceMismatch" in (rep.quote_error or "")


def test_malformed_entry_does_not_crash(setup) -> None:  # type: ignore[no-untyped-def]
    e = list(setup[0].measurements)
    e[2] = e[2]._replace(template_data=e[2].template_data[:-5])
    rep = run(setup, e)
    assert not rep.trusted and rep.verified_entries == 0
    # the list no longer replays, so nothing in it is appraised: the broken entry is
    # named by its template digest, which no longer matches its data
    assert {(f.index, f.verdict) for f in rep.failures} == {(2, Verdict.BAD_TEMPLATE_DIGEST)}


def test_list_grown_after_the_quote(setup) -> None:  # type: ignore[no-untyped-def]
    m = setup[0]
    extra = [*list(m.measurements), m.measurements[1]._replace(pcr=10)]
    rep = run(setup, extra)
    assert {b.matched_at for b in rep.replay.banks} == {len(m.measurements)}


def test_keylime_runtime_policy() -> None:
    doc = {"meta": {"version": 1}, "digests": {"/usr/bin/a": ["AB" * 32]},
           "excludes": ["/tmp/.*"], "ima": {"ignored_keyrings": [".ima"]}}
    ref = ReferenceValues.from_keylime_json(json.dumps(doc))
    assert ref.is_excluded("/tmp/x") and not ref.is_excluded("/usr/bin/a")
    assert ref.digests["/usr/bin/a"] == frozenset({"ab" * 32})
    from imasim.errors import ParseError

    with pytest.raises(ParseError):
        ReferenceValues.from_keylime_json("[1,2")
