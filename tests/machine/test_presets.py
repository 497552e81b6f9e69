"""The Debian presets are what Debian's kernels are configured with: each preset equals
KernelConfig.from_kconfig of the config file shipped in the linux-image package
(tests/vectors/debian/kconfig-*.txt, the integrity-relevant lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.errors import PolicyError, UsageError
from imasim.kconfig import PRESETS, KernelConfig
from imasim.machine import Machine

DEBIAN = Path(__file__).parent.parent / "vectors" / "debian"


@pytest.mark.parametrize("preset, version, config", [
    ("debian12-6.1", (6, 1), "kconfig-6.1.txt"),
    ("debian12-6.12", (6, 12), "kconfig-6.12.txt"),
])
def test_presets_equal_the_shipped_config(preset: str, version: tuple[int, int],
                                          config: str) -> None:
    parsed = KernelConfig.from_kconfig((DEBIAN / config).read_text(), version=version)
    assert PRESETS[preset] == parsed


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
