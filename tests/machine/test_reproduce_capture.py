"""A simulated Debian 6.1 boot reproduces the real capture's entries whose inputs are known.

template-mix-sha512 (tests/vectors/realkernel/): Debian's linux-image-6.1.0-56, command
line ``ima_hash=sha512 ima_template=ima-sig`` (sha512 is a module there, so IMA falls
back to sha256), the custom policy in ima-policy.txt, the Debian build key queued at
early boot and measured when the policy is written, a test certificate added to ``_ima``
with keyctl, and a kexec_file_load whose command line is measured into PCR 11. The
simulation is fed the captured PCRs 0-9, the same certificates, policy and command
line, and must produce those entries byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from imasim.algorithms import HashAlgorithm as H
from imasim.ima.policy import MAY_READ
from imasim.keys import Key
from imasim.machine import Machine
from imasim.tpm.soft_tpm import SoftTpm
from realdata import stage

VECTORS = Path(__file__).parent.parent / "vectors"
CAPTURE = VECTORS / "realkernel" / "template-mix-sha512"
BANKS = (H.SHA1, H.SHA256, H.SHA384)


def _tpm_at_captured_firmware_state() -> SoftTpm:
    pcrs = stage("template-mix-sha512").pcrs()
    state = json.loads(SoftTpm(BANKS).to_json())
    for alg, values in pcrs.items():
        for i in range(10):  # what firmware and the boot loader measured
            state["pcrs"][alg.kernel_name][i] = values[i].hex()
    return SoftTpm.from_json(json.dumps(state))


def test_debian_boot_reproduces_boot_aggregate_keys_and_kexec_cmdline() -> None:
    real = list(stage("template-mix-sha512").entries())
    cmdline = (CAPTURE / "stage1" / "cmdline.txt").read_text().strip()
    build_key = Key.from_certificate((VECTORS / "debian" /
                                      "debian-6.1.0-56-build-key.der").read_bytes())
    m = Machine.create(preset="debian12-6.1", cmdline=cmdline, banks=BANKS,
                       tpm=_tpm_at_captured_firmware_state(), firmware_pcrs=False,
                       builtin_keys=[build_key])
    assert m.ima_hash is H.SHA256  # ima_hash=sha512 could not be allocated
    m.boot()
    assert m.measurements[0].to_bytes() == real[0].to_bytes()  # boot_aggregate
    assert len(m.measurements) == 1  # the builtin key waits in the queue
    m.load_policy((CAPTURE / "ima-policy.txt").read_text())
    # the queued .builtin_trusted_keys key, measured when the policy was written
    assert m.measurements[1].to_bytes() == real[1].to_bytes()

    test_cert = Key.from_certificate((CAPTURE / "keys" / "ima-test-cert.der").read_bytes())
    m.add_key("_ima", test_cert)  # keyctl padd asymmetric "" %:_ima
    assert m.keyrings.ima.name == "_ima"
    real_key = next(e for e in real if e.event_name == "_ima")
    assert m.measurements[-1].to_bytes() == real_key.to_bytes()

    # kexec-tools read the kernel and initrd first (FILE_CHECK, template ima), so
    # KEXEC_KERNEL_CHECK and KEXEC_INITRAMFS_CHECK add nothing; the command line goes
    # to PCR 11 as ima-buf
    real_cmd = real[-1]
    assert real_cmd.event_name == "kexec-cmdline" and real_cmd.pcr == 11
    m.add_file("/kexec/vmlinuz", b"kernel")
    m.add_file("/kexec/initrd2.img", b"initrd")
    for p in ("/kexec/vmlinuz", "/kexec/initrd2.img"):
        m.open(p, MAY_READ)
        m.close(p, MAY_READ)
    before = len(m.measurements)
    buf = real_cmd.fields["buf"]
    assert isinstance(buf, bytes)
    assert m.kexec_load("/kexec/vmlinuz", "/kexec/initrd2.img", buf.decode()).allowed
    assert len(m.measurements) == before + 1
    assert m.measurements[-1].to_bytes() == real_cmd.to_bytes()
