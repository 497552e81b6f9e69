"""``import imasim``: cheap, with a version, and leading to the starting points; the public
result types have one-line reprs that say what they found."""

from __future__ import annotations

import pydoc
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

import imasim
from imasim.algorithms import HashAlgorithm as H
from imasim.ima.replay import match, replay
from imasim.ipe.policy import parse_ipe_policy
from imasim.machine import Machine
from imasim.tpm import PcrSelection
from imasim.tpm.verify import verify_quote


def test_version() -> None:
    assert imasim.__version__ == version("imasim")


def test_import_is_cheap() -> None:
    """The CLI's start-up pays for the front door: it must not import the simulator."""
    code = ("import sys, imasim; heavy = [m for m in ('imasim.machine', 'imasim.attest', "
            "'imasim.ima.replay', 'cryptography', 'pyasn1') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_help_leads_to_the_starting_points() -> None:
    text = pydoc.render_doc(imasim, renderer=pydoc.plaintext)
    for name in ("Machine", "read_measurement_list", "replay", "match", "verify_quote",
                 "imasim.verify", "AttestationReport", "imasim --help"):
        assert name in text, name
    for name in imasim.__all__:
        assert getattr(imasim, name) is not None
        assert name in dir(imasim)
    with pytest.raises(AttributeError):
        imasim.no_such_name  # noqa: B018


def test_lazy_names_are_the_real_objects() -> None:
    from imasim.attest import AttestationReport
    from imasim.io import read_measurement_list

    assert imasim.Machine is Machine and imasim.replay is replay
    assert imasim.AttestationReport is AttestationReport
    assert imasim.read_measurement_list is read_measurement_list
    assert imasim.verify.attest is not None and "verify" in dir(imasim)


@pytest.fixture(scope="module")
def machine() -> Machine:
    m = Machine.create(cmdline="ima_policy=tcb", banks=(H.SHA1, H.SHA256))
    m.boot()
    m.add_file("/usr/bin/true", b"\x7fELF")
    m.exec("/usr/bin/true")
    return m


def _check(obj: object, *facts: str) -> str:
    text = repr(obj)
    name = type(obj).__name__
    assert text.startswith(f"<{name} ") and text.endswith(">"), text
    assert "\n" not in text and len(text) < 200, text
    assert not re.search(r"\bb'|\\x", text), text   # no raw bytes
    for fact in facts:
        assert fact in text, (fact, text)
    return text


def test_reprs_say_what_was_found(machine: Machine) -> None:
    lst = machine.measurements
    r = replay(lst, banks=(H.SHA256,))
    _check(r, f"{len(lst)} entries", "sha256 PCR 10 " + r.pcrs[H.SHA256][10].hex()[:12])
    _check(r.state, f"after {len(lst)} entries")
    _check(match(lst, machine.pcr_values()), "match:", f"{len(lst)} of {len(lst)}",
           "sha256 matches")
    _check(match(lst, {H.SHA256: {10: b"\x01" * 32}}), "mismatch", "sha256 differs",
           "1 PCR mismatches")
    ak = machine.tpm.create_ak("ecc", seed=b"repr")
    q = machine.tpm.quote(ak, PcrSelection({H.SHA256: range(11)}), b"nonce")
    _check(q, "sha256:0-10", "TPMS_ATTEST")
    _check(ak, "ECC P-256", "ecdsa")
    v = verify_quote(q.attest, q.signature, ak.public_pem, nonce=b"nonce")
    _check(v, "sha256:0-10", "ecdsa/sha256", b"nonce".hex())
    rule = machine.policy.rules[-1]
    _check(rule, rule.render())
    _check(machine.policy, "'tcb'", f"{len(machine.policy.rules)} rules")
    pol = parse_ipe_policy("policy_name=p policy_version=0.0.1\nDEFAULT action=ALLOW\n"
                           "op=EXECUTE boot_verified=FALSE action=DENY\n")
    _check(pol, "'p'", "0.0.1", "1 rules")
    _check(next(r for rs in pol.rules.values() for r in rs), "op=EXECUTE boot_verified=FALSE")
    _check(machine, "measurements")
