"""kernel_init_freeable's order (imasim.kinit): populate_rootfs, init_ima,
prepare_namespace, integrity_load_keys, load_default_modules; the 2014 signed-init
thread's "we load keys after mounting rootfs and before calling load_default_modules()"."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from imasim.algorithms import HashAlgorithm as H
from imasim.archive import ArchiveMember, write_cpio
from imasim.errors import ImasimError, ParseError
from imasim.kconfig import PRESETS, KernelConfig
from imasim.kimage import INITRAMFS_TRAILER, embedded_initramfs, kernel_image
from imasim.kinit import InitStep, default_modules, init_steps, modprobe_path
from imasim.machine import Machine
from imasim.sig.authenticode import sign_pe
from imasim.sig.xattr import sign_xattr
from pki import pki

KEY = "/etc/keys/x509_ima.der"
MOD = "/lib/modules/kernel/block/deadline-iosched.ko"
BASE = PRESETS["generic-6.1-ima-kexec"].with_(ima_x509_path=KEY)


def _sig(content: bytes) -> dict[str, bytes]:
    leaf = pki()["leaf"]
    return {"security.ima": sign_xattr(H.SHA256.hash(content), key=leaf.key,
                                       keyid=leaf.as_key().key_id_v2)}


def _machine(cfg: KernelConfig, cmdline: str = "ima_appraise_tcb elevator=deadline",
             modprobe: bool = True) -> Machine:
    m = Machine.create(config=cfg, cmdline=cmdline, builtin_keys=[pki()["root"].as_key()])
    m.add_file(KEY, pki()["leaf"].der, mode=0o100644)
    if modprobe:
        m.add_file("/sbin/modprobe", b"modprobe", xattrs=_sig(b"modprobe"))
    m.add_file(MOD, b"\x7fELF deadline", xattrs=_sig(b"\x7fELF deadline"))
    return m


def test_steps_by_version() -> None:
    assert InitStep.INTEGRITY_LOAD_KEYS not in init_steps((3, 18))
    s = init_steps((3, 19))
    assert s.index(InitStep.INTEGRITY_LOAD_KEYS) < s.index(InitStep.LOAD_DEFAULT_MODULES)
    assert s.index(InitStep.PREPARE_NAMESPACE) < s.index(InitStep.INTEGRITY_LOAD_KEYS)
    assert s.index(InitStep.POPULATE_ROOTFS) < s.index(InitStep.INIT_IMA)
    assert InitStep.LOAD_DEFAULT_MODULES not in init_steps((5, 0))
    assert default_modules("elevator=cfq elevator=deadline", (4, 19)) == ("deadline-iosched",)
    assert default_modules("root=/dev/vda", (4, 19)) == ()
    assert modprobe_path("deadline-iosched", ["/lib/modules/x/deadline_iosched.ko",
                                              "/usr/deadline-iosched.ko"]) == \
        "/lib/modules/x/deadline_iosched.ko"


def test_keys_before_default_modules_since_3_19() -> None:
    m = _machine(BASE.with_(version=(3, 19)))
    m.boot()
    assert m.loaded_modules == (MOD,)
    log = m.state.boot.boot_log
    keys = next(i for i, line in enumerate(log) if line.startswith("integrity: Loaded"))
    mods = next(i for i, line in enumerate(log) if line.startswith("load_default_modules"))
    assert keys < mods and log[mods].endswith("loaded")


def test_before_3_19_the_default_module_is_appraised_without_a_key() -> None:
    m = _machine(BASE.with_(version=(3, 18)))
    m.boot()
    assert m.loaded_modules == () and m.keyrings.ima.keys == ()
    assert m.state.boot.boot_log[-1].endswith("/sbin/modprobe refused: invalid-signature")


def test_an_unsigned_module_is_refused_after_the_key_too() -> None:
    m = _machine(BASE.with_(version=(4, 19)))
    m.add_file(MOD, b"\x7fELF deadline, changed")  # the old security.ima stays
    m.boot()
    assert m.loaded_modules == () and m.keyrings.ima.keys
    assert "refused" in m.state.boot.boot_log[-1]


def test_no_modprobe_no_module_and_6_1_has_no_default_modules() -> None:
    m = _machine(BASE.with_(version=(4, 19)), modprobe=False)
    m.boot()
    assert m.loaded_modules == ()
    assert m.state.boot.boot_log[-1].endswith("/sbin/modprobe not found (-ENOENT)")
    m = _machine(BASE)  # 6.1: elevator= requests nothing
    m.boot()
    assert m.loaded_modules == ()
    assert not any("load_default_modules" in line for line in m.state.boot.boot_log)


# -- the built-in and the external initramfs through kexec ----------------------------------
INIT_SIGNED = b"#!/bin/sh\n# built in\n"
INIT_INITRD = b"#!/bin/sh\n# initrd\n"


def _cpio(**files: bytes) -> bytes:
    return write_cpio([ArchiveMember(p, c, 0o100755) for p, c in files.items()])


def _kexec_machine(cfg: KernelConfig) -> Machine:
    leaf = pki()["leaf"]
    m = Machine.create(config=cfg.with_(kexec_sig_force=True), cmdline="ima_policy=tcb",
                       builtin_keys=[pki()["root"].as_key()])
    m.keyrings.secondary.add(leaf.as_key())
    image = kernel_image([], initramfs=_cpio(init=INIT_SIGNED))
    m.add_file("/boot/vmlinuz", sign_pe(image, key=leaf.key, certificate=leaf.cert))
    m.add_file("/boot/initrd.img", _cpio(init=INIT_INITRD, extra=b"x"))
    m.boot()
    return m


@pytest.mark.parametrize("force", [False, True])
def test_populate_rootfs_unpacks_the_initrd_over_the_built_in_one(force: bool) -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(arch="arm64", initramfs_force=force)
    m = _kexec_machine(cfg)
    assert m.kexec_load("/boot/vmlinuz", "/boot/initrd.img").allowed
    m.kexec_execute()
    init = m.files["/init"]
    assert init.content == (INIT_SIGNED if force else INIT_INITRD)
    assert init.fs.initramfs and ("/extra" in m.files) is not force


def test_the_image_is_read_at_load() -> None:
    m = _kexec_machine(PRESETS["generic-6.1-ima-kexec"])
    assert m.kexec_load("/boot/vmlinuz", "/boot/initrd.img").allowed
    m.write_file("/boot/initrd.img", _cpio(init=b"evil"))  # after the load: too late
    m.kexec_execute()
    assert m.files["/init"].content == INIT_INITRD


def test_a_bad_external_initrd_is_logged_a_bad_built_in_one_refuses_the_kexec() -> None:
    m = _kexec_machine(PRESETS["generic-6.1-ima-kexec"])
    m.add_file("/boot/initrd.bad", b"not a cpio")
    assert m.kexec_load("/boot/vmlinuz", "/boot/initrd.bad").allowed
    m.kexec_execute()
    assert m.files["/init"].content == INIT_SIGNED
    assert any(line.startswith("Initramfs unpacking failed") for line in
               m.state.boot.boot_log)
    leaf = pki()["leaf"]
    bad = kernel_image([], initramfs=b"garbage, not a cpio")
    m.add_file("/boot/bad", sign_pe(bad, key=leaf.key, certificate=leaf.cert))
    assert m.kexec_load("/boot/bad").allowed
    before = m.snapshot()
    with pytest.raises(ImasimError, match="INTERNAL initramfs"):
        m.kexec_execute()
    assert m.snapshot() == before


def test_keys_come_from_the_initramfs_when_it_has_init() -> None:
    """With /init in rootfs prepare_namespace is skipped: integrity_load_keys reads
    CONFIG_IMA_X509_PATH from the initramfs, not from the disk."""
    leaf = pki()["leaf"]
    cfg = BASE.with_(kexec_sig_force=True)
    m = Machine.create(config=cfg, cmdline="ima_policy=tcb",
                       builtin_keys=[pki()["root"].as_key()])
    m.keyrings.secondary.add(leaf.as_key())
    m.add_file(KEY, leaf.der)  # on the disk only
    for name, files in (("without", {"init": INIT_SIGNED}),
                        ("with", {"init": INIT_SIGNED, KEY[1:]: leaf.der})):
        image = sign_pe(kernel_image([], initramfs=_cpio(**files)), key=leaf.key,
                        certificate=leaf.cert)
        m.add_file(f"/boot/{name}", image)
    m.boot()
    assert m.keyrings.ima.keys  # first boot: no initramfs, the disk is root
    m.kexec_load("/boot/without")
    m.kexec_execute()
    assert m.keyrings.ima.keys == ()
    assert "prepare_namespace: skipped, rootfs has /init" in m.state.boot.boot_log
    m.kexec_load("/boot/with")
    m.kexec_execute()
    assert m.keyrings.ima.keys


def test_embedded_initramfs_trailer() -> None:
    cpio = _cpio(init=b"x")
    image = kernel_image([b"cert"], initramfs=cpio)
    assert embedded_initramfs(image) == cpio
    assert embedded_initramfs(b"not a PE") == b""
    bad = kernel_image([], code=b"\xff\xff\xff\x7f" + INITRAMFS_TRAILER)
    with pytest.raises(ParseError) as exc:
        embedded_initramfs(bad)
    assert exc.value.field == "initramfs_size"
    # the digest covers the built-in initramfs: one byte changes it
    other = kernel_image([b"cert"], initramfs=_cpio(init=b"y"))
    from imasim.sig.authenticode import authenticode_digest
    assert authenticode_digest(image, H.SHA256) != authenticode_digest(other, H.SHA256)


@pytest.mark.interop
def test_the_built_in_initramfs_against_sbverify_and_gnu_cpio(tmp_path: Path) -> None:
    """sbverify accepts the signed image with a built-in initramfs and refuses it after
    one byte of its /init changed, as imasim's KEXEC_SIG does; GNU cpio unpacks the
    archive embedded_initramfs finds to the /init the next kernel's rootfs gets."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from tools import need

    leaf = pki()["leaf"]
    m = _kexec_machine(PRESETS["generic-6.1-ima-kexec"])
    image = m.files["/boot/vmlinuz"].content
    tampered = image.replace(b"built in", b"built-in")
    (tmp_path / "leaf.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
    for name, data in (("good.efi", image), ("bad.efi", tampered)):
        (tmp_path / name).write_bytes(data)
    verdicts = [subprocess.run([need("sbverify"), "--cert", str(tmp_path / "leaf.pem"),
                                str(tmp_path / n)], capture_output=True, check=False
                               ).returncode == 0 for n in ("good.efi", "bad.efi")]
    m.add_file("/boot/bad", tampered)
    assert verdicts == [m.kexec_load("/boot/vmlinuz").allowed,
                        m.kexec_load("/boot/bad").allowed] == [True, False]
    out = tmp_path / "rootfs"
    out.mkdir()
    subprocess.run([need("cpio"), "-idm", "--quiet"], input=embedded_initramfs(image),
                   cwd=out, check=True)
    assert m.kexec_load("/boot/vmlinuz").allowed
    m.kexec_execute()
    assert (out / "init").read_bytes() == m.files["/init"].content == INIT_SIGNED


def test_the_first_boot_unpacks_both_and_reads_the_key_from_the_initramfs() -> None:
    leaf, stranger = pki()["leaf"], pki()["stranger"]
    m = Machine.create(config=BASE, cmdline="ima_policy=tcb",
                       builtin_keys=[pki()["root"].as_key()])
    m.add_file(KEY, stranger.der)  # the disk's: not read, the initramfs is root
    m.boot(_cpio(init=INIT_SIGNED, **{KEY[1:]: leaf.der}), _cpio(extra=b"x"))
    assert m.files["/init"].fs.initramfs and "/extra" in m.files
    assert [k.description for k in m.keyrings.ima.keys] == [leaf.as_key().description]
    log = m.state.boot.boot_log
    assert log[:3] == ("populate_rootfs: unpacked the built-in initramfs",
                       "populate_rootfs: Unpacking initramfs...",
                       "prepare_namespace: skipped, rootfs has /init")


def test_built_in_initramfs_is_in_pcr_4_an_initrd_in_pcr_9() -> None:
    from imasim.kimage import firmware_booting
    from imasim.tpm.soft_tpm import SoftTpm

    def pcrs(image: bytes, initrd: bytes | None) -> tuple[bytes, bytes]:
        tpm = SoftTpm()
        firmware_booting(image, initrd=initrd)(tpm)
        return tpm.read(H.SHA256, 4), tpm.read(H.SHA256, 9)

    a, b = _cpio(init=b"a"), _cpio(init=b"b")
    plain = kernel_image([])
    assert pcrs(kernel_image([], initramfs=a), None)[0] != \
        pcrs(kernel_image([], initramfs=b), None)[0]
    (p4a, p9a), (p4b, p9b) = pcrs(plain, a), pcrs(plain, b)
    assert p4a == p4b == pcrs(plain, None)[0] and p9a != p9b
    assert pcrs(plain, None)[1] == bytes(32)


def test_a_scenario_machine_with_an_initramfs_and_an_initrd() -> None:
    from imasim.scenario import parse_scenario, run_scenario

    run = run_scenario(parse_scenario('''
[machine]
kernel_image = true
initramfs = [{ path = "/init", content = "built in" }]
initrd = [{ path = "/init", content = "initrd" }, { path = "/etc/fstab", content = "x" }]
[[actions]]
op = "file_is"
path = "/init"
content = "initrd"
expect = "allow"
[[actions]]
op = "power_cycle"
[[actions]]
op = "boot"
[[actions]]
op = "file_is"
path = "/etc/fstab"
content = "x"
expect = "allow"
'''))
    assert run.ok, run.to_dict()
    assert run.artifacts["boot.log"].startswith(b"populate_rootfs: unpacked the built-in")


def test_run_init_follows_kernel_init() -> None:
    from imasim.kinit import run_init

    def runner(ok: dict[str, int]) -> tuple[Callable[[str], int], list[str]]:
        calls: list[str] = []

        def execute(path: str) -> int:
            calls.append(path)
            return ok.get(path, -2)
        return execute, calls

    ex, calls = runner({"/init": -13, "/ima/init": 0})
    out = run_init("init=/ima/init", ex, rdinit_in_rootfs=True)
    assert out.init == "/ima/init" and calls == ["/init", "/ima/init"]
    assert out.log == ("Failed to execute /init (error -13)",)
    ex, calls = runner({"/init": 0})
    assert run_init("rdinit=/init init=/x", ex, rdinit_in_rootfs=False).log[-1] == \
        "Kernel panic - not syncing: Requested init /x failed (error -2)."
    ex, calls = runner({"/sbin/init": -13, "/bin/sh": 0})
    out = run_init("", ex, rdinit_in_rootfs=False)
    assert out.init == "/bin/sh" and calls == ["/sbin/init", "/etc/init", "/bin/init",
                                               "/bin/sh"]
    assert out.log == ("Starting init: /sbin/init exists but couldn't execute it "
                       "(error -13)",)
    ex, calls = runner({})
    assert run_init("", ex, rdinit_in_rootfs=False).init is None


def test_the_run_init_op_runs_the_initramfs_init_first() -> None:
    from imasim.scenario import parse_scenario, run_scenario

    run = run_scenario(parse_scenario('''
[machine]
cmdline = "ima_policy=tcb init=/sbin/init"
initrd = [{ path = "/init", content = "initramfs init" }]
[[files]]
path = "/sbin/init"
content = "systemd"
[[actions]]
op = "run_init"
expect = "allow"
'''))
    assert run.ok and run.results[0].reason == "init: /init"


def test_ima_sees_one_file_for_a_built_in_initramfs_and_appraises_it_with_the_kernel() -> None:
    """KEXEC_KERNEL_CHECK measures and appraises the whole image, the built-in initramfs
    with it; there is no second file for KEXEC_INITRAMFS_CHECK."""
    m = _kexec_machine(PRESETS["generic-6.1-ima-kexec"])
    image = m.files["/boot/vmlinuz"].content
    m.add_file("/boot/vmlinuz", image, xattrs=_sig(image))
    m.add_key(".ima", pki()["leaf"].as_key())
    m.load_policy("measure func=KEXEC_KERNEL_CHECK\nmeasure func=KEXEC_INITRAMFS_CHECK\n"
                  "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig\n")
    assert m.kexec_load("/boot/vmlinuz").allowed
    assert [e.event_name for e in m.measurements][-1:] == ["/boot/vmlinuz"]
    m.write_file("/boot/vmlinuz", image.replace(b"built in", b"built-in"))
    r = m.kexec_load("/boot/vmlinuz")
    assert not r.allowed and r.appraised
    assert [e.event_name for e in m.measurements].count("/boot/vmlinuz") == 2


def test_a_boot_whose_built_in_initramfs_panics_changes_nothing() -> None:
    m = Machine.create(cmdline="ima_policy=tcb")
    before = m.snapshot()
    with pytest.raises(ImasimError, match="INTERNAL initramfs"):
        m.boot(b"not a cpio")
    assert m.snapshot() == before and not m.booted
    m.boot(b"", b"not a cpio either")  # a bad initrd is only logged
    assert m.booted and m.state.boot.boot_log[0].startswith("Initramfs unpacking failed")


def _early(cfg: KernelConfig, *, secure_boot: bool = False) -> Machine:
    m = Machine.create(config=cfg.with_(initcall_modules=("crc32c",)),
                       cmdline="ima_policy=tcb", secure_boot=secure_boot)
    m.boot(b"", _cpio(**{"sbin/modprobe": b"modprobe",
                         "lib/modules/crc32c.ko": b"\x7fELF crc32c"}))
    return m


def test_initcall_modules_load_before_ima_unmeasured() -> None:
    m = _early(PRESETS["generic-6.1-ima-kexec"])
    assert m.loaded_modules == ("/lib/modules/crc32c.ko",) and m.tainted
    assert "/lib/modules/crc32c.ko" not in [e.event_name for e in m.measurements]
    assert m.state.boot.boot_log[1] == \
        "device_initcall: request_module(crc32c): /lib/modules/crc32c.ko loaded"
    assert _early(PRESETS["generic-6.1-ima-kexec"].with_(module_sig_force=True)
                  ).loaded_modules == ()


def test_the_arch_policy_enforces_module_signatures_only_from_ima_init_on() -> None:
    """set_module_sig_enforced() runs in IMA's init: an initcall's module before it loads
    unsigned on a secure-boot machine; the same module after boot is refused."""
    m = _early(PRESETS["generic-6.1-ima-kexec"].with_(ima_arch_policy=True),
               secure_boot=True)
    assert m.module_sig_enforced and m.loaded_modules == ("/lib/modules/crc32c.ko",)
    assert not m.load_module("/lib/modules/crc32c.ko").allowed


def test_initcall_modules_see_only_the_initramfs() -> None:
    cfg = PRESETS["generic-6.1-ima-kexec"].with_(initcall_modules=("crc32c",))
    m = Machine.create(config=cfg, cmdline="ima_policy=tcb")
    m.add_file("/sbin/modprobe", b"modprobe")
    m.add_file("/lib/modules/crc32c.ko", b"\x7fELF crc32c")
    m.boot()
    assert m.loaded_modules == ()
    assert m.state.boot.boot_log[0].endswith("/sbin/modprobe not found (-ENOENT)")
    m.power_cycle()
    m.boot(b"", _cpio(**{"sbin/modprobe": b"modprobe"}))  # modprobe, no module in rootfs
    assert m.state.boot.boot_log[1].endswith("modprobe: module crc32c not found")


def test_the_next_kernel_starts_on_a_fresh_rootfs() -> None:
    m = _kexec_machine(PRESETS["generic-6.1-ima-kexec"])
    m.unpack_initramfs(_cpio(old=b"from the first kernel's initramfs"))
    assert m.kexec_load("/boot/vmlinuz").allowed
    m.kexec_execute()
    assert "/old" not in m.files and "/boot/initrd.img" in m.files
    assert m.files["/init"].content == INIT_SIGNED
