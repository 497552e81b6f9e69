"""The securityfs lifecycle: deploy signed policies, update, activate, delete, enforce;
the errno of each refusal; the active policy unchanged after every failure; the audit
records; openssl smime (the kernel docs' command) and openssl cms interop."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from imasim.ipe import FileProperties, Ipe, IpeError, Op
from imasim.keys import Keyring
from imasim.sig.pkcs7 import sign_pkcs7
from pki import Signer, pki
from tools import need

BOOT = "policy_name=boot policy_version=0.0.0\nDEFAULT action=ALLOW\n"
LOCK = """policy_name=lockdown policy_version=1.0.0
DEFAULT action=DENY
op=EXECUTE dmverity_signature=TRUE action=ALLOW
"""


def _signed(text: str, who: str = "leaf") -> bytes:
    s: Signer = pki()[who]
    return sign_pkcs7(text.encode(), key=s.key, certificate=s.cert, detached=False,
                      include_certificate=True)


def _ipe(**kw: object) -> Ipe:
    ring = Keyring(".secondary_trusted_keys")
    ring.add(pki()["leaf"].as_key())
    plat = Keyring(".platform")
    plat.add(pki()["rsa_leaf"].as_key())
    kw.setdefault("kernel_version", (6, 16))  # failed loads audited, errno= field (6.15+)
    return Ipe(keyring=ring, platform_keyring=plat, boot_policy=BOOT,  # type: ignore[arg-type]
               **kw)


def _state(ipe: Ipe) -> tuple[object, ...]:
    return (ipe.active, {n: (p.policy, p.digest) for n, p in ipe.policies.items()},
            ipe.enforce)


def test_boot_policy_is_active_unsigned_and_hashes_the_empty_string() -> None:
    ipe = _ipe()
    assert ipe.active == "boot"
    with pytest.raises(IpeError) as e:
        ipe.policies["boot"].read("pkcs7")
    assert e.value.errno == 2
    assert ipe.policies["boot"].digest.hex().upper().startswith("E3B0C44298FC1C14")


def test_deploy_activate_update_delete() -> None:
    ipe = _ipe()
    blob = _signed(LOCK)
    p = ipe.new_policy(blob)
    assert ipe.active == "boot" and p.name == "lockdown"  # deploying does not activate
    pol = ipe.policies["lockdown"]
    assert pol.read("pkcs7") == blob and pol.read("policy") == LOCK.encode()
    assert pol.read("version") == b"1.0.0" and pol.read("name") == b"lockdown"
    assert str(ipe.audit[-1]) == (
        f'type=1422 policy_name="lockdown" policy_version=1.0.0 policy_digest=sha256:'
        f"{hashlib.sha256(blob).hexdigest().upper()} auid=4294967295 ses=4294967295 lsm=ipe "
        f"res=1 errno=0")
    ipe.activate("lockdown")
    assert ipe.active == "lockdown"
    assert str(ipe.audit[-1]).startswith(
        'type=1421 old_active_pol_name="boot" old_active_pol_version=0.0.0 '
        "old_policy_digest=sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        ' new_active_pol_name="lockdown" new_active_pol_version=1.0.0')
    ipe.update_policy("lockdown", _signed(LOCK.replace("1.0.0", "1.0.1")))
    assert ipe.active == "lockdown" and ipe.policies["lockdown"].policy.version == (1, 0, 1)
    assert [r.type for r in ipe.audit[-2:]] == [1422, 1421]  # the active one was replaced
    ipe.delete("boot")
    assert "boot" not in ipe.policies


@pytest.mark.parametrize("step, errno", [
    ("deploy same name", 17),          # -EEXIST
    ("update lower", 116),             # -ESTALE
    ("update equal", 116),
    ("update other name", 22),         # -EINVAL
    ("activate older", 22),            # -EINVAL: versions compared across names
    ("delete active", 1),              # -EPERM
    ("no capability", 1),
    ("unknown policy", 2),             # -ENOENT
    ("bad signature", 129),            # -EKEYREJECTED
    ("unknown signer", 126),           # -ENOKEY
    ("bad policy", 74),                # -EBADMSG
    ("not pkcs7", 74),
    ("version overflow", 34),          # -ERANGE
])
def test_refusals_leave_everything_as_it_was(step: str, errno: int) -> None:
    ipe = _ipe()
    ipe.new_policy(_signed(LOCK))
    ipe.activate("lockdown")
    before = _state(ipe)
    actions = {
        "deploy same name": lambda: ipe.new_policy(_signed(LOCK.replace("1.0.0", "9.0.0"))),
        "update lower": lambda: ipe.update_policy("lockdown",
                                                  _signed(LOCK.replace("1.0.0", "0.9.0"))),
        "update equal": lambda: ipe.update_policy("lockdown", _signed(LOCK)),
        "update other name": lambda: ipe.update_policy("lockdown", _signed(
            LOCK.replace("lockdown", "other").replace("1.0.0", "2.0.0"))),
        "activate older": lambda: ipe.activate("boot"),
        "delete active": lambda: ipe.delete("lockdown"),
        "no capability": lambda: ipe.new_policy(_signed(BOOT.replace("boot", "b2")),
                                                cap_mac_admin=False),
        "unknown policy": lambda: ipe.activate("nope"),
        "bad signature": lambda: ipe.new_policy(_tampered(_signed(BOOT.replace("boot", "b3")))),
        "unknown signer": lambda: ipe.new_policy(_signed(BOOT.replace("boot", "b4"),
                                                         "stranger")),
        "bad policy": lambda: ipe.new_policy(_signed("policy_name=b5 policy_version=0.0.0\n")),
        "not pkcs7": lambda: ipe.new_policy(BOOT.replace("boot", "b6").encode()),
        "version overflow": lambda: ipe.new_policy(_signed(
            "policy_name=b7 policy_version=70000.0.0\nDEFAULT action=ALLOW\n")),
    }
    with pytest.raises(IpeError) as e:
        actions[step]()
    assert e.value.errno == errno
    assert _state(ipe) == before
    if step not in ("activate older", "delete active", "unknown policy"):
        assert str(ipe.audit[-1]).startswith("type=1422 policy_name=? ")
        assert str(ipe.audit[-1]).endswith(f"res=0 errno=-{errno}")


def _tampered(blob: bytes) -> bytes:
    """Flip a bit of the signature (the last bytes of the SignedData)."""
    return blob[:-1] + bytes([blob[-1] ^ 1])


def test_platform_keyring_is_retried() -> None:
    ipe = _ipe()
    ipe.new_policy(_signed(BOOT.replace("boot", "uefi-signed"), "rsa_leaf"))
    ipe.platform_keyring = None
    with pytest.raises(IpeError) as e:
        ipe.new_policy(_signed(BOOT.replace("boot", "uefi-2"), "rsa_leaf"))
    assert e.value.errno == 126


def test_failed_loads_are_audited_only_from_6_15() -> None:
    ipe = _ipe(kernel_version=(6, 12))
    with pytest.raises(IpeError):
        ipe.new_policy(b"junk")
    assert all(r.type != 1422 for r in ipe.audit)
    ipe.new_policy(_signed(LOCK))
    assert str(ipe.audit[-1]).endswith("lsm=ipe res=1")  # no errno= field before 6.15


def test_enforce_toggle_and_permissive_mode() -> None:
    ipe = _ipe()
    ipe.new_policy(_signed(LOCK))
    ipe.activate("lockdown")
    ipe.set_enforce(False)
    assert [str(r) for r in ipe.audit[-2:]] == [
        "type=1404 enforcing=0 old_enforcing=1 auid=4294967295 ses=4294967295 enabled=1 "
        "old-enabled=1 lsm=ipe res=1", "type=1404"]  # and ipe_audit_enforce's empty one
    d = ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", FileProperties(), path="/x")
    assert d.allowed and d.action.value == "DENY"
    assert "enforcing=0" in str(ipe.audit[-1])
    with pytest.raises(IpeError):
        ipe.set_enforce(True, cap_mac_admin=False)
    assert not ipe.enforce


@pytest.mark.interop
def test_policy_signed_by_openssl_smime_as_the_kernel_docs_say(tmp_path: Path) -> None:
    leaf = pki()["leaf"]
    (tmp_path / "p.pol").write_text(LOCK)
    (tmp_path / "cert.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(leaf.key_pem)
    subprocess.run([need("openssl"), "smime", "-sign", "-in", "p.pol", "-signer", "cert.pem",
                    "-inkey", "key.pem", "-noattr", "-nodetach", "-nosmimecap", "-outform",
                    "der", "-out", "p.p7b"], cwd=tmp_path, check=True, capture_output=True)
    ipe = _ipe()
    assert ipe.new_policy((tmp_path / "p.p7b").read_bytes()).name == "lockdown"
    # and imasim's signed policy verifies with openssl cms, content intact
    (tmp_path / "ours.p7b").write_bytes(_signed(LOCK))
    (tmp_path / "root.pem").write_bytes(pki()["root"].cert.public_bytes(Encoding.PEM))
    r = subprocess.run([need("openssl"), "cms", "-verify", "-binary", "-inform", "der",
                        "-in", "ours.p7b", "-CAfile", "root.pem", "-purpose", "any"],
                       cwd=tmp_path, capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == LOCK.encode()


def test_cli_check_eval_sign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imasim.cli import main

    (tmp_path / "p.pol").write_text(LOCK)
    assert main(["ipe", "check", str(tmp_path / "p.pol")]) == 0
    assert main(["ipe", "eval", str(tmp_path / "p.pol"), "--op", "EXECUTE",
                 "--prop", "dmverity_signature=TRUE"]) == 0
    assert main(["ipe", "eval", str(tmp_path / "p.pol"), "--op", "EXECUTE", "--json"]) == 1
    assert '"rule": "DEFAULT action=DENY"' in capsys.readouterr().out
    (tmp_path / "bad.pol").write_text("policy_name=x\n")
    assert main(["ipe", "check", str(tmp_path / "bad.pol")]) == 2
    leaf = pki()["leaf"]
    (tmp_path / "key.pem").write_bytes(leaf.key_pem)
    (tmp_path / "cert.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
    assert main(["ipe", "sign", str(tmp_path / "p.pol"), "--key", str(tmp_path / "key.pem"),
                 "--cert", str(tmp_path / "cert.pem"), "-o", str(tmp_path / "p.p7b")]) == 0
    assert _ipe().new_policy((tmp_path / "p.p7b").read_bytes()).name == "lockdown"
