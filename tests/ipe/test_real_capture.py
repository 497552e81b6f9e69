"""The k612-ipe and k612-ipe-nokey captures (Debian's 6.12 under qemu, see their
notes.md): imasim replays the same securityfs writes and produces the same errnos, the
same policies and the same audit records, field for field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imasim.ipe import FileProperties, Ipe, IpeError, Op
from imasim.keys import Key, Keyring

REAL = Path(__file__).parent.parent / "vectors" / "realkernel"


def _audit(scenario: str) -> list[str]:
    """The kernel's IPE audit records without the ``audit(time:serial):`` stamp, the
    empty ones (6.12's second 1404 record) included."""
    text = (REAL / scenario / "stage1" / "dmesg.txt").read_text()
    return [f"type={m.group(1)} {m.group(2).strip()}".rstrip()
            for m in re.finditer(r"type=(14\d\d) audit\([^)]*\):(.*)", text)]


def _ipe(scenario: str, *, platform_cert: bool) -> Ipe:
    secondary = Keyring(".secondary_trusted_keys")  # Debian's build key only: signs nothing here
    platform = Keyring(".platform")
    if platform_cert:  # OVMF's db holds the harness test certificate
        platform.add(Key.from_certificate((REAL / scenario / "keys" / "ima-test-cert.der")
                                          .read_bytes()))
    return Ipe(keyring=secondary, platform_keyring=platform, kernel_version=(6, 12))


def _policy(scenario: str, name: str) -> bytes:
    return (REAL / scenario / "ipe-policies" / name).read_bytes()


def _errno(call: object) -> int:
    with pytest.raises(IpeError) as e:
        call()  # type: ignore[operator]
    return e.value.errno


def test_k612_ipe_step_by_step() -> None:
    sc = "k612-ipe"
    ipe = _ipe(sc, platform_cert=True)
    tmpfs = FileProperties()  # /mnt/tmpfs/hello-tmpfs.sh: not boot_verified
    initramfs = FileProperties(boot_verified=True)
    # no policy: everything allowed
    assert ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", tmpfs).allowed
    assert _errno(lambda: ipe.new_policy(_policy(sc, "rk_test-v1.policy"))) == 74  # EBADMSG
    ipe.new_policy(_policy(sc, "rk_test-v1.p7s"))
    assert _errno(lambda: ipe.new_policy(_policy(sc, "rk_test-v1.p7s"))) == 17      # EEXIST
    assert ipe.active is None
    ipe.activate("rk_test")
    assert ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", initramfs).allowed
    ctx = {"path": "/mnt/tmpfs/hello-tmpfs.sh", "dev": "tmpfs", "ino": 2, "comm": "extra.sh"}
    assert not ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", tmpfs, pid=194, **ctx).allowed  # type: ignore[arg-type]
    assert _errno(lambda: ipe.update_policy("rk_test", _policy(sc, "rk_test-v1.p7s"))) == 116
    ipe.update_policy("rk_test", _policy(sc, "rk_test-v2.p7s"))
    assert ipe.policies["rk_test"].policy.version_text == "0.0.2"
    assert not ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", tmpfs, pid=212, **ctx).allowed  # type: ignore[arg-type]
    assert _errno(lambda: ipe.delete("rk_test")) == 1                                 # EPERM
    ipe.set_enforce(False)
    assert ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", tmpfs).allowed
    # the audit records are the kernel's (failed loads write none on 6.12)
    real = _audit(sc)
    assert [r.split(" ", 1)[0] for r in real] == ["type=1422", "type=1421", "type=1420",
                                                  "type=1422", "type=1421", "type=1420",
                                                  "type=1404", "type=1404"]
    assert real[-1] == "type=1404"  # ipe_audit_enforce's empty record
    assert [str(r) for r in ipe.audit][:len(real)] == real
    # what securityfs shows afterwards
    pol = ipe.policies["rk_test"]
    stage = REAL / sc / "stage1" / "ipe" / "policies" / "rk_test"
    assert pol.read("version").decode() == (stage / "version").read_text().strip()
    assert pol.read("name").decode() == (stage / "name").read_text().strip()
    assert pol.read("pkcs7") == _policy(sc, "rk_test-v2.p7s")


def test_k612_ipe_nokey_refuses_with_enokey_and_audits_nothing() -> None:
    sc = "k612-ipe-nokey"
    ipe = _ipe(sc, platform_cert=False)
    assert _errno(lambda: ipe.new_policy(_policy(sc, "rk_test-v1.policy"))) == 74
    for _ in range(2):
        assert _errno(lambda: ipe.new_policy(_policy(sc, "rk_test-v1.p7s"))) == 126  # ENOKEY
    assert ipe.policies == {} and ipe.audit == [] and _audit(sc) == []
