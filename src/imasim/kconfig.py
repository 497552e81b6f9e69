"""The kernel configuration and boot options that change integrity behaviour.

A :class:`KernelConfig` holds the Kconfig switches and the kernel version where
behaviour changed between versions; :data:`PRESETS` has Debian 12's stock 6.1 and 6.12
kernels (from the ``config-*`` files of their linux-image packages, cross-checked with the
real-kernel captures) and the custom IMA_KEXEC build the captures used.
:class:`BootOptions` parses the IMA options of a kernel command line.

>>> BootOptions.from_cmdline("root=/dev/ram0 ima_policy=tcb ima_hash=sha256").ima_policy
('tcb',)
>>> PRESETS["debian12-6.1"].ima_kexec
False
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

from .algorithms import HashAlgorithm
from .errors import UnsupportedAlgorithmError, UsageError

__all__ = ["COPY_AT_EXECUTE_SINCE", "FORCE_KEXEC_SIG_MAINLINE", "FORCE_KEXEC_SIG_SINCE",
           "PRESETS", "BootOptions", "KernelConfig", "copies_list_at_execute",
           "forces_kexec_sig"]

AppraiseMode = Literal["enforce", "fix", "log", "off"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelConfig:
    """Kconfig switches (names without the CONFIG_ prefix) and the version."""

    version: tuple[int, int] = (6, 1)
    #: the patch level, the ``z`` of ``x.y.z`` (None: the series' first release, x.y.0):
    #: stable trees received some changes after their first release
    #: (:data:`FORCE_KEXEC_SIG_SINCE`)
    sublevel: int | None = None
    ima_kexec: bool = False  # CONFIG_IMA_KEXEC
    ima_appraise: bool = True  # CONFIG_IMA_APPRAISE
    ima_appraise_modsig: bool = True  # CONFIG_IMA_APPRAISE_MODSIG
    ima_write_policy: bool = False  # CONFIG_IMA_WRITE_POLICY
    ima_default_template: str = "ima-ng"  # CONFIG_IMA_DEFAULT_TEMPLATE
    ima_default_hash: HashAlgorithm = HashAlgorithm.SHA256  # CONFIG_IMA_DEFAULT_HASH
    ima_measure_pcr_idx: int = 10  # CONFIG_IMA_MEASURE_PCR_IDX
    ima_measure_asymmetric_keys: bool = True  # CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS
    ima_queue_early_boot_keys: bool = True  # CONFIG_IMA_QUEUE_EARLY_BOOT_KEYS
    integrity_trusted_keyring: bool = True  # CONFIG_INTEGRITY_TRUSTED_KEYRING
    ima_keyrings_permit_signed_by_builtin_or_secondary: bool = False
    secondary_trusted_keyring: bool = True  # CONFIG_SECONDARY_TRUSTED_KEYRING
    integrity_platform_keyring: bool = True
    integrity_machine_keyring: bool = False
    system_blacklist_hash_list: tuple[str, ...] = ()  # CONFIG_SYSTEM_BLACKLIST_HASH_LIST
    module_sig: bool = True  # CONFIG_MODULE_SIG
    module_sig_force: bool = False  # CONFIG_MODULE_SIG_FORCE
    kexec_sig: bool = True  # CONFIG_KEXEC_SIG
    kexec_sig_force: bool = False  # CONFIG_KEXEC_SIG_FORCE
    lockdown: Literal["none", "integrity", "confidentiality"] = "none"
    #: the architecture decides how kexec_file_load verifies an image: x86_64 and arm64
    #: check a PE/COFF Authenticode signature (verify_pefile_signature), s390x an appended
    #: module-style signature (s390_verify_sig), ppc64le too (kexec_elf_load's
    #: verify_sig, 5.17+); any other architecture has no kexec_file_load verifier
    arch: Literal["x86_64", "arm64", "s390x", "ppc64le"] = "x86_64"
    ima_arch_policy: bool = False  # CONFIG_IMA_ARCH_POLICY (secure boot rules, sig enforcement)
    #: CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT (a distribution patch, Debian and Fedora carry
    #: it): lockdown=integrity when the firmware booted with secure boot on
    lock_down_in_efi_secure_boot: bool = False
    security_ipe: bool = False  # CONFIG_SECURITY_IPE (and ipe in the LSM list)
    ipe_boot_policy: str | None = None  # CONFIG_IPE_BOOT_POLICY's text
    ipe_policy_sig_secondary_keyring: bool = True  # CONFIG_IPE_POLICY_SIG_SECONDARY_KEYRING
    ipe_policy_sig_platform_keyring: bool = True  # CONFIG_IPE_POLICY_SIG_PLATFORM_KEYRING
    #: the kernel's patch level, not its version: whether kexec copies the measurement list
    #: into the next kernel's buffer when ``kexec -e`` runs (a reboot notifier) rather than
    #: at kexec_file_load. "ima: kexec: move IMA log copy from kexec load to execute" is in
    #: 6.16 and was backported to the 6.12 stable tree in 6.12.94 (see
    #: :data:`COPY_AT_EXECUTE_SINCE`)
    ima_kexec_copy_at_execute: bool = False
    #: CONFIG_SYSTEM_TRUSTED_KEYRING: .builtin_trusted_keys (and, with the options below,
    #: the secondary, machine and integrity keyrings that depend on it)
    system_trusted_keyring: bool = True
    system_blacklist_keyring: bool = True  # CONFIG_SYSTEM_BLACKLIST_KEYRING: .blacklist
    #: CONFIG_SYSTEM_BLACKLIST_AUTH_UPDATE (5.19+): root may add ``bin:``/``tbs:`` hashes to
    #: .blacklist, each signed by a built-in key (Debian's 6.1 and 6.12 do not set it)
    system_blacklist_auth_update: bool = False
    integrity_signature: bool = True  # CONFIG_INTEGRITY_SIGNATURE: .ima/.evm, .platform
    integrity_ca_machine_keyring: bool = False  # CONFIG_INTEGRITY_CA_MACHINE_KEYRING
    evm: bool = True  # CONFIG_EVM: the EVM keyring
    #: CONFIG_FS_VERITY_BUILTIN_SIGNATURES: the .fs-verity keyring
    fs_verity_builtin_signatures: bool = True
    #: CONFIG_BLK_SED_OPAL on 6.5+: the .sed_opal keyring with its opal-boot-pin key
    sed_opal_keyring: bool = False
    #: CONFIG_EFI: the IMA arch policy (ima_efi.c) exists only with it; s390 has no EFI
    efi: bool = True
    #: CONFIG_IMA_LOAD_X509 with CONFIG_IMA_X509_PATH: the kernel loads this certificate
    #: into the IMA keyring itself, after mounting the root file system and before init
    ima_x509_path: str | None = None
    #: CONFIG_EVM_LOAD_X509 with CONFIG_EVM_X509_PATH, likewise into the EVM keyring
    evm_x509_path: str | None = None
    #: CONFIG_IMA_APPRAISE_SIGNED_INIT: the appraise_tcb policy's fowner rule requires a
    #: signature (appraise_type=imasig) instead of a hash
    ima_appraise_signed_init: bool = False
    #: CONFIG_INITRAMFS_FORCE: populate_rootfs ignores the initrd the boot loader (or
    #: kexec) passes and keeps only the initramfs built into the kernel image (6.1:
    #: "depends on CMDLINE_EXTEND || CMDLINE_FORCE": arm, arm64, powerpc, riscv, not x86)
    initramfs_force: bool = False
    #: not a Kconfig switch but what this build's built-in drivers do on the machine's
    #: hardware: the modules their device_initcalls request (request_module), before IMA
    #: initialises (imasim.kinit)
    initcall_modules: tuple[str, ...] = ()
    #: hashes IMA can allocate when it initialises (a TPM bank outside this set is
    #: extended with zero-padded SHA-1 digests; Debian's 6.1 has sha384 as a module)
    init_hashes: frozenset[HashAlgorithm] = field(default_factory=lambda: frozenset({
        HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512,
        HashAlgorithm.SM3_256}))

    @property
    def copies_list_at_execute(self) -> bool:
        """Whether this kernel copies the list into the kexec buffer at execute (else at
        load): :attr:`ima_kexec_copy_at_execute`, a property of the build."""
        return self.ima_kexec_copy_at_execute

    @property
    def arch_policy_forces_kexec_sig(self) -> bool:
        """Whether the secure-boot IMA arch policy of this kernel calls
        set_kexec_sig_enforced() when KEXEC_SIG is built (:func:`forces_kexec_sig`)."""
        return forces_kexec_sig(self.version, self.sublevel)

    @property
    def per_bank_lists(self) -> bool:
        return self.version >= (6, 10)

    def with_(self, **changes: object) -> KernelConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_kconfig(cls, text: str, *, version: tuple[int, int],
                     sublevel: int | None = None) -> KernelConfig:
        r"""The integrity switches of a kernel ``.config`` (``/boot/config-$(uname -r)``).

        A hash is available at IMA init only when built in (``=y``): a module (``=m``)
        is not loaded yet, so its TPM bank gets padded SHA-1 digests. File-valued options
        (CONFIG_SYSTEM_BLACKLIST_HASH_LIST, CONFIG_IPE_BOOT_POLICY) must be empty: their
        content is not in the ``.config``. ``sublevel`` (the ``z`` of ``x.y.z``) decides
        the patch-level behaviours that stable trees received (:data:`COPY_AT_EXECUTE_SINCE`,
        :data:`FORCE_KEXEC_SIG_SINCE`);
        without it a stable tree is taken at its first release.

        >>> c = KernelConfig.from_kconfig('CONFIG_IMA_KEXEC=y\n'
        ...     'CONFIG_IMA_DEFAULT_TEMPLATE="ima-sig"\nCONFIG_CRYPTO_SHA512=m\n',
        ...     version=(6, 1))
        >>> c.ima_kexec, c.ima_default_template, HashAlgorithm.SHA512 in c.init_hashes
        (True, 'ima-sig', False)
        """
        opts: dict[str, str] = {}
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                key, _, value = line.partition("=")
                opts[key[len("CONFIG_"):]] = value.strip('"')

        def on(name: str) -> bool:
            return opts.get(name) == "y"

        for name in ("SYSTEM_BLACKLIST_HASH_LIST", "IPE_BOOT_POLICY"):
            if opts.get(name):
                raise UsageError(f"CONFIG_{name} names a file ({opts[name]}); give its "
                                 "content to KernelConfig yourself")
        hashes = {HashAlgorithm.SHA1: on("CRYPTO_SHA1"), HashAlgorithm.SHA256: on("CRYPTO_SHA256"),
                  HashAlgorithm.SHA384: on("CRYPTO_SHA512"),
                  HashAlgorithm.SHA512: on("CRYPTO_SHA512"),
                  HashAlgorithm.SM3_256: on("CRYPTO_SM3_GENERIC")}
        lockdown: Literal["none", "integrity", "confidentiality"] = (
            "confidentiality" if on("LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY") else
            "integrity" if on("LOCK_DOWN_KERNEL_FORCE_INTEGRITY") else "none")
        try:
            default_hash = HashAlgorithm.from_name(opts.get("IMA_DEFAULT_HASH", "sha1"))
        except UnsupportedAlgorithmError as exc:
            raise UsageError(f"CONFIG_IMA_DEFAULT_HASH: {exc}") from None
        return cls(
            version=version, sublevel=sublevel, ima_kexec=on("IMA_KEXEC"),
            ima_appraise=on("IMA_APPRAISE"),
            ima_appraise_modsig=on("IMA_APPRAISE_MODSIG"),
            ima_write_policy=on("IMA_WRITE_POLICY"),
            ima_default_template=opts.get("IMA_DEFAULT_TEMPLATE", "ima-ng"),
            ima_default_hash=default_hash,
            ima_measure_pcr_idx=int(opts.get("IMA_MEASURE_PCR_IDX", "10")),
            ima_measure_asymmetric_keys=on("IMA_MEASURE_ASYMMETRIC_KEYS"),
            ima_queue_early_boot_keys=on("IMA_QUEUE_EARLY_BOOT_KEYS"),
            integrity_trusted_keyring=on("INTEGRITY_TRUSTED_KEYRING"),
            ima_keyrings_permit_signed_by_builtin_or_secondary=on(
                "IMA_KEYRINGS_PERMIT_SIGNED_BY_BUILTIN_OR_SECONDARY"),
            secondary_trusted_keyring=on("SECONDARY_TRUSTED_KEYRING"),
            integrity_platform_keyring=on("INTEGRITY_PLATFORM_KEYRING"),
            integrity_machine_keyring=on("INTEGRITY_MACHINE_KEYRING"),
            module_sig=on("MODULE_SIG"), module_sig_force=on("MODULE_SIG_FORCE"),
            kexec_sig=on("KEXEC_SIG"), kexec_sig_force=on("KEXEC_SIG_FORCE"),
            lockdown=lockdown,
            arch=_arch(opts),
            ima_arch_policy=on("IMA_ARCH_POLICY"),
            lock_down_in_efi_secure_boot=on("LOCK_DOWN_IN_EFI_SECURE_BOOT"),
            security_ipe=on("SECURITY_IPE") and "ipe" in opts.get("LSM", "").split(","),
            # without IPE these two do not exist; keep the defaults
            ipe_policy_sig_secondary_keyring=on("IPE_POLICY_SIG_SECONDARY_KEYRING")
            if on("SECURITY_IPE") else True,
            ipe_policy_sig_platform_keyring=on("IPE_POLICY_SIG_PLATFORM_KEYRING")
            if on("SECURITY_IPE") else True,
            init_hashes=frozenset(a for a, ok in hashes.items() if ok),
            ima_kexec_copy_at_execute=copies_list_at_execute(version, sublevel),
            system_trusted_keyring=on("SYSTEM_TRUSTED_KEYRING"),
            system_blacklist_keyring=on("SYSTEM_BLACKLIST_KEYRING"),
            system_blacklist_auth_update=on("SYSTEM_BLACKLIST_AUTH_UPDATE"),
            integrity_signature=on("INTEGRITY_SIGNATURE"),
            integrity_ca_machine_keyring=on("INTEGRITY_CA_MACHINE_KEYRING"),
            evm=on("EVM"), fs_verity_builtin_signatures=on("FS_VERITY_BUILTIN_SIGNATURES"),
            sed_opal_keyring=on("BLK_SED_OPAL") and version >= (6, 5),
            efi=on("EFI"),
            ima_x509_path=opts.get("IMA_X509_PATH") if on("IMA_LOAD_X509") else None,
            evm_x509_path=opts.get("EVM_X509_PATH") if on("EVM_LOAD_X509") else None,
            ima_appraise_signed_init=on("IMA_APPRAISE_SIGNED_INIT"),
            initramfs_force=on("INITRAMFS_FORCE"))


#: Stable trees that received "ima: kexec: move IMA log copy from kexec load to execute"
#: (mainline 6.16): the first sublevel with it. Read from Debian's linux-source-6.12
#: changelog (the 6.12.94 stable update) and ima_kexec.c of 6.12.118 (the reboot
#: notifier ima_update_kexec_buffer); 6.1.192 does not have it.
COPY_AT_EXECUTE_SINCE: Final[dict[tuple[int, int], int]] = {(6, 12): 94}


def copies_list_at_execute(version: tuple[int, int], sublevel: int | None = None) -> bool:
    """Whether kernel ``version.sublevel`` copies the IMA list at kexec execute.

    >>> copies_list_at_execute((6, 12), 117), copies_list_at_execute((6, 12), 80)
    (True, False)
    >>> copies_list_at_execute((6, 1), 192), copies_list_at_execute((6, 16))
    (False, True)
    """
    if version >= (6, 16):
        return True
    since = COPY_AT_EXECUTE_SINCE.get(version)
    return since is not None and (sublevel or 0) >= since


#: Mainline release of "ima: force signature verification when CONFIG_KEXEC_SIG is
#: configured" (Coiby Xu, commit af16df54b89d; pulled as tag integrity-v5.19-fix, merge
#: 4adfa865bb97 of 2022-07-14, between v5.19-rc6 and -rc7, so v5.18 lacks it; "Fixes:
#: 99d5cadfde2b", the v5.4 split of KEXEC_VERIFY_SIG that made an unverifiable image
#: loadable unless KEXEC_SIG_FORCE). It adds set_kexec_sig_enforced() to
#: kernel/kexec_file.c (kimage_validate_signature tests a sig_enforce flag instead of
#: IS_ENABLED(CONFIG_KEXEC_SIG_FORCE)) and calls it from arch_get_ima_policy() when the
#: firmware booted with secure boot and CONFIG_KEXEC_SIG is set.
FORCE_KEXEC_SIG_MAINLINE: Final = (5, 19)

#: The stable trees that received it (upstream af16df54b89d), each from the first
#: sublevel with it: the stable review series of 2022-07-19 (5.10.132-rc1 patch in
#: arch/x86/kernel/ima_arch.c, as 5.10 has no ima_efi.c; 5.15.56-rc1 patch 095/167;
#: 5.18.13-rc1). 5.4.y did not take it; 5.11-5.14, 5.16 and 5.17 had reached their end.
FORCE_KEXEC_SIG_SINCE: Final[dict[tuple[int, int], int]] = {
    (5, 10): 132, (5, 15): 56, (5, 18): 13}


def forces_kexec_sig(version: tuple[int, int], sublevel: int | None = None) -> bool:
    """Whether kernel ``version.sublevel``'s IMA arch policy forces KEXEC_SIG under
    secure boot: a patch-level property, as the stable trees took the change.

    >>> forces_kexec_sig((5, 15), 55), forces_kexec_sig((5, 15), 56)
    (False, True)
    >>> forces_kexec_sig((5, 4), 300), forces_kexec_sig((5, 18)), forces_kexec_sig((5, 19))
    (False, False, True)
    """
    if version >= FORCE_KEXEC_SIG_MAINLINE:
        return True
    since = FORCE_KEXEC_SIG_SINCE.get(version)
    return since is not None and (sublevel or 0) >= since


def _arch(opts: dict[str, str]) -> Literal["x86_64", "arm64", "s390x", "ppc64le"]:
    if opts.get("S390") == "y":
        return "s390x"
    if opts.get("ARM64") == "y":
        return "arm64"
    if opts.get("PPC64") == "y":
        if opts.get("CPU_LITTLE_ENDIAN") != "y":
            raise UsageError("big-endian POWER is not modelled (only ppc64le)")
        return "ppc64le"
    if opts.get("X86_64") == "y" or "X86_64" not in opts:
        return "x86_64"
    raise UsageError("an architecture imasim does not model")


_BASE_HASHES: Final = frozenset({HashAlgorithm.SHA1, HashAlgorithm.SHA256})
_CUSTOM: Final = KernelConfig(
    version=(6, 1), sublevel=192, ima_kexec=True, ima_appraise=False, ima_appraise_modsig=False,
    ima_default_template="ima-sig", ima_queue_early_boot_keys=False,
    integrity_trusted_keyring=False, secondary_trusted_keyring=False,
    integrity_platform_keyring=False, module_sig=False, kexec_sig=False,
    system_trusted_keyring=False, system_blacklist_keyring=False, evm=False,
    fs_verity_builtin_signatures=False, efi=False,
    init_hashes=_BASE_HASHES | {HashAlgorithm.SHA384, HashAlgorithm.SHA512})

#: Kernels whose behaviour the real-kernel captures show. The Debian and custom presets equal
#: KernelConfig.from_kconfig of the real builds' configs (tests/vectors: debian/kconfig-*.txt,
#: realkernel/custom-*-kconfig.txt); ``generic-6.1-ima-kexec`` and
#: ``mainline-6.16-ima-kexec`` are no real build's: every switch imasim models on.
PRESETS: Final[dict[str, KernelConfig]] = {
    # Debian 12 linux-image-6.1.0-56-amd64 (6.1.192): IMA_KEXEC unset, sha384/512 modules
    "debian12-6.1": KernelConfig(version=(6, 1), sublevel=192, ima_kexec=False,
                                 ima_write_policy=False, ima_default_template="ima-sig",
                                 ima_appraise_modsig=False,
                                 integrity_trusted_keyring=False,
                                 integrity_machine_keyring=True, init_hashes=_BASE_HASHES,
                                 ima_arch_policy=True, lock_down_in_efi_secure_boot=True),
    # Debian 12 linux-image-6.12.117+deb12: SHA-512 built in, per-bank lists, IPE,
    # .sed_opal; no IMA_KEXEC (its source would copy at execute: 6.12.94+)
    "debian12-6.12": KernelConfig(version=(6, 12), sublevel=117, ima_kexec=False,
                                  ima_default_template="ima-sig", ima_appraise_modsig=False,
                                  integrity_trusted_keyring=False,
                                  integrity_machine_keyring=True, ima_arch_policy=True,
                                  lock_down_in_efi_secure_boot=True, security_ipe=True,
                                  ima_kexec_copy_at_execute=True, sed_opal_keyring=True,
                                  init_hashes=_BASE_HASHES | {HashAlgorithm.SHA384,
                                                              HashAlgorithm.SHA512}),
    # the custom builds of the captures (realkernel/build-custom-kernel.sh: tinyconfig plus
    # a fragment): IMA_KEXEC and SHA-512 built in, but no appraisal, no module or kexec
    # signatures, no EVM, no EFI and no system keyrings at all
    "custom-6.1-ima-kexec": _CUSTOM,
    "custom-6.12-ima-kexec": _CUSTOM.with_(version=(6, 12), sublevel=118,
                                           ima_kexec_copy_at_execute=True),
    # not a real build: a 6.1 kernel with IMA_KEXEC and every other switch at its default
    # (appraisal, module and kexec signatures, trusted .ima/.evm keyrings, ...)
    "generic-6.1-ima-kexec": KernelConfig(version=(6, 1), ima_kexec=True),
    # not a real build: a 6.16+ kernel, the list copied at kexec execute
    "mainline-6.16-ima-kexec": KernelConfig(version=(6, 16), ima_kexec=True,
                                            ima_kexec_copy_at_execute=True,
                                            ima_write_policy=True),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BootOptions:
    """The IMA options of a kernel command line."""

    ima_policy: tuple[str, ...] = ()
    ima_template: str | None = None
    ima_template_fmt: str | None = None
    ima_hash: HashAlgorithm | None = None
    ima_appraise: AppraiseMode = "enforce"
    ima_canonical_fmt: bool = False
    cmdline: str = ""

    @classmethod
    def from_cmdline(cls, cmdline: str) -> BootOptions:
        policy: list[str] = []
        opts: dict[str, object] = {}
        for word in cmdline.split():
            key, _, value = word.partition("=")
            if key == "ima_policy":
                policy += [p for p in value.replace("|", " ").split() if p]
            elif key == "ima_tcb":
                policy.append("tcb")
            elif key == "ima_appraise_tcb":
                policy.append("appraise_tcb")
            elif key == "ima_template" and "ima_template_fmt" not in opts:
                opts.setdefault("ima_template", value)
            elif key == "ima_template_fmt" and "ima_template" not in opts:
                opts.setdefault("ima_template_fmt", value)
            elif key == "ima_hash":
                try:
                    opts["ima_hash"] = HashAlgorithm.from_name(value)
                except UnsupportedAlgorithmError as exc:
                    raise UsageError(f"ima_hash={value}: {exc}") from None
            elif key == "ima_appraise":
                if value not in ("enforce", "fix", "log", "off"):
                    raise UsageError(f"ima_appraise={value} is not enforce|fix|log|off")
                opts["ima_appraise"] = value
            elif key == "ima_canonical_fmt":
                opts["ima_canonical_fmt"] = True
        return cls(ima_policy=tuple(policy), cmdline=cmdline, **opts)  # type: ignore[arg-type]
