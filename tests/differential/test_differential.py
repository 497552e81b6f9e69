"""A small seeded sample of the differential runs (fuzz/differential.py) for CI.

Each check mutates real signed inputs (Debian's modules and sign-file's, sbsign's images,
evmctl's signatures, imasim's quotes, the real-kernel lists) and compares imasim's verdict
with the reference tool's. A disagreement must be one of the documented differences where
imasim follows the kernel (``EXPLANATIONS``, each with its kernel source); any other is a
bug. The long runs and their figures are in docs/security.md.
"""

from __future__ import annotations

import importlib.util
import random
import re
import sys
from pathlib import Path

import pytest

from tools import need

ROOT = Path(__file__).resolve().parent.parent.parent


def _load() -> object:
    spec = importlib.util.spec_from_file_location("fuzz_differential",
                                                  ROOT / "fuzz" / "differential.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_differential"] = mod
    spec.loader.exec_module(mod)
    return mod


D = _load()
#: mutants per check in CI (the long runs use thousands)
SAMPLE = 60


@pytest.mark.interop
@pytest.mark.parametrize("check", list(D.CHECKS))  # type: ignore[attr-defined]
def test_same_verdict_as_the_reference_tool(check: str) -> None:
    _fn, tool = D.CHECKS[check]  # type: ignore[attr-defined]
    need(tool)
    if check == "modsig-openssl":
        need("sign-file")
    if check == "pe-sbverify":
        need("sbsign")
    tally = D.run_check(check, SAMPLE, seed=0)  # type: ignore[attr-defined]
    assert tally.tried == SAMPLE
    assert not tally.unexplained, tally.unexplained
    # sbsign's signing time and ECDSA make the inputs vary a little from run to run, and the
    # real captures the list check draws from grow; so the sample checks agreement, not exact
    # counts (explained disagreements are documented kernel-vs-tool differences)
    assert tally.agreements >= SAMPLE * 0.8, tally.line()


def test_every_reason_is_explained_with_a_kernel_reference() -> None:
    """The kernel is the arbiter; where it is not involved (quotes), the TPM spec is."""
    for reason, why in D.EXPLANATIONS.items():  # type: ignore[attr-defined]
        if "no kernel involved" in why:
            assert "TPM" in why, reason
        else:
            assert re.search(r"\.(c|asn1)\b", why), reason


def test_mutations_are_seeded_and_change_the_input() -> None:
    data = bytes(range(64))
    a = [D.mutate(random.Random(7), data) for _ in range(3)]  # type: ignore[attr-defined]
    b = [D.mutate(random.Random(7), data) for _ in range(3)]  # type: ignore[attr-defined]
    assert a == b
    assert all(m != data for m in a)


def _debian_module() -> tuple[bytes, bytes]:
    from imasim.sig import parse_modsig

    module = ROOT / "tests" / "vectors" / "debian" / "modules" / "nhc_ipv6.ko"
    payload, sig = parse_modsig(module.read_bytes())
    return payload, sig.pkcs7


def test_bytes_after_the_pkcs7_are_ignored_as_by_the_kernel() -> None:
    """Found by the differential run: lib/asn1_decoder.c stops at the end of the
    ContentInfo, so bytes after it inside sig_len do not make a module unverifiable
    (openssl cms agrees); imasim used to refuse them."""
    from imasim.keys import Key, Keyring
    from imasim.sig import verify_modsig
    from imasim.sig.modsig import append_signature

    payload, pkcs7 = _debian_module()
    ring = Keyring(".builtin_trusted_keys")
    ring.add(Key.from_certificate(
        (ROOT / "tests" / "vectors" / "debian" / "debian-6.1.0-56-build-key.der").read_bytes()))
    verify_modsig(append_signature(payload, pkcs7 + b"\xe1\x6a"), keyring=ring)
