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

__all__ = ["PRESETS", "BootOptions", "KernelConfig"]

AppraiseMode = Literal["enforce", "fix", "log", "off"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KernelConfig:
    """Kconfig switches (names without the CONFIG_ prefix) and the version."""

    version: tuple[int, int] = (6, 1)
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
    #: module-style signature (s390_verify_sig)
    arch: Literal["x86_64", "arm64", "s390x"] = "x86_64"
    ima_arch_policy: bool = False  # CONFIG_IMA_ARCH_POLICY (secure boot rules, sig enforcement)
    #: CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT (a distribution patch, Debian and Fedora carry
    #: it): lockdown=integrity when the firmware booted with secure boot on
    lock_down_in_efi_secure_boot: bool = False
    security_ipe: bool = False  # CONFIG_SECURITY_IPE (and ipe in the LSM list)
    ipe_boot_policy: str | None = None  # CONFIG_IPE_BOOT_POLICY's text
    ipe_policy_sig_secondary_keyring: bool = True  # CONFIG_IPE_POLICY_SIG_SECONDARY_KEYRING
    ipe_policy_sig_platform_keyring: bool = True  # CONFIG_IPE_POLICY_SIG_PLATFORM_KEYRING
    #: hashes IMA can allocate when it initialises (a TPM bank outside this set is
    #: extended with zero-padded SHA-1 digests; Debian's 6.1 has sha384 as a module)
    init_hashes: frozenset[HashAlgorithm] = field(default_factory=lambda: frozenset({
        HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512,
        HashAlgorithm.SM3_256}))

    @property
    def copies_list_at_execute(self) -> bool:
        """6.16+ copies the list into the kexec buffer at execute, older at load."""
        return self.version >= (6, 16)

    @property
    def per_bank_lists(self) -> bool:
        return self.version >= (6, 10)

    def with_(self, **changes: object) -> KernelConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_kconfig(cls, text: str, *, version: tuple[int, int]) -> KernelConfig:
        r"""The integrity switches of a kernel ``.config`` (``/boot/config-$(uname -r)``).

        A hash is available at IMA init only when built in (``=y``): a module (``=m``)
        is not loaded yet, so its TPM bank gets padded SHA-1 digests. File-valued options
        (CONFIG_SYSTEM_BLACKLIST_HASH_LIST, CONFIG_IPE_BOOT_POLICY) must be empty: their
        content is not in the ``.config``.

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
            version=version, ima_kexec=on("IMA_KEXEC"), ima_appraise=on("IMA_APPRAISE"),
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
            arch="s390x" if on("S390") else "arm64" if on("ARM64") else "x86_64",
            ima_arch_policy=on("IMA_ARCH_POLICY"),
            lock_down_in_efi_secure_boot=on("LOCK_DOWN_IN_EFI_SECURE_BOOT"),
            security_ipe=on("SECURITY_IPE") and "ipe" in opts.get("LSM", "").split(","),
            # without IPE these two do not exist; keep the defaults
            ipe_policy_sig_secondary_keyring=on("IPE_POLICY_SIG_SECONDARY_KEYRING")
            if on("SECURITY_IPE") else True,
            ipe_policy_sig_platform_keyring=on("IPE_POLICY_SIG_PLATFORM_KEYRING")
            if on("SECURITY_IPE") else True,
            init_hashes=frozenset(a for a, ok in hashes.items() if ok))


_BASE_HASHES: Final = frozenset({HashAlgorithm.SHA1, HashAlgorithm.SHA256})

#: Kernels whose behaviour the real-kernel captures show.
PRESETS: Final[dict[str, KernelConfig]] = {
    # Debian 12 linux-image-6.1.0-*-amd64: IMA_KEXEC unset, sha384/512 modules (padded bank)
    "debian12-6.1": KernelConfig(version=(6, 1), ima_kexec=False, ima_write_policy=False,
                                 ima_default_template="ima-sig", ima_appraise_modsig=False,
                                 integrity_trusted_keyring=False,
                                 integrity_machine_keyring=True, init_hashes=_BASE_HASHES,
                                 ima_arch_policy=True, lock_down_in_efi_secure_boot=True),
    # Debian 12 linux-image-6.12.*: SHA-512 built in, per-bank lists, still no IMA_KEXEC
    "debian12-6.12": KernelConfig(version=(6, 12), ima_kexec=False,
                                  ima_default_template="ima-sig", ima_appraise_modsig=False,
                                  integrity_trusted_keyring=False,
                                  integrity_machine_keyring=True, ima_arch_policy=True,
                                  lock_down_in_efi_secure_boot=True, security_ipe=True,
                                  init_hashes=_BASE_HASHES | {HashAlgorithm.SHA384,
                                                              HashAlgorithm.SHA512}),
    # the custom 6.1 build of the captures: CONFIG_IMA_KEXEC=y, SHA-512 built in
    "custom-6.1-ima-kexec": KernelConfig(version=(6, 1), ima_kexec=True),
    # a 6.16+ kernel: the list is copied at kexec execute
    "mainline-6.16-ima-kexec": KernelConfig(version=(6, 16), ima_kexec=True,
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
