"""One immutable state per boot generation: refused transitions change nothing, a power
cycle gives a fresh machine (the TPM's counters as TPM2_Startup rules them)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from imasim.algorithms import HashAlgorithm as H
from imasim.archive import ArchiveMember, write_cpio
from imasim.errors import ImasimError, ParseError, PolicyError, SimulationError
from imasim.ima.policy import MAY_READ, MAY_WRITE
from imasim.kconfig import PRESETS
from imasim.keys.keyring import BlacklistKey, Keyring
from imasim.kimage import kernel_image
from imasim.machine import Machine, MachineSnapshot
from imasim.sig import sign_module
from imasim.sig.authenticode import sign_pe
from imasim.sig.pefile import build_pe
from imasim.sig.pkcs7 import sign_pkcs7
from imasim.sig.xattr import sign_xattr
from pki import pki

CMDLINE = "ima_policy=tcb ima_appraise=log"
IPE_BOOT = "policy_name=boot policy_version=0.0.1\nDEFAULT action=ALLOW\n"


def _files() -> dict[str, tuple[bytes, dict[str, bytes]]]:
    leaf = pki()["leaf"]
    signed = b"\x7fELF signed"
    sig = sign_xattr(H.SHA256.hash(signed), key=leaf.key, keyid=leaf.as_key().key_id_v2)
    return {
        "/bin/a": (b"\x7fELF a", {}),
        "/bin/signed": (signed, {"security.ima": sig}),
        "/etc/data": (b"data", {}),
        "/lib/modules/good.ko": (sign_module(b"\x7fELF mod", key=leaf.key,
                                             certificate=leaf.cert), {}),
        "/lib/modules/bad.ko": (b"\x7fELF unsigned mod", {}),
        "/boot/vmlinuz": (sign_pe(build_pe(b"kernel"), key=leaf.key,
                                  certificate=leaf.cert), {}),
        "/boot/unsigned": (b"MZ unsigned kernel", {}),
        # a kernel with a built-in initramfs, an external one, and a bad one
        "/boot/vmlinuz-initramfs": (sign_pe(kernel_image([], initramfs=write_cpio(
            [ArchiveMember("init", b"#!/bin/sh\n", 0o100755)])), key=leaf.key,
            certificate=leaf.cert), {}),
        "/boot/initrd.img": (write_cpio([ArchiveMember("init", b"initrd init", 0o100755),
                                         ArchiveMember("etc/x", b"x", 0o100644)]), {}),
        "/boot/initrd.bad": (b"070701 not a cpio", {}),
    }


def fresh(*, boot: bool = False, ipe: bool = False, **kw: object) -> Machine:
    m = Machine.create(cmdline=str(kw.pop("cmdline", CMDLINE)),
                       builtin_keys=[pki()["root"].as_key()], **kw)  # type: ignore[arg-type]
    if ipe:
        m.enable_ipe(IPE_BOOT)
    for path, (content, xattrs) in _files().items():
        m.add_file(path, content, xattrs=xattrs)
    if boot:
        m.boot()
    return m


def same_but_counters(a: MachineSnapshot, b: MachineSnapshot) -> bool:
    return dataclasses.replace(a, tpm_counters=(0, 0)) == \
        dataclasses.replace(b, tpm_counters=(0, 0))


def test_power_cycle_gives_a_fresh_machine() -> None:
    m = fresh(boot=True, preset="debian12-6.1")
    m.open("/etc/data", MAY_WRITE)
    m.read_file("/etc/data")  # open_writers violation
    assert m.load_module("/lib/modules/bad.ko").allowed  # unsigned, not enforced: taint
    assert m.violations == 1 and m.tainted and m.loaded_modules
    m.add_key("_ima", pki()["leaf"].as_key())
    counters = (m.tpm.reset_count, m.tpm.restart_count)
    m.power_cycle()
    new = fresh(preset="debian12-6.1")
    assert (m.violations, m.tainted, m.loaded_modules, m.booted) == (0, False, (), False)
    assert m.keyrings.ima.keys == ()
    assert same_but_counters(m.snapshot(), new.snapshot())
    # TPM2_Startup(CLEAR) without a Shutdown(STATE): a TPM Reset
    assert (m.tpm.reset_count, m.tpm.restart_count) == (counters[0] + 1, 0)
    m.boot()
    new.boot()
    assert same_but_counters(m.snapshot(), new.snapshot())


def test_power_cycle_drops_files_in_memory() -> None:
    m = fresh()
    m.add_file("/tmp/x", b"x", fs=("tmpfs", 0x01021994))
    m.power_cycle()
    assert "/tmp/x" not in m.files and "/bin/a" in m.files


@pytest.mark.parametrize("cmdline", ["ima_policy=bogus", "ima_template=nonesuch",
                                     "ima_appraise=sometimes", "ima_hash=md6"])
def test_a_kexec_the_new_kernel_refuses_changes_nothing(cmdline: str) -> None:
    m = fresh(boot=True)
    assert m.kexec_load("/boot/vmlinuz", cmdline=cmdline).allowed
    before = m.snapshot()
    with pytest.raises(ImasimError):
        m.kexec_execute()
    assert m.snapshot() == before
    assert m.kexec_log == () and m.state.boot.kexec is not None
    m.kexec_execute(cmdline="ima_policy=tcb")  # the image is still there
    assert len(m.kexec_log) == 1 and m.kernel_generation == 1


@pytest.mark.parametrize("cmdline", ["ima_policy=bogus", "ima_template=nonesuch"])
def test_a_refused_boot_can_be_retried(cmdline: str) -> None:
    m = fresh(cmdline=cmdline)
    before = m.snapshot()
    for _ in range(2):  # the same error again, not "already booted"
        with pytest.raises((PolicyError, ParseError)):
            m.boot()
        assert not m.booted and m.snapshot() == before


def test_refused_policy_write_keeps_only_its_audit_record() -> None:
    m = fresh(boot=True)
    before = m.snapshot()
    with pytest.raises(PolicyError):
        m.load_policy("measure func=NOPE\n")
    assert m.snapshot() == before
    assert str(m.audit[-1]).startswith("type=1802 op=policy_update cause=failed")


# -- the property: random sequences of transitions -----------------------------------------
PATHS = sorted(_files())
POLICIES = ["measure func=BPRM_CHECK\n", "appraise func=BPRM_CHECK appraise_type=imasig\n",
            "measure func=KEY_CHECK keyrings=.ima\nmeasure func=KEXEC_CMDLINE\n",
            "measure func=NOPE\n", "bogus\n"]
CMDLINES = [None, "ima_policy=tcb", "ima_policy=bogus", "ima_appraise=never",
            "ima_template=ima-sig ima_policy=tcb"]
KEYRINGS = [".ima", ".evm", ".platform", ".machine", ".builtin_trusted_keys",
            ".secondary_trusted_keys", ".nonesuch"]
SIGNERS = ["root", "inter", "leaf", "stranger", "chained"]
#: root may add signed hashes to .blacklist (CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE)
AUTH_UPDATE = PRESETS["generic-6.1-ima-kexec"].with_(system_blacklist_auth_update=True)


def _blacklisted(what: str) -> str:
    """A .blacklist description: the tbs: hash of a test certificate, or a literal."""
    if what in SIGNERS:
        tbs = pki()[what].as_key().tbs_hash()
        assert tbs is not None
        return "tbs:" + tbs.hex()
    return what


class Transitions(RuleBasedStateMachine):
    """Every operation either succeeds or leaves the snapshot as it was; the kernel's
    own keyrings never change from user space."""

    def __init__(self) -> None:
        super().__init__()
        self.m = fresh(config=AUTH_UPDATE, ipe=True)

    def attempt(self, op: str, *args: object, **kw: object) -> None:
        before = self.m.snapshot()
        try:
            getattr(self.m, op)(*args, **kw)
        except ImasimError:
            assert self.m.snapshot() == before, op

    @initialize()
    def first_boot(self) -> None:
        self.m.boot()

    @rule(initramfs=st.sampled_from([b"", b"not a cpio", write_cpio(
        [ArchiveMember("init", b"#!/bin/sh\n", 0o100755)])]),
        initrd=st.sampled_from([None, b"not a cpio"]))
    def boot(self, initramfs: bytes, initrd: bytes | None) -> None:
        """A boot (refused while booted), with the archives populate_rootfs unpacks (a
        bad built-in one panics and must change nothing)."""
        self.attempt("boot", initramfs, initrd)

    @rule(load=st.sampled_from(CMDLINES[1:]), execute=st.sampled_from(CMDLINES),
          kernel=st.sampled_from(["/boot/vmlinuz", "/boot/vmlinuz-initramfs"]),
          initrd=st.sampled_from([None, "/boot/initrd.img", "/boot/initrd.bad"]))
    def kexec(self, load: str, execute: str | None, kernel: str, initrd: str | None) -> None:
        """A load and an execute in a row, so the new kernel's refusals are reached (and
        its populate_rootfs of the built-in and the external initramfs)."""
        self.attempt("kexec_load", kernel, initrd, cmdline=load)
        self.attempt("kexec_execute", cmdline=execute)

    @rule(path=st.sampled_from(PATHS), op=st.sampled_from(["exec", "mmap", "read_file",
                                                          "load_module", "load_firmware"]))
    def access(self, path: str, op: str) -> None:
        self.attempt(op, path)

    @rule(path=st.sampled_from(PATHS), write=st.booleans())
    def open_close(self, path: str, write: bool) -> None:
        self.attempt("open", path, MAY_WRITE if write else MAY_READ)
        self.attempt("close", path, MAY_WRITE if write else MAY_READ)

    @rule(ring=st.sampled_from(KEYRINGS), signer=st.sampled_from(SIGNERS))
    def add_key(self, ring: str, signer: str) -> None:
        self.attempt("add_key", ring, pki()[signer].as_key())

    @rule(dest=st.sampled_from(KEYRINGS), item=st.sampled_from([*KEYRINGS, "own .machine"]),
          clear=st.booleans())
    def link(self, dest: str, item: str, clear: bool) -> None:
        own = Keyring(".machine")
        own.add(pki()["stranger"].as_key())
        self.attempt("link_keyring", dest, own if item == "own .machine" else item)
        if clear:
            self.attempt("clear_keyring", dest)

    @rule(text=st.sampled_from(POLICIES))
    def load_policy(self, text: str) -> None:
        self.attempt("load_policy", text)

    @rule(kernel=st.sampled_from(["/boot/vmlinuz", "/boot/unsigned", "/nonesuch", None]),
          cmdline=st.sampled_from(CMDLINES[1:]),
          syscall=st.sampled_from(["kexec_file_load", "kexec_load", "kexec"]))
    def kexec_load(self, kernel: str | None, cmdline: str, syscall: str) -> None:
        self.attempt("kexec_load", kernel, cmdline=cmdline, syscall=syscall)

    @rule(what=st.sampled_from(["leaf", "stranger", "bin:" + "ab" * 32, "bin:AB", "bin:", ""]),
          signer=st.sampled_from(["root", "leaf", None]), clear=st.booleans())
    def blacklist(self, what: str, signer: str | None, clear: bool) -> None:
        """keyctl add blacklist DESC PKCS7 %:.blacklist (a tbs: hash blocks that
        certificate from then on), and keyctl clear, which .blacklist refuses."""
        desc = _blacklisted(what)
        s = pki()[signer] if signer else None
        payload = sign_pkcs7(desc.encode(), key=s.key, certificate=s.cert) if s else b""
        self.attempt("add_key", ".blacklist", BlacklistKey(desc, payload))
        if clear:
            self.attempt("clear_keyring", ".blacklist")

    @rule(cmdline=st.sampled_from(CMDLINES))
    def kexec_execute(self, cmdline: str | None) -> None:
        self.attempt("kexec_execute", cmdline=cmdline)

    @rule()
    def power_cycle(self) -> None:
        counters = (self.m.tpm.reset_count, self.m.tpm.restart_count)
        self.m.power_cycle()
        assert same_but_counters(self.m.snapshot(), fresh(config=AUTH_UPDATE, ipe=True).snapshot())
        assert (self.m.tpm.reset_count, self.m.tpm.restart_count) == (counters[0] + 1, 0)

    @rule(data=st.sampled_from([b"", b"policy_name=x policy_version=0.0.0\nDEFAULT action=ALLOW\n",
                                b"\x30\x03\x02\x01\x00"]))
    @precondition(lambda self: self.m.ipe is not None)
    def ipe_write(self, data: bytes) -> None:
        before = self.m.snapshot()
        ipe = self.m.ipe
        assert ipe is not None
        for write in (lambda: ipe.new_policy(data), lambda: ipe.activate("nonesuch"),
                      lambda: ipe.delete("boot")):
            try:
                write()
            except ImasimError:
                assert self.m.snapshot() == before

    @invariant()
    def kernel_keyrings_hold_only_kernel_keys(self) -> None:
        rings = self.m.keyrings
        assert rings.builtin.keys == (pki()["root"].as_key(),)
        assert rings.platform.keys == rings.machine.keys == ()
        # root may clear .secondary_trusted_keys (KEY_USR_WRITE, no KEY_FLAG_KEEP), but
        # nothing but the builtin keyring is ever linked into it
        assert all(r is rings.builtin for r in rings.secondary.links)

    @invariant()
    def list_replays_while_booted(self) -> None:
        from imasim.ima.replay import match

        if self.m.booted and not self.m.lost_measurements and self.m.kexec_log == ():
            assert match(self.m.measurements, self.m.pcr_values()).matched


TestTransitions = Transitions.TestCase
TestTransitions.settings = settings(max_examples=20, stateful_step_count=20, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])


def test_unbooted_hooks_are_refused_without_change() -> None:
    m = fresh()
    before = m.snapshot()
    with pytest.raises(SimulationError):
        m.exec("/bin/a")
    assert m.snapshot() == before
