"""IPE as an LSM: evaluation (eval.c), the policy lifecycle of its securityfs interface
(fs.c, policy_fs.c, policy.c) and its audit records (audit.c).

:class:`Ipe` holds the deployed policies, the active one, the enforce and success_audit
switches and the audit log. Deploying and updating take a PKCS#7 SignedData with the
policy text attached, verified against the builtin keyring (the secondary keyring with
``CONFIG_IPE_POLICY_SIG_SECONDARY_KEYRING``; the platform keyring is retried on -ENOKEY or
-EKEYREJECTED with ``CONFIG_IPE_POLICY_SIG_PLATFORM_KEYRING``). A failing operation
raises :class:`IpeError` with the kernel's errno and changes nothing.

**Not in mainline:** with ``unsigned_policy_by_rule=True`` an *unsigned* policy may be
deployed or updated when the active policy has an ``op=POLICY`` rule that matches the
file the text was read from and allows it (for example ``op=POLICY boot_verified=TRUE
action=ALLOW`` admits a policy read from the initramfs). This is a proposal from users
who attest without a PKI, simulated so its security can be studied; off by default.

>>> ipe = Ipe(boot_policy='''policy_name=Allow_Initramfs policy_version=0.0.0
... DEFAULT action=DENY
... op=EXECUTE boot_verified=TRUE action=ALLOW
... ''')
>>> ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", FileProperties(boot_verified=True)).allowed
True
>>> d = ipe.evaluate(Op.EXECUTE, "BPRM_CHECK", FileProperties(), path="/usr/bin/evil")
>>> d.allowed, d.rule
(False, 'DEFAULT action=DENY')
>>> print(ipe.audit[-1])  # doctest: +NORMALIZE_WHITESPACE
type=1420 ipe_op=EXECUTE ipe_hook=BPRM_CHECK enforcing=1 pid=1 comm="imasim"
    path="/usr/bin/evil" dev="vda" ino=0 rule="DEFAULT action=DENY"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from ..errors import (
    ImasimError,
    KeyNotFoundError,
    KeyRejectedError,
    ParseError,
    PolicyError,
    UnsupportedAlgorithmError,
)
from ..keys.keyring import Keyring
from ..sig.pkcs7 import Usage, parse_pkcs7, verify_pkcs7
from .policy import Action, IpePolicy, IpePolicyError, Op, Property, parse_ipe_policy

__all__ = [
    "Decision",
    "DeployedPolicy",
    "FileProperties",
    "Ipe",
    "IpeAuditRecord",
    "IpeError",
    "Providers",
    "evaluate",
    "evaluate_property",
]

EPERM: Final = 1
ENOENT: Final = 2
EEXIST: Final = 17
EINVAL: Final = 22
EBADMSG: Final = 74
ESTALE: Final = 116
ENOKEY: Final = 126
EKEYREJECTED: Final = 129
_UNSET: Final = 4294967295  # auid/ses of a process without a login session


class IpeError(PolicyError):
    """A securityfs write the kernel refuses; ``errno`` is the positive errno."""

    def __init__(self, message: str, errno: int) -> None:
        self.errno = errno
        super().__init__(f"{message} (errno -{errno})")


@dataclass(frozen=True, slots=True)
class FileProperties:
    """What IPE's property providers know about the file of an event: from the
    initramfs (``boot_verified``), on a dm-verity device (its root hash and whether its
    signature verified), fs-verity (its file digest and built-in signature)."""

    boot_verified: bool = False
    dmverity_roothash: tuple[str, bytes] | None = None
    dmverity_signature: bool = False
    fsverity_digest: tuple[str, bytes] | None = None
    fsverity_signature: bool = False


@dataclass(frozen=True, slots=True)
class Providers:
    """Which property providers the kernel has (IPE_PROP_*): a property whose provider is
    missing parses, but evaluates false in both its TRUE and FALSE forms."""

    dm_verity: bool = True
    dm_verity_signature: bool = True
    fs_verity: bool = True
    fs_verity_signature: bool = True


def evaluate_property(p: Property, f: FileProperties | None, prov: Providers) -> bool:
    """One property against the event's file (None: no file, as kernel_load_data)."""
    if p.key == "boot_verified":
        return (f is not None and f.boot_verified) == p.value
    if p.key == "dmverity_signature":
        return prov.dm_verity_signature and \
            (f is not None and f.dmverity_roothash is not None and f.dmverity_signature) \
            == p.value
    if p.key == "fsverity_signature":
        return prov.fs_verity_signature and \
            (f is not None and f.fsverity_digest is not None and f.fsverity_signature) \
            == p.value
    have = None
    if p.key == "dmverity_roothash" and prov.dm_verity and f is not None:
        have = f.dmverity_roothash
    elif p.key == "fsverity_digest" and prov.fs_verity and f is not None:
        have = f.fsverity_digest
    return have is not None and have == (p.alg, p.digest)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one evaluation: the action, which part of the policy decided
    (``rule``, ``op-default``, ``global-default``, ``no-policy``) and the rule text the
    1420 audit record shows; ``allowed`` accounts for permissive mode."""

    action: Action
    match: str
    rule: str
    allowed: bool


def evaluate(policy: IpePolicy, op: Op, f: FileProperties | None,
             providers: Providers = Providers()) -> tuple[Action, str, str]:
    """ipe_evaluate_event's choice: first matching rule, then the op default, then the
    global default; (action, match kind, rule text)."""
    for rule in policy.rules[op]:
        if all(evaluate_property(p, f, providers) for p in rule.props):
            return rule.action, "rule", rule.render(upper=True)
    if op in policy.op_defaults:
        act = policy.op_defaults[op]
        return act, "op-default", f"DEFAULT op={op.value} action={act.value}"
    assert policy.global_default is not None  # validate_policy guarantees it
    act = policy.global_default
    return act, "global-default", f"DEFAULT action={act.value}"


@dataclass(frozen=True, slots=True)
class IpeAuditRecord:
    """One IPE audit record (1420 access, 1421 config change, 1422 policy load, 1404 mac
    status) with its fields as audit.c writes them."""

    type: int
    text: str

    def __str__(self) -> str:
        return f"type={self.type} {self.text}".rstrip()


@dataclass(frozen=True, slots=True)
class DeployedPolicy:
    """A policy under policies/<name>/: the parsed policy, the PKCS#7 as deployed (None
    for the boot policy and, under the proposal, for an unsigned one) and its digest."""

    policy: IpePolicy
    pkcs7: bytes | None
    digest: bytes

    def read(self, node: str) -> bytes:
        """policies/<name>/{pkcs7,policy,name,version}."""
        if node == "pkcs7":
            if self.pkcs7 is None:
                raise IpeError("the boot policy is not signed", ENOENT)
            return self.pkcs7
        if node == "policy":
            return self.policy.text.encode()
        if node == "name":
            return self.policy.name.encode()
        if node == "version":
            return self.policy.version_text.encode()
        raise IpeError(f"no node {node!r}", ENOENT)


@dataclass
class Ipe:
    """The IPE LSM of one machine. ``keyring`` is what verifies a policy's signature
    (.builtin_trusted_keys, or .secondary_trusted_keys with
    IPE_POLICY_SIG_SECONDARY_KEYRING), ``platform_keyring`` the retry with
    IPE_POLICY_SIG_PLATFORM_KEYRING. ``boot_policy`` is CONFIG_IPE_BOOT_POLICY's text."""

    keyring: Keyring | None = None
    platform_keyring: Keyring | None = None
    boot_policy: str | None = None
    enforce: bool = True
    success_audit: bool = False
    providers: Providers = field(default_factory=Providers)
    #: NOT MAINLINE: see the module docstring
    unsigned_policy_by_rule: bool = False
    kernel_version: tuple[int, int] = (6, 12)
    policies: dict[str, DeployedPolicy] = field(default_factory=dict)
    active: str | None = None
    audit: list[IpeAuditRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.boot_policy is not None:
            p = parse_ipe_policy(self.boot_policy)
            self.policies[p.name] = DeployedPolicy(p, None, hashlib.sha256(b"").digest())
            self.active = p.name

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, op: Op, hook: str, f: FileProperties | None, *, path: str | None = None,
                 dev: str = "vda", ino: int = 0, pid: int = 1, comm: str = "imasim"
                 ) -> Decision:
        """ipe_evaluate_event: with no active policy everything is allowed (no audit);
        denials are audited (and successes with success_audit); permissive mode allows
        but still audits."""
        if self.active is None:
            return Decision(Action.ALLOW, "no-policy", "", True)
        action, match, rule = evaluate(self.policies[self.active].policy, op, f,
                                       self.providers)
        if action is Action.DENY or self.success_audit:
            where = (f'path="{path}" dev="{dev}" ino={ino}' if path is not None
                     else "path=? dev=? ino=?")
            self._log(1420, f"ipe_op={op.value} ipe_hook={hook} enforcing={int(self.enforce)} "
                            f'pid={pid} comm="{comm}" {where} rule="{rule}"')
        return Decision(action, match, rule, action is Action.ALLOW or not self.enforce)

    # -- securityfs -------------------------------------------------------------------
    def new_policy(self, data: bytes, *, cap_mac_admin: bool = True,
                   source: FileProperties | None = None) -> IpePolicy:
        """Write to new_policy: verify, parse, create policies/<name> (not active).
        ``source`` is where the bytes were read from, used only by the proposal."""
        try:
            self._need_cap(cap_mac_admin)
            policy, pkcs7 = self._load(data, source)
            if policy.name in self.policies:
                raise IpeError(f"a policy named {policy.name!r} exists", EEXIST)
        except IpeError as exc:
            self._log_load_failure(exc.errno)
            raise
        self.policies[policy.name] = DeployedPolicy(policy, pkcs7, hashlib.sha256(data).digest())
        self._log_load(self.policies[policy.name])
        return policy

    def update_policy(self, name: str, data: bytes, *, cap_mac_admin: bool = True,
                      source: FileProperties | None = None) -> IpePolicy:
        """Write to policies/<name>/update: same name, strictly higher version than the
        policy it replaces (-ESTALE), in place; the active one stays active."""
        try:
            self._need_cap(cap_mac_admin)
            old = self._get(name)
            policy, pkcs7 = self._load(data, source)
            if policy.name != name:
                raise IpeError("the new policy has another policy_name", EINVAL)
            if old.policy.version_key >= policy.version_key:
                raise IpeError("the new version is not higher than the old one", ESTALE)
        except IpeError as exc:
            self._log_load_failure(exc.errno)
            raise
        new = DeployedPolicy(policy, pkcs7, hashlib.sha256(data).digest())
        self.policies[name] = new
        self._log_load(new)
        if self.active == name:
            self._log_switch(old, new)
        return policy

    def activate(self, name: str, *, cap_mac_admin: bool = True) -> None:
        """Write 1 to policies/<name>/active: the active policy's version must not be
        greater (compared across names: -EINVAL)."""
        self._need_cap(cap_mac_admin)
        new = self._get(name)
        if self.active == name:
            return
        old = self.policies[self.active] if self.active is not None else None
        if old is not None and old.policy.version_key > new.policy.version_key:
            raise IpeError("the active policy has a higher version", EINVAL)
        self.active = name
        self._log_switch(old, new)

    def delete(self, name: str, *, cap_mac_admin: bool = True) -> None:
        """Write 1 to policies/<name>/delete; the active policy cannot be deleted."""
        self._need_cap(cap_mac_admin)
        self._get(name)
        if self.active == name:
            raise IpeError("the active policy cannot be deleted", EPERM)
        del self.policies[name]

    def set_enforce(self, value: bool, *, cap_mac_admin: bool = True) -> None:
        """Write to enforce: a change is an AUDIT_MAC_STATUS record."""
        self._need_cap(cap_mac_admin)
        old, self.enforce = self.enforce, value
        if old != value:
            # ipe_audit_enforce opens a record with audit_log_start, then writes the whole
            # message as a second record with audit_log() and ends the first one empty:
            # two 1404 records, the empty one last (6.12's dmesg; mainline unchanged)
            self._log(1404, f"enforcing={int(value)} old_enforcing={int(old)} auid={_UNSET} "
                            f"ses={_UNSET} enabled=1 old-enabled=1 lsm=ipe res=1")
            self._log(1404, "")

    # -- internals --------------------------------------------------------------------
    def _need_cap(self, cap: bool) -> None:
        if not cap:
            raise IpeError("CAP_MAC_ADMIN is required", EPERM)

    def _get(self, name: str) -> DeployedPolicy:
        if name not in self.policies:
            raise IpeError(f"no policy {name!r}", ENOENT)
        return self.policies[name]

    def _load(self, data: bytes, source: FileProperties | None
              ) -> tuple[IpePolicy, bytes | None]:
        """ipe_new_policy's verification and parsing; IpeError with the errno."""
        try:
            sd = parse_pkcs7(data)
        except ParseError as exc:
            if self.unsigned_policy_by_rule:
                return self._load_unsigned(data, source), None
            raise IpeError(f"not a PKCS#7 message: {exc}", EBADMSG) from None
        rings = [r for r in (self.keyring, self.platform_keyring) if r is not None]
        if not rings:
            raise IpeError("no keyring to verify policies against", ENOKEY)
        for ring in rings:
            try:
                verify_pkcs7(sd, keyring=ring, usage=Usage.UNSPECIFIED_SIGNATURE)
                break
            except (KeyNotFoundError, KeyRejectedError) as exc:
                if ring is rings[-1]:
                    errno = ENOKEY if isinstance(exc, KeyNotFoundError) else EKEYREJECTED
                    raise IpeError(f"policy signature: {exc}", errno) from None
            except (ParseError, UnsupportedAlgorithmError) as exc:
                raise IpeError(f"policy signature: {exc}", EBADMSG) from None
            except ImasimError as exc:
                raise IpeError(f"policy signature: {exc}", EKEYREJECTED) from None
        if sd.content is None:
            raise IpeError("the policy is not attached to its signature", EBADMSG)
        return self._parse(sd.content), data

    def _parse(self, text: bytes) -> IpePolicy:
        try:
            return parse_ipe_policy(text)
        except IpePolicyError as exc:
            raise IpeError(str(exc), exc.errno) from None

    def _load_unsigned(self, data: bytes, source: FileProperties | None) -> IpePolicy:
        """NOT MAINLINE: the active policy's own op=POLICY rule must allow the source."""
        if self.active is None:
            raise IpeError("unsigned policy and no active policy to authorise it", EBADMSG)
        action, match, _ = evaluate(self.policies[self.active].policy, Op.POLICY, source,
                                    self.providers)
        if match != "rule" or action is not Action.ALLOW:
            raise IpeError("unsigned policy not authorised by an op=POLICY rule of the "
                           "active policy", EKEYREJECTED)
        return self._parse(data)

    def _log(self, type_: int, text: str) -> None:
        self.audit.append(IpeAuditRecord(type_, text))

    def _errno_field(self, errno: int) -> str:
        return f" errno={-errno if errno else 0}" if self.kernel_version >= (6, 15) else ""

    def _log_load(self, p: DeployedPolicy) -> None:
        self._log(1422, f'policy_name="{p.policy.name}" policy_version='
                        f"{p.policy.version_text} policy_digest=sha256:{p.digest.hex().upper()} "
                        f"auid={_UNSET} ses={_UNSET} lsm=ipe res=1{self._errno_field(0)}")

    def _log_load_failure(self, errno: int) -> None:
        if self.kernel_version >= (6, 15):  # failed loads are audited from 6.15
            self._log(1422, f"policy_name=? policy_version=? policy_digest=? auid={_UNSET} "
                            f"ses={_UNSET} lsm=ipe res=0{self._errno_field(errno)}")

    def _log_switch(self, old: DeployedPolicy | None, new: DeployedPolicy) -> None:
        before = (f'old_active_pol_name="{old.policy.name}" old_active_pol_version='
                  f"{old.policy.version_text} old_policy_digest=sha256:"
                  f"{old.digest.hex().upper()}" if old is not None else
                  "old_active_pol_name=? old_active_pol_version=? old_policy_digest=?")
        self._log(1421, f'{before} new_active_pol_name="{new.policy.name}" '
                        f"new_active_pol_version={new.policy.version_text} "
                        f"new_policy_digest=sha256:{new.digest.hex().upper()} "
                        f"auid={_UNSET} ses={_UNSET} lsm=ipe res=1")

