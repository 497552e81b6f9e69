"""The custom builds' kexec, simulated on their presets, reproduces the real captures.

k612-custom-ima-kexec-late-measure, k612-custom-ima-kexec-critical-data and
k612-custom-ima-kexec-template-mix (tests/vectors/realkernel/): Debian's linux-source-6.12
6.12.118 built by the capture harness (``build-custom-kernel.sh 6.12``: tinyconfig plus
CONFIG_IMA_KEXEC=y; its .config is realkernel/custom-6.12-kconfig.txt, which the preset
``custom-6.12-ima-kexec`` equals, tests/machine/test_presets.py);
custom-ima-kexec-late-measure: the same recipe on linux-source-6.1 6.1.192 (preset
``custom-6.1-ima-kexec``, realkernel/custom-6.1-kconfig.txt). Each booted under qemu with
swtpm. The guest ran a workload, ``kexec -s -l`` of the same kernel (then, but in
template-mix, a new script, after-load.sh, between the load and ``kexec -e``), dumped the
list, and jumped; the second kernel ran the workload again. The late-measure captures'
policy is ``ima_policy=tcb``; critical-data writes a policy with KEXEC_KERNEL_CHECK,
KEXEC_INITRAMFS_CHECK, KEXEC_CMDLINE and CRITICAL_DATA rules; template-mix one with a
template per hook (ima-sig, ima-ng, the legacy ima, ima-buf for KEY_CHECK and for
KEXEC_CMDLINE in PCR 11) and ima_hash=sha512, whose legacy entries stop the next kernel's
restore.

The simulation gets the captured firmware PCRs 0-9, the same command lines and policy, the
files whose bytes the capture keeps (the harness's scripts and data, ``files/``), an
empty file for the violation, the test certificate the guest added to ``_ima``, and a
stand-in of the same path for each binary whose bytes are not kept (busybox, kexec and its
libraries, the kernel image and initramfs). Each entry is made by the operation the guest
did (exec, the dynamic loader's mmap or read, a read, keyctl, kexec_file_load); where the
policy gives each hook its own template, the template tells which. It must give every
entry of known input byte for byte (both boot_aggregates, the scripts and data, the
violation and its file, the key, kexec-cmdline), every other entry with the capture's PCR,
template, event name and fields, in the capture's order, and the kexec as the real kernel
did it: the list copied at execute, so after-load.sh is a carried entry, and a restore
that stops at the first legacy entry; for the 6.1 build, the list copied at load, so
after-load.sh is lost. Each capture run on the other build's preset does not give the
capture: the captures pin each copy point, not only imasim's model of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.ima import MeasurementEntry
from imasim.ima.codec import parse_measurement_list
from imasim.ima.policy import MAY_WRITE
from imasim.ima.replay import match
from imasim.keys import Key
from imasim.machine import Machine
from imasim.tpm.soft_tpm import SoftTpm
from imasim.vfs import RAMFS
from realdata import REALKERNEL, stage

BANKS = (H.SHA1, H.SHA256, H.SHA384)
LATE_CAPTURES = ["k612-custom-ima-kexec-late-measure", "k612-custom-ima-kexec-critical-data"]
CAPTURES = [*LATE_CAPTURES, "k612-custom-ima-kexec-template-mix",
            "custom-ima-kexec-late-measure"]
#: (capture, the preset equal to its build's config, where that build copies the list)
COPY_POINTS = [("custom-ima-kexec-late-measure", "custom-6.1-ima-kexec", "load"),
               *((c, "custom-6.12-ima-kexec", "execute") for c in LATE_CAPTURES)]
KERNEL, INITRD = "/kexec/vmlinuz", "/kexec/initrd2.img"
LATE = "/opt/rk/after-load.sh"
CERT = "/etc/rk/ima-test-cert.der"


def _tpm_at(pcrs: dict[H, dict[int, bytes]]) -> SoftTpm:
    """The TPM as SeaBIOS and the direct kernel boot left it: PCRs 0-9 of the capture."""
    state = json.loads(SoftTpm(BANKS).to_json())
    for alg, values in pcrs.items():
        for i in range(10):
            state["pcrs"][alg.kernel_name][i] = values[i].hex()
    return SoftTpm.from_json(json.dumps(state))


def _known(capture: str) -> dict[str, bytes]:
    """The files whose bytes the capture keeps, by guest path."""
    root = REALKERNEL / capture / "files"
    known = {"/" + str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
             if p.is_file()}
    cert = REALKERNEL / capture / "keys" / "ima-test-cert.der"
    if cert.is_file():  # the harness copies it to /etc/rk for keyctl
        known[CERT] = cert.read_bytes()
    return known


def _carried(real2: list[MeasurementEntry]) -> int:
    """How many entries the second kernel restored: those before its boot_aggregate."""
    return next(i for i, e in enumerate(real2) if i and e.event_name == "boot_aggregate")


_OPS = {"BPRM_CHECK": "exec", "FILE_MMAP": "mmap", "MMAP_CHECK": "mmap", "FILE_CHECK": "read"}


def _ops_by_template(policy: str | None) -> dict[str, str]:
    """The file operation a policy's ``template=`` names: the template of exactly one of
    its execve / mmap / read rules (the guest's operation shows in the entry's template)."""
    ops: dict[str, set[str]] = {}
    for line in (policy or "").splitlines():
        words = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
        if line.startswith("measure ") and words.get("func") in _OPS and "template" in words:
            ops.setdefault(words["template"], set()).add(_OPS[words["func"]])
    return {t: next(iter(o)) for t, o in ops.items() if len(o) == 1}


def _workload(m: Machine, real: list[MeasurementEntry], known: dict[str, bytes], *,
              reads_kexec_files: bool, kexec_cmdline: str, by_template: dict[str, str]
              ) -> None:
    """Do what the guest did to make each of ``real``'s entries, in its order."""
    done: set[str] = set()
    for e in real:
        name = e.event_name
        if name in done or name in ("boot_aggregate", "kexec-cmdline"):
            continue  # made by the step that made an earlier entry
        done.add(name)
        content = known.get(name, b"stand-in for " + name.encode())
        if e.is_violation:
            # `exec 3>>viol; cat viol`: read while open for write (open_writers), then close
            m.add_file(name, b"", fs=RAMFS)
            assert m.open(name, MAY_WRITE)
            m.read_file(name)
            m.close(name, MAY_WRITE)
        elif name == "_ima":
            # keyctl newring _ima @u; keyctl padd asymmetric "" %:_ima < the certificate
            m.add_key("_ima", Key.from_certificate(known[CERT]))
        elif name == KERNEL:
            # kexec-tools reads the image and initramfs itself, then kexec_file_load
            for path in (KERNEL, INITRD):
                m.add_file(path, b"stand-in for " + path.encode(), fs=RAMFS)
                if reads_kexec_files:
                    m.read_file(path)
            done.add(INITRD)
            assert m.kexec_load(KERNEL, INITRD, kexec_cmdline).allowed
        else:
            m.add_file(name, content, fs=RAMFS)
            op = by_template.get(e.template_name) or (
                "read" if name.endswith((".txt", ".der", ".ko")) else
                "mmap" if ".so" in name else "exec")
            r = m.read_file(name) if op == "read" else m.mmap(name) if op == "mmap" else \
                m.exec(name)
            assert r.allowed


