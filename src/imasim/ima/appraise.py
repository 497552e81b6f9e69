"""security/integrity/ima/ima_appraise.c: appraisal as a pure decision.

:func:`appraise` takes a file's bytes and xattrs, the ``appraise`` rule that matched, the
keyrings and the EVM keys, and returns an :class:`AppraisalResult`: allowed or not, the
cause the kernel's audit record names (:class:`Cause`), and what the kernel would write
back (``ima_appraise=fix``). It needs no simulated machine, so a verifier can ask the same
question the kernel asked: would this file have passed?

>>> from imasim.keys.keyring import Blacklist, Keyring
>>> from imasim.ima.policy import parse_ima_policy
>>> rule = parse_ima_policy("appraise func=BPRM_CHECK\\n").rules[0]
>>> r = appraise(content=b"app", xattrs={}, rule=rule, mode=AppraiseMode.ENFORCE,
...              keyrings=AppraisalKeyrings(ima=Keyring(".ima"), evm=Keyring(".evm"),
...                                         blacklist=Blacklist()))
>>> r.allowed, r.cause, r.cause.value
(False, <Cause.MISSING_HASH: 'missing-hash'>, 'missing-hash')
"""

from __future__ import annotations

import enum
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..algorithms import HashAlgorithm
from ..errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    RevokedError,
    SignatureInvalidError,
    UnsupportedAlgorithmError,
    VerificationError,
)
from ..keys.keyring import Blacklist, Keyring
from ..sig.evm import EVM_XATTRS, evm_data, verify_evm
from ..sig.modsig import ModuleSignature, split_modsig
from ..sig.pkcs7 import Usage, verify_pkcs7
from ..sig.xattr import (
    XattrKind,
    XattrOutcome,
    kernel_digest_matches,
    kernel_xattr_outcome,
    parse_xattr,
    verify_xattr,
)
from .policy import Rule

__all__ = [
    "AUDIT_INTEGRITY_DATA",
    "AUDIT_INTEGRITY_METADATA",
    "AUDIT_INTEGRITY_PCR",
    "AUDIT_INTEGRITY_RULE",
    "AUDIT_INTEGRITY_STATUS",
    "AppraisalKeyrings",
    "AppraisalResult",
    "AppraiseMode",
    "Cause",
    "EvmKeys",
    "Inode",
    "appraise",
    "evm_cause",
]

#: include/uapi/linux/audit.h: the integrity audit record types
AUDIT_INTEGRITY_DATA: Final = 1800  #: data integrity verification (appraise_data, module_sig)
AUDIT_INTEGRITY_METADATA: Final = 1801  #: metadata integrity verification (EVM)
AUDIT_INTEGRITY_STATUS: Final = 1802  #: integrity enable status (policy_update)
AUDIT_INTEGRITY_HASH: Final = 1803  #: integrity hash type
AUDIT_INTEGRITY_PCR: Final = 1804  #: PCR invalidation (violations, hash_exists)
AUDIT_INTEGRITY_RULE: Final = 1805  #: policy rule (func=... audit rules)


class AppraiseMode(enum.Enum):
    """ima_appraise= on the command line (ima_appraise_setup)."""

    ENFORCE = "enforce"
    FIX = "fix"
    LOG = "log"
    OFF = "off"


class Cause(enum.Enum):
    """The ``cause=`` of an appraise_data audit record (ima_appraise_measurement)."""

    MISSING_HASH = "missing-hash"
    INVALID_HASH = "invalid-hash"
    SIGNATURE_REQUIRED = "IMA-signature-required"
    INVALID_SIGNATURE = "invalid-signature"
    UNKNOWN_IMA_DATA = "unknown-ima-data"
    INVALID_SIGNATURE_VERSION = "invalid-signature-version"
    UNKNOWN = "unknown"
    """A type-3 signature of version 0: integrity_digsig_verify's -EOPNOTSUPP."""
    MISSING_HMAC = "missing-HMAC"
    INVALID_HMAC = "invalid-HMAC"
    INVALID_FAIL_IMMUTABLE = "invalid-fail-immutable"
    BLACKLISTED_HASH = "blacklisted-hash"

    @property
    def fixable(self) -> bool:
        """ima_appraise=fix rewrites security.ima for these (a hash, never a signature)."""
        return self in (Cause.MISSING_HASH, Cause.INVALID_HASH)


