"""The keyrings imasim's kernel creates equal the real kernel's, capture by capture.

Every capture under tests/vectors/realkernel has the guest's /proc/keys (keyrings.txt).
For the same configuration (the preset of the kernel that ran: Debian's 6.1 or 6.12, or
the custom tinyconfig build, which has no system keyrings at all), the same compiled-in
key (its certificate in tests/vectors/debian) and the same firmware keys (OVMF's db and
dbx, read from the firmware event log the capture holds), imasim's /proc/keys has the
same lines but the serials (random per boot):
names, types, permissions, flags, reference counts and the number of keys each keyring
holds. The per-user keyrings the kernel makes when a process first asks (``_uid.0``,
``_uid_ses.0``, ``.user_reg``) are left out; a ``_ima`` made by user space is compared too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from imasim.errors import ParseError, UsageError
from imasim.eventlog.codec import EventType, parse_eventlog
from imasim.kconfig import PRESETS
from imasim.keys.key import Key
from imasim.keys.layout import ProcKey, boot_keyrings
from imasim.keys.uefi import load_uefi_keys, variable_data
from imasim.machine import Machine

VECTORS = Path(__file__).parent.parent / "vectors"
CAPTURES = sorted(VECTORS.glob("realkernel/*/stage*/keyrings.txt"))
PER_USER = ("_uid.", "_uid_ses.", ".user_reg")

#: uname -r of the kernel that ran -> (preset, its compiled-in certificate)
KERNELS = {
    "6.1.0-56-amd64": ("debian12-6.1", "debian-6.1.0-56-build-key.der"),
    "6.12.117+deb12-amd64": ("debian12-6.12", "debian-6.12.117-build-key.der"),
    "6.12.118+deb12-amd64": ("debian12-6.12", "debian-6.12.118-build-key.der"),
    "6.1.192": ("custom-6.1-ima-kexec", None),
    "6.12.118": ("custom-6.12-ima-kexec", None),
}


def _real(path: Path) -> Counter[ProcKey]:
    rows = (ProcKey.parse(line) for line in path.read_text().splitlines() if line.strip())
    return Counter(r for r in rows if not r.description.startswith(PER_USER))


def _simulated(capture: Path) -> Counter[ProcKey]:
    scenario = capture.parent.parent
    release = (scenario / "stage1" / "uname.txt").read_text().split()[2]
    preset, cert = KERNELS[release]
    builtin = [Key.from_certificate((VECTORS / "debian" / cert).read_bytes())] if cert else []
    m = Machine.create(preset=preset, builtin_keys=builtin)
    m.boot()
    test_cert = scenario / "keys" / "ima-test-cert.der"
    firmware_log = capture.parent / "tpm0" / "binary_bios_measurements"
    if firmware_log.exists():
        # OVMF: load_uefi_certs reads db and dbx, which the firmware measured into PCR 7
        variables = dict(variable_data(e.data) for e in parse_eventlog(
            firmware_log.read_bytes()) if e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG)
        loaded = load_uefi_keys(m.keyrings.platform, m.keyrings.blacklist,
                                db=variables.get("db"), dbx=variables.get("dbx"))
        dmesg = (capture.parent / "dmesg.txt").read_text()
        assert all(line in dmesg for line in loaded)  # the kernel said the same
    if "_ima:" in capture.read_text():
        # the workload ran `keyctl newring _ima @u` and `keyctl padd asymmetric ""`
        m.add_key("_ima", Key.from_certificate(test_cert.read_bytes()))
    return Counter(m.proc_keys())


def test_every_capture_is_covered() -> None:
    assert len(CAPTURES) >= 16
    releases = {(c.parent.parent / "stage1" / "uname.txt").read_text().split()[2]
                for c in CAPTURES}
    assert releases == set(KERNELS)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: "/".join(p.parts[-3:-1]))
def test_keyrings_equal_the_real_kernels(capture: Path) -> None:
    assert _simulated(capture) == _real(capture)


def test_the_layout_follows_the_configuration() -> None:
    names = [s.name for s in boot_keyrings(PRESETS["debian12-6.1"])]
    assert ".ima" not in names and "_ima" not in names and ".sed_opal" not in names
    assert ".sed_opal" in [s.name for s in boot_keyrings(PRESETS["debian12-6.12"])]
    trusted = PRESETS["debian12-6.1"].with_(integrity_trusted_keyring=True)
    specs = {s.name: s for s in boot_keyrings(trusted)}
    assert specs[".ima"].perm == specs[".evm"].perm == 0x1F0F0000
    assert specs[".ima"].restriction == "restrict_link_by_builtin_trusted"
    assert ".evm" not in {s.name for s in boot_keyrings(trusted.with_(evm=False))}
    assert ".fs-verity" not in {s.name for s in boot_keyrings(
        trusted.with_(fs_verity_builtin_signatures=False))}
    # CONFIG_SYSTEM_TRUSTED_KEYRING unset: nothing of the system keyrings, no .ima either
    assert [s.name for s in boot_keyrings(trusted.with_(system_trusted_keyring=False))] == [
        ".platform", ".fs-verity"]


def test_a_keyring_the_kernel_lacks_cannot_be_named() -> None:
    m = Machine.create(preset="custom-6.1-ima-kexec")
    m.boot()
    for name in (".builtin_trusted_keys", ".secondary_trusted_keys", ".platform", ".ima"):
        with pytest.raises(UsageError):
            m.keyrings.by_name(name)
    d = Machine.create(preset="debian12-6.1")
    with pytest.raises(UsageError):
        d.keyrings.by_name(".ima")  # Debian: no .ima, user space makes _ima
    assert d.keyrings.by_name("_ima") is d.keyrings.ima


@pytest.mark.parametrize("line", [
    "", "2ad0d11e I------ 2 perm",
    "zzzzzzzz I------     2 perm 1f0b0000     0     0 keyring   x: 1",
    "2ad0d11e X------     2 perm 1f0b0000     0     0 keyring   x: 1",
    "2ad0d11e I------     two perm 1f0b0000     0     0 keyring   x: 1",
])
def test_bad_proc_keys_lines_are_parse_errors(line: str) -> None:
    with pytest.raises(ParseError):
        ProcKey.parse(line)


@pytest.mark.parametrize("data", [
    bytes(27),                                                    # short header
    bytes(16) + (1000).to_bytes(4, "little") + bytes(8),          # list past the end
    bytes(16) + (29 + 48).to_bytes(4, "little") + bytes(4) + (48).to_bytes(4, "little")
    + bytes(49),                                                  # entries do not divide
])
def test_bad_signature_lists_are_parse_errors(data: bytes) -> None:
    from imasim.keys.uefi import parse_signature_lists

    with pytest.raises(ParseError):
        parse_signature_lists(data)