def _simulate(capture: str, preset: str) -> tuple[Machine, list[MeasurementEntry],
                                                  list[MeasurementEntry]]:
    s1, s2 = stage(capture, "stage1"), stage(capture, "stage2")
    real1, real2 = list(s1.entries()), list(s2.entries())
    cmdline1 = (s1.path / "cmdline.txt").read_text().strip()
    cmdline2 = (s2.path / "cmdline.txt").read_text().strip()
    policy_file = REALKERNEL / capture / "ima-policy.txt"
    policy = None if policy_file.read_text().startswith("builtin policy") else \
        policy_file.read_text()
    opts = {"known": _known(capture), "kexec_cmdline": cmdline2,
            "reads_kexec_files": policy is None or "func=FILE_CHECK" in policy,
            "by_template": _ops_by_template(policy)}
    m = Machine.create(preset=preset, cmdline=cmdline1, banks=BANKS, tpm=_tpm_at(s1.pcrs()),
                       firmware_pcrs=False)
    m.boot()
    if policy is not None:
        m.load_policy(policy)  # /init writes it first, so /init itself is not measured
    _workload(m, real1, **opts)  # type: ignore[arg-type]
    sim1 = list(m.measurements)
    m.kexec_execute()
    if policy is not None:
        m.load_policy(policy)  # the new kernel: a new policy file, written once more
    _workload(m, real2[_carried(real2) + 1:], **opts)  # type: ignore[arg-type]
    return m, sim1, list(m.measurements)


def _exact(e: MeasurementEntry, known: dict[str, bytes]) -> bool:
    """Whether ``e``'s input is known, so the simulation must give its bytes."""
    return e.is_violation or e.event_name in known or e.event_name in (
        "boot_aggregate", "kexec-cmdline", "_ima") or e.event_name.startswith("/opt/rk/viol-")


def _assert_reproduces(sim: list[MeasurementEntry], real: list[MeasurementEntry],
                       known: dict[str, bytes]) -> None:
    assert len(sim) == len(real)
    for i, (a, b) in enumerate(zip(sim, real, strict=True)):
        if _exact(b, known):
            assert a.to_bytes() == b.to_bytes(), (i, b.event_name)
        else:
            assert (a.pcr, a.template_name, a.event_name, a.is_violation) == \
                (b.pcr, b.template_name, b.event_name, b.is_violation), i
            assert [type(f) for f in a.fields.values()] == [type(f) for f in b.fields.values()]


@pytest.mark.parametrize("capture, preset, copied_at", COPY_POINTS,
                         ids=[c for c, _, _ in COPY_POINTS])