@dataclass(frozen=True, slots=True)
class AppraisalKeyrings:
    """What appraisal verifies against: the IMA keyring (security.ima signatures and
    modsigs), the EVM keyring (portable EVM signatures) and the blacklist."""

    ima: Keyring
    evm: Keyring
    blacklist: Blacklist


@dataclass(frozen=True, slots=True)
class EvmKeys:
    """What <securityfs>/evm was told: EVM_INIT_X509 (keys in the EVM keyring) and the
    HMAC key (EVM_INIT_HMAC); neither means INTEGRITY_UNKNOWN, EVM does not vouch."""

    x509: bool = False
    hmac_key: bytes | None = None

    @property
    def initialized(self) -> bool:
        return self.x509 or self.hmac_key is not None


@dataclass(frozen=True, slots=True)
class Inode:
    """The inode attributes EVM binds (evm_calc_hmac_or_hash): number, owner, mode, and
    the file system's UUID."""

    ino: int = 0
    uid: int = 0
    gid: int = 0
    mode: int = 0o100644
    fs_uuid: str = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class AppraisalResult:
    """The decision: ``allowed``, the ``cause`` (None when the file passed), whether an
    appraise_data audit record is written, the xattr ``ima_appraise=fix`` writes back,
    and the modsig digest the blacklist matched (measured as ``blacklisted-hash``)."""

    allowed: bool
    cause: Cause | None = None
    audit: bool = False
    fix_xattr: bytes | None = None
    blacklisted_digest: bytes | None = None

    @property
    def reason(self) -> str:
        return self.cause.value if self.cause is not None else ""


def appraise(*, content: bytes, xattrs: Mapping[str, bytes], rule: Rule,
             mode: AppraiseMode, keyrings: AppraisalKeyrings, evm: EvmKeys = EvmKeys(),
             inode: Inode = Inode(), alg: HashAlgorithm = HashAlgorithm.SHA256,
             modsig: bool = False) -> AppraisalResult:
    """ima_appraise_measurement (with ima_check_blacklist first) for one file.

    ``alg`` is the IMA hash (what ``fix`` writes); ``modsig`` says whether the hook may
    carry an appended signature (MODULE_CHECK, KEXEC_*_CHECK). A denial happens only in
    ``enforce`` mode; ``fix`` writes a hash xattr for a missing or wrong hash unless the
    rule requires a signature."""
    split = split_modsig(content) if modsig else None
    if rule.check_blacklist and rule.modsig_allowed and split is not None:
        # ima_check_blacklist: the modsig's digest of the unsigned content, before
        # appraisal; a hit is -EPERM (no appraise_data audit), measured if measuring
        sig_alg = split[1].signed_data.signer_infos[0].digest_alg
        sig_digest = sig_alg.hash(split[0]) if sig_alg is not None else b""
        if sig_digest and keyrings.blacklist.is_binary_blocked(sig_digest):
            return AppraisalResult(mode is not AppraiseMode.ENFORCE, Cause.BLACKLISTED_HASH,
                                   blacklisted_digest=sig_digest)
    cause = _cause(content, xattrs, rule, keyrings, evm, inode, split, alg)
    if cause is None:
        return AppraisalResult(True)
    if mode is AppraiseMode.ENFORCE:
        return AppraisalResult(False, cause, audit=True)
    fix = None
    if mode is AppraiseMode.FIX and cause.fixable and not rule.requires_signature:
        fix = bytes([XattrKind.DIGEST_NG, alg.hash_algo]) + alg.hash(content)
    return AppraisalResult(True, cause, audit=True, fix_xattr=fix)


