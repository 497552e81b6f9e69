"""The presets are what the real kernels are configured with: each Debian preset equals
KernelConfig.from_kconfig of the config file shipped in the linux-image package
(tests/vectors/debian/kconfig-*.txt), each custom one that of the .config the capture
harness's build-custom-kernel.sh makes (tests/vectors/realkernel/custom-*-kconfig.txt);
the integrity-relevant lines of each."""

from __future__ import annotations

from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import PolicyError, UsageError
from imasim.kconfig import PRESETS, KernelConfig
from imasim.machine import Machine

VECTORS = Path(__file__).parent.parent / "vectors"


@pytest.mark.parametrize("preset, version, sublevel, config", [
    ("debian12-6.1", (6, 1), 192, "debian/kconfig-6.1.txt"),
    ("debian12-6.12", (6, 12), 117, "debian/kconfig-6.12.txt"),
    ("custom-6.1-ima-kexec", (6, 1), 192, "realkernel/custom-6.1-kconfig.txt"),
    ("custom-6.12-ima-kexec", (6, 12), 118, "realkernel/custom-6.12-kconfig.txt"),
])
def test_presets_equal_the_real_config(preset: str, version: tuple[int, int], sublevel: int,
                                       config: str) -> None:
    parsed = KernelConfig.from_kconfig((VECTORS / config).read_text(), version=version,
                                       sublevel=sublevel)
    assert PRESETS[preset] == parsed


def test_the_copy_at_kexec_is_a_property_of_the_build_not_of_the_version() -> None:
    """6.12.117 (Debian) has the 6.16 change that copies the list at kexec execute; an
    early 6.12 stable kernel copies at load, as 6.1 does."""
    text = (VECTORS / "realkernel/custom-6.12-kconfig.txt").read_text()
    assert KernelConfig.from_kconfig(text, version=(6, 12), sublevel=117).copies_list_at_execute
    assert not KernelConfig.from_kconfig(text, version=(6, 12), sublevel=93
                                         ).copies_list_at_execute
    assert not PRESETS["custom-6.1-ima-kexec"].copies_list_at_execute
    assert PRESETS["custom-6.12-ima-kexec"].copies_list_at_execute


def test_what_the_configs_say() -> None:
    c61 = PRESETS["debian12-6.1"]
    assert c61.ima_default_template == "ima-sig" and not c61.ima_kexec
    assert c61.init_hashes == {H.SHA1, H.SHA256}  # sha512.ko: sha384/sha512 banks padded
    c612 = PRESETS["debian12-6.12"]
    assert c612.security_ipe and H.SHA512 in c612.init_hashes and H.SM3_256 not in \
        c612.init_hashes


def test_without_appraise_modsig_the_kernel_refuses_modsig_rules() -> None:
    m = Machine.create(preset="debian12-6.1")
    m.boot()
    with pytest.raises(PolicyError) as e:
        m.load_policy("appraise func=MODULE_CHECK appraise_type=imasig|modsig\n")
    assert e.value.line == 1
    assert m.policy.name == "tcb"


def test_file_valued_options_are_refused() -> None:
    with pytest.raises(UsageError):
        KernelConfig.from_kconfig('CONFIG_IPE_BOOT_POLICY="/etc/ipe/boot.pol"\n',
                                  version=(6, 12))