def test_each_build_copies_where_its_capture_shows_and_imasim_reproduces_both_lists(
        capture: str, preset: str, copied_at: str) -> None:
    s1, s2 = stage(capture, "stage1"), stage(capture, "stage2")
    real1, real2 = list(s1.entries()), list(s2.entries())
    known = _known(capture)
    n = _carried(real2)
    assert real1[-1].event_name == LATE  # run between kexec -s -l and kexec -e
    if copied_at == "execute":  # the real kernel carried after-load.sh
        assert n == len(real1) and s2.binary.startswith(s1.binary)
    else:  # the real kernel carried the list as it was at load
        assert n == len(real1) - 1 and real2[:n] == real1[:n]
        assert LATE not in [e.event_name for e in real2]

    m, sim1, sim2 = _simulate(capture, preset)
    _assert_reproduces(sim1, real1, known)
    _assert_reproduces(sim2, real2, known)
    (rec,) = m.kexec_log
    assert rec.copied_at == copied_at and rec.carried == n
    assert [e.event_name for e in rec.lost] == ([] if copied_at == "execute" else [LATE])
    # the TPM saw after-load.sh either way: the list replays only when it was carried,
    # in the simulation as on the real machine
    carried = copied_at == "execute"
    assert match(sim2, m.pcr_values()).matched is carried
    assert match(real2, s2.pcrs()).matched is carried
    assert match(real1 + real2[n:], s2.pcrs()).matched


@pytest.mark.parametrize("capture, preset, copied_at", COPY_POINTS,
                         ids=[c for c, _, _ in COPY_POINTS])
def test_the_other_copy_point_would_not_give_the_capture(capture: str, preset: str,
                                                         copied_at: str) -> None:
    other = "custom-6.1-ima-kexec" if copied_at == "execute" else "custom-6.12-ima-kexec"
    real2 = list(stage(capture, "stage2").entries())
    m, _, sim2 = _simulate(capture, other)
    (rec,) = m.kexec_log
    assert rec.copied_at != copied_at
    with pytest.raises(AssertionError):
        _assert_reproduces(sim2, real2, _known(capture))


@pytest.mark.parametrize("capture", LATE_CAPTURES)
def test_carried_entries_of_known_input_are_restored_in_every_bank(capture: str) -> None:
    """After restore the 6.12 kernel writes each carried entry into every per-bank list
    with that bank's hash over its template data; the simulation's template digests of
    the same entries are those bytes."""
    s2 = stage(capture, "stage2")
    known = _known(capture)
    _, sim1, _ = _simulate(capture, "custom-6.12-ima-kexec")
    assert len(s2.per_bank_files()) == 3
    for alg, path in s2.per_bank_files():
        carried = list(parse_measurement_list(path.read_bytes(), digest_alg=alg))[:len(sim1)]
        for a, b in zip(sim1, carried, strict=True):
            if _exact(b, known) and not b.is_violation:
                assert a.template_hash(alg) == b.template_digest, (alg, b.event_name)


def test_a_legacy_entry_stops_the_restore_in_the_real_kernel_and_in_imasim() -> None:
    """The template-mix capture (ima_hash=sha512): the new kernel keeps the 3 entries
    before the first legacy 'ima' one; the simulation's kexec does the same, and every
    entry of both boots is reproduced (a sha512 d-ng, the sha256 boot_aggregate of the
    bank IMA chose, the key as ima-buf, kexec-cmdline in PCR 11)."""
    capture = "k612-custom-ima-kexec-template-mix"
    s1, s2 = stage(capture, "stage1"), stage(capture, "stage2")
    real1, real2 = list(s1.entries()), list(s2.entries())
    known = _known(capture)
    assert _carried(real2) == 3 and real1[3].template_name == "ima"
    m, sim1, sim2 = _simulate(capture, "custom-6.12-ima-kexec")
    _assert_reproduces(sim1, real1, known)
    _assert_reproduces(sim2, real2, known)
    (rec,) = m.kexec_log
    assert rec.copied_at == "execute" and rec.carried == 3
    assert list(rec.lost) == sim1[3:]  # extended into the TPM, gone from the list
    assert {e.pcr for e in real1} == {10, 11} and real1[-1].event_name == "kexec-cmdline"
    assert not match(sim2, m.pcr_values()).matched
    assert match(sim1 + sim2[3:], m.pcr_values()).matched
    assert match(real1 + real2[3:], s2.pcrs()).matched


def test_the_files_kept_are_the_ones_measured() -> None:
    """files/ holds the guest's bytes: their sha256 is the digest in the real list."""
    for capture in CAPTURES:
        digests = {e.event_name: e.file_digest for e in stage(capture).entries()
                   if not e.is_violation}
        for path, content in _known(capture).items():
            d = digests.get(path)
            if d is not None:
                assert d.digest == H.from_name(d.algo).hash(content), path
    assert Path(REALKERNEL / CAPTURES[0] / "files" / "init").stat().st_size > 0