def _cause(content: bytes, xattrs: Mapping[str, bytes], rule: Rule,
           keyrings: AppraisalKeyrings, evm: EvmKeys, inode: Inode,
           split: tuple[bytes, ModuleSignature] | None,
           ima_hash: HashAlgorithm = HashAlgorithm.SHA256) -> Cause | None:
    sig_required, modsig_ok = rule.requires_signature, rule.modsig_allowed
    raw = xattrs.get("security.ima")
    try_modsig = modsig_ok and split is not None
    if raw is None and not try_modsig:
        return Cause.SIGNATURE_REQUIRED if sig_required else Cause.MISSING_HASH
    evm_result = evm_cause(xattrs, evm=evm, keyring=keyrings.evm, inode=inode,
                           try_modsig=try_modsig)
    if evm_result is not None:
        return evm_result
    if raw is None:
        return _verify_modsig(split, keyrings)
    outcome = kernel_xattr_outcome(raw[0], raw[1]) if len(raw) >= 2 else None
    if outcome is not None and not outcome.passes_if_verified:
        # xattr_verify's type/version table refuses it before any key is looked up
        return (Cause.INVALID_SIGNATURE if outcome is XattrOutcome.SIGNATURE_V1
                else Cause(outcome.value))
    if outcome in (XattrOutcome.DIGEST, XattrOutcome.DIGEST_NG) or raw in (b"\x01", b"\x04"):
        if sig_required:
            return _verify_modsig(split, keyrings) if try_modsig else Cause.SIGNATURE_REQUIRED
        return None if kernel_digest_matches(raw, content, ima_hash=ima_hash) \
            else Cause.INVALID_HASH
    try:
        v = parse_xattr(raw)
    except (ParseError, UnsupportedAlgorithmError):
        return Cause.UNKNOWN_IMA_DATA
    assert v.hash_algo is not None
    if not v.is_signature:
        if sig_required:
            return _verify_modsig(split, keyrings) if try_modsig else Cause.SIGNATURE_REQUIRED
        return None if v.hash_algo.hash(content) == v.digest else Cause.INVALID_HASH
    try:
        verify_xattr(v, v.hash_algo.hash(content), keyring=keyrings.ima,
                     blacklist=keyrings.blacklist)
    except (KeyNotFoundError, SignatureInvalidError, RevokedError, KeyRejectedError,
            UnsupportedAlgorithmError):
        return Cause.INVALID_SIGNATURE
    return None


def _verify_modsig(split: tuple[bytes, ModuleSignature] | None,
                   keyrings: AppraisalKeyrings) -> Cause | None:
    """ima_modsig_verify: the appended signature against the IMA keyring."""
    if split is None:
        return Cause.INVALID_SIGNATURE
    try:
        verify_pkcs7(split[1].signed_data, split[0], keyring=keyrings.ima,
                     usage=Usage.MODULE_SIGNATURE, blacklist=keyrings.blacklist)
    except (VerificationError, ParseError):
        return Cause.INVALID_SIGNATURE
    return None


def evm_cause(xattrs: Mapping[str, bytes], *, evm: EvmKeys, keyring: Keyring,
              inode: Inode, try_modsig: bool = False) -> Cause | None:
    """evm_verifyxattr(security.ima) as ima_appraise_measurement maps its status: None
    when EVM vouches (or is not initialised), else the cause."""
    if not evm.initialized:
        return None  # INTEGRITY_UNKNOWN: no EVM key loaded
    sec_evm = xattrs.get("security.evm")
    if sec_evm is None:
        protected = any(n in xattrs for n in EVM_XATTRS)
        if not protected and try_modsig:
            return None  # INTEGRITY_NOXATTRS is fine with a modsig
        return Cause.MISSING_HMAC
    mode = inode.mode & 0xFFFF
    uuid_bytes = uuid.UUID(inode.fs_uuid).bytes
    if sec_evm[:1] == b"\x02":  # EVM_XATTR_HMAC: HMAC-SHA1, bound to the inode
        if evm.hmac_key is None or len(sec_evm) != 21:
            return Cause.INVALID_HMAC
        data = evm_data(dict(xattrs), portable=False, ino=inode.ino, fs_uuid=uuid_bytes,
                        uid=inode.uid, gid=inode.gid, mode=mode)
        mac = hmac.new(evm.hmac_key, data, "sha1").digest()
        return None if hmac.compare_digest(mac, sec_evm[1:]) else Cause.INVALID_HMAC
    try:
        verify_evm(sec_evm, dict(xattrs), keyring=keyring, ino=inode.ino, fs_uuid=uuid_bytes,
                   uid=inode.uid, gid=inode.gid, mode=mode)
    except ImasimError:
        return Cause.INVALID_FAIL_IMMUTABLE if sec_evm[:1] == b"\x05" else Cause.INVALID_HMAC
    return None
