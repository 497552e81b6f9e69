"""CONFIG_IMA_X509_PATH / CONFIG_EVM_X509_PATH: keys the kernel loads from the root file
system at boot (integrity_load_keys), before init."""

from __future__ import annotations

from imasim.kconfig import PRESETS, KernelConfig
from imasim.machine import Machine
from pki import pki

IMA = "/etc/keys/x509_ima.der"
EVM = "/etc/keys/x509_evm.der"


def _machine(cfg: KernelConfig, files: dict[str, bytes]) -> Machine:
    m = Machine.create(config=cfg, builtin_keys=[pki()["root"].as_key()],
                       cmdline="ima_policy=tcb")
    for path, data in files.items():
        m.add_file(path, data, mode=0o100644)
    m.boot()
    return m


def test_the_key_is_loaded_before_init_and_measured() -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(ima_x509_path=IMA, evm_x509_path=EVM)
    m = _machine(cfg, {IMA: pki()["leaf"].der, EVM: pki()["leaf"].der})
    assert [k.description for k in m.keyrings.ima.keys] == [pki()["leaf"].as_key().description]
    assert m.keyrings.evm.keys and m.state.boot.evm_x509  # EVM_INIT_X509
    assert IMA in [e.event_name for e in m.measurements]  # read as FILE_CHECK, measured


def test_a_key_the_builtin_keys_do_not_vouch_for_is_refused_and_boot_goes_on() -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(ima_x509_path=IMA)
    m = _machine(cfg, {IMA: pki()["stranger"].der})
    assert m.booted and m.keyrings.ima.keys == ()


def test_a_missing_file_or_keyring_loads_nothing() -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(ima_x509_path=IMA)
    assert _machine(cfg, {}).keyrings.ima.keys == ()
    # Debian-like: no CONFIG_INTEGRITY_TRUSTED_KEYRING, no .ima to load into (-EINVAL)
    deb = PRESETS["debian12-6.1"].with_(ima_x509_path=IMA)
    assert _machine(deb, {IMA: pki()["leaf"].der}).keyrings.ima.keys == ()


def test_only_evm_load_x509() -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(evm_x509_path=EVM)
    m = _machine(cfg, {EVM: pki()["leaf"].der})
    assert m.keyrings.evm.keys and not m.keyrings.ima.keys
