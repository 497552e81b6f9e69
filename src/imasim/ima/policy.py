"""security/integrity/ima/ima_policy.c: the IMA policy language, built-in policies, matching.

:func:`parse_ima_policy` reads policy text as ``ima_parse_rule`` does (one action first,
each condition once, ``template=`` after ``measure``, the per-func validity of
``ima_validate_rule``) and raises :class:`~imasim.errors.PolicyError` with the line and
the token. :meth:`ImaPolicy.match` is ``ima_match_policy``: the first matching rule of
each action class (measure, appraise, audit, hash) decides.

>>> p = parse_ima_policy("measure func=BPRM_CHECK mask=MAY_EXEC\\n")
>>> p.match(Hook.BPRM_CHECK, mask=MAY_EXEC, fsmagic=0xEF53).measure
True
>>> parse_ima_policy("measure func=NOPE")
Traceback (most recent call last):
...
imasim.errors.PolicyError: line 1: unknown func (token 'func=NOPE')
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from .._wire import decimal
from ..errors import PolicyError, UnknownTemplateError
from .templates import lookup_template

__all__ = [
    "BUILTIN_POLICIES",
    "MAY_APPEND",
    "MAY_EXEC",
    "MAY_READ",
    "MAY_WRITE",
    "Action",
    "Hook",
    "ImaPolicy",
    "MatchResult",
    "Rule",
    "arch_policy",
    "builtin_policy",
    "parse_ima_policy",
]

MAY_EXEC: Final = 0x1
MAY_WRITE: Final = 0x2
MAY_READ: Final = 0x4
MAY_APPEND: Final = 0x8
_MASKS: Final = {"MAY_EXEC": MAY_EXEC, "MAY_WRITE": MAY_WRITE, "MAY_READ": MAY_READ,
                 "MAY_APPEND": MAY_APPEND}


class Hook(enum.Enum):
    """``enum ima_hooks`` (func= values)."""

    FILE_CHECK = "FILE_CHECK"
    MMAP_CHECK = "MMAP_CHECK"
    MMAP_CHECK_REQPROT = "MMAP_CHECK_REQPROT"
    BPRM_CHECK = "BPRM_CHECK"
    CREDS_CHECK = "CREDS_CHECK"
    MODULE_CHECK = "MODULE_CHECK"
    FIRMWARE_CHECK = "FIRMWARE_CHECK"
    KEXEC_KERNEL_CHECK = "KEXEC_KERNEL_CHECK"
    KEXEC_INITRAMFS_CHECK = "KEXEC_INITRAMFS_CHECK"
    POLICY_CHECK = "POLICY_CHECK"
    KEXEC_CMDLINE = "KEXEC_CMDLINE"
    KEY_CHECK = "KEY_CHECK"
    CRITICAL_DATA = "CRITICAL_DATA"
    SETXATTR_CHECK = "SETXATTR_CHECK"


_FUNC_ALIASES: Final = {"PATH_CHECK": Hook.FILE_CHECK, "FILE_MMAP": Hook.MMAP_CHECK}


class Action(enum.Enum):
    """The action a policy rule starts with (``measure``, ``dont_appraise``, ...), spelled
    as in the policy text."""

    MEASURE = "measure"
    DONT_MEASURE = "dont_measure"
    APPRAISE = "appraise"
    DONT_APPRAISE = "dont_appraise"
    AUDIT = "audit"
    DONT_AUDIT = "dont_audit"
    HASH = "hash"
    DONT_HASH = "dont_hash"

    @property
    def cls(self) -> str:
        return self.value.removeprefix("dont_")

    @property
    def positive(self) -> bool:
        return not self.value.startswith("dont_")


_FILE_HOOKS: Final = frozenset({Hook.FILE_CHECK, Hook.MMAP_CHECK, Hook.MMAP_CHECK_REQPROT,
                                Hook.BPRM_CHECK, Hook.CREDS_CHECK, Hook.FIRMWARE_CHECK,
                                Hook.POLICY_CHECK})
_MODSIG_HOOKS: Final = frozenset({Hook.MODULE_CHECK, Hook.KEXEC_KERNEL_CHECK,
                                  Hook.KEXEC_INITRAMFS_CHECK})
_ID_KEYS: Final = ("uid", "euid", "gid", "egid", "fowner", "fgroup")
_LSM_KEYS: Final = ("subj_user", "subj_role", "subj_type", "obj_user", "obj_role", "obj_type")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One policy rule; ``text`` is the line it came from."""

    action: Action
    func: Hook | None = None
    mask: int | None = None
    mask_in: bool = False  # mask=^MAY_x
    fsmagic: int | None = None
    fsname: str | None = None
    fsuuid: uuid.UUID | None = None
    ids: tuple[tuple[str, str, int], ...] = ()  # (key, op, value)
    lsm: tuple[tuple[str, str], ...] = ()
    keyrings: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    appraise_type: str | None = None
    check_blacklist: bool = False
    appraise_algos: tuple[str, ...] | None = None
    digest_type_verity: bool = False
    permit_directio: bool = False
    pcr: int | None = None
    template: str | None = None
    text: str = ""

    @property
    def requires_signature(self) -> bool:
        return self.appraise_type is not None

    @property
    def modsig_allowed(self) -> bool:
        return self.appraise_type == "imasig|modsig"

    def __repr__(self) -> str:
        return f"<Rule {self.render()!r}>"

    def render(self) -> str:
        """The rule as ``ima_policy_show`` prints it."""
        out = [self.action.value]
        if self.func is not None:
            out.append(f"func={self.func.value}")
        if self.mask is not None:
            name = next(k for k, v in _MASKS.items() if v == self.mask)
            out.append(f"mask={'^' if self.mask_in else ''}{name}")
        if self.fsmagic is not None:
            out.append(f"fsmagic=0x{self.fsmagic:x}")
        if self.fsname is not None:
            out.append(f"fsname={self.fsname}")
        if self.fsuuid is not None:
            out.append(f"fsuuid={self.fsuuid}")
        out += [f"{k}{op}{v}" for k, op, v in self.ids]
        out += [f"{k}={v}" for k, v in self.lsm]
        if self.keyrings is not None:
            out.append("keyrings=" + "|".join(self.keyrings))
        if self.labels is not None:
            out.append("label=" + "|".join(self.labels))
        if self.pcr is not None:
            out.append(f"pcr={self.pcr}")
        if self.template is not None:
            out.append(f"template={self.template}")
        if self.digest_type_verity:
            out.append("digest_type=verity")
        if self.appraise_type is not None:
            out.append(f"appraise_type={self.appraise_type}")
        if self.appraise_algos is not None:
            out.append("appraise_algos=" + ",".join(self.appraise_algos))
        if self.permit_directio:
            out.append("permit_directio")
        return " ".join(out)


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What the first matching rule of each class decided."""

    measure: bool = False
    appraise: bool = False
    audit: bool = False
    hash: bool = False
    pcr: int | None = None
    template: str | None = None
    appraise_rule: Rule | None = None
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class ImaPolicy:
    """An IMA policy: its rules in order (the first matching rule of each action class
    decides) and a name for reports; ``a + b`` appends ``b``'s rules, as writing a second
    policy to /sys/kernel/security/ima/policy does."""

    rules: tuple[Rule, ...] = ()
    name: str = "custom"

    def __repr__(self) -> str:
        return f"<ImaPolicy {self.name!r}, {len(self.rules)} rules>"

    def __add__(self, other: ImaPolicy) -> ImaPolicy:
        return ImaPolicy(self.rules + other.rules, f"{self.name}+{other.name}")

    def render(self) -> str:
        return "".join(r.render() + "\n" for r in self.rules)

    def appraise_signature(self, func: Hook) -> bool:
        r"""ima_appraise_signature: does the first ``appraise`` rule for ``func`` (or with no
        func) require a signature? Conditions other than func are ignored, as in the kernel.

        >>> parse_ima_policy("appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig\n"
        ...                  ).appraise_signature(Hook.KEXEC_KERNEL_CHECK)
        True
        >>> parse_ima_policy("appraise fowner=0\n").appraise_signature(Hook.KEXEC_KERNEL_CHECK)
        False
        """
        for r in self.rules:
            if r.action is not Action.APPRAISE or (r.func is not None and r.func is not func):
                continue
            return r.requires_signature
        return False

    def match(self, func: Hook, *, mask: int = 0, fsmagic: int = 0, fsname: str = "",
              fsuuid: uuid.UUID | None = None, uid: int = 0, euid: int = 0, gid: int = 0,
              egid: int = 0, fowner: int = 0, fgroup: int = 0,
              labels: Mapping[str, str] | None = None, keyring: str | None = None,
              data_label: str | None = None,
              classes: Iterable[str] = ("measure", "appraise", "audit", "hash")) -> MatchResult:
        """ima_match_policy: the first matching rule per action class decides."""
        want = set(classes)
        decided: dict[str, Rule] = {}
        ctx = {"uid": uid, "euid": euid, "gid": gid, "egid": egid, "fowner": fowner,
               "fgroup": fgroup}
        for r in self.rules:
            c = r.action.cls
            if c not in want or c in decided:
                continue
            if not _matches(r, func, mask, fsmagic, fsname, fsuuid, ctx, labels or {},
                            keyring, data_label):
                continue
            decided[c] = r
            if len(decided) == len(want):
                break
        m = decided.get("measure")
        a = decided.get("appraise")
        return MatchResult(
            measure=bool(m and m.action.positive),
            appraise=bool(a and a.action.positive),
            audit=bool(decided.get("audit") and decided["audit"].action.positive),
            hash=bool(decided.get("hash") and decided["hash"].action.positive),
            pcr=m.pcr if m and m.action.positive else None,
            template=m.template if m and m.action.positive else None,
            appraise_rule=a if a and a.action.positive else None,
            rules=tuple(decided.values()),
        )


def _cmp(op: str, have: int, want: int) -> bool:
    return have == want if op == "=" else (have > want if op == ">" else have < want)


def _matches(r: Rule, func: Hook, mask: int, fsmagic: int, fsname: str,
             fsuuid: uuid.UUID | None, ctx: Mapping[str, int], labels: Mapping[str, str],
             keyring: str | None, data_label: str | None) -> bool:
    if func in (Hook.KEY_CHECK, Hook.CRITICAL_DATA):
        if r.func is not func:
            return False
        for key, op, val in r.ids:
            if key == "uid" and not _cmp(op, ctx["uid"], val):
                return False
        if func is Hook.KEY_CHECK:
            return r.keyrings is None or (keyring is not None and keyring in r.keyrings)
        return r.labels is None or (data_label is not None and data_label in r.labels)
    if r.func is not None and r.func is not func:
        return False
    if r.mask is not None:
        if r.mask_in:
            if not mask & r.mask:
                return False
        elif mask != r.mask:
            return False
    if r.fsmagic is not None and r.fsmagic != fsmagic:
        return False
    if r.fsname is not None and r.fsname != fsname:
        return False
    if r.fsuuid is not None and r.fsuuid != fsuuid:
        return False
    for key, op, val in r.ids:
        if not _cmp(op, ctx[key], val):
            return False
    return all(labels.get(k) == v for k, v in r.lsm)


# -- parsing ----------------------------------------------------------------------------
def _parse_rule(line: str, lineno: int, *, allow_key_check: bool = True) -> Rule:
    tokens = line.split()
    fields: dict[str, object] = {}
    ids: list[tuple[str, str, int]] = []
    lsm: list[tuple[str, str]] = []
    action: Action | None = None
    seen: set[str] = set()

    def err(reason: str, tok: str) -> PolicyError:
        return PolicyError(reason, line=lineno, token=tok)

    for tok in tokens:
        try:
            act = Action(tok)
        except ValueError:
            act = None
        if act is not None:
            if action is not None:
                raise err("more than one action", tok)
            action = act
            continue
        if tok == "permit_directio":
            fields["permit_directio"] = True
            continue
        key, op, value = _split(tok)
        if op is None:
            raise err("unknown token", tok)
        base = key
        if base in seen and base != "fsname":
            raise err(f"duplicate {base}", tok)
        seen.add(base)
        if op != "=" and key not in _ID_KEYS:
            raise err("only uid/gid-type conditions take < or >", tok)
        if key == "func":
            hook = _FUNC_ALIASES.get(value)
            if hook is None:
                try:
                    hook = Hook(value)
                except ValueError:
                    raise err("unknown func", tok) from None
            if hook is Hook.KEY_CHECK and not allow_key_check:
                raise err("KEY_CHECK needs CONFIG_IMA_MEASURE_ASYMMETRIC_KEYS", tok)
            fields["func"] = hook
        elif key == "mask":
            inmask = value.startswith("^")
            name = value[1:] if inmask else value
            if name not in _MASKS:
                raise err("unknown mask", tok)
            fields["mask"], fields["mask_in"] = _MASKS[name], inmask
        elif key == "fsmagic":
            try:
                fields["fsmagic"] = int(value, 16)
            except ValueError:
                raise err("fsmagic is hexadecimal", tok) from None
        elif key == "fsname":
            fields["fsname"] = value
        elif key == "fsuuid":
            try:
                fields["fsuuid"] = uuid.UUID(value)
            except ValueError:
                raise err("bad fsuuid", tok) from None
        elif key in _ID_KEYS:
            if not (value.isascii() and value.isdigit()):
                raise err(f"{key} is a decimal number", tok)
            # kstrtoul, then make_kuid: a value that is not a valid uid_t is -EINVAL
            id_value = decimal(value, 0xFFFFFFFE)
            if id_value is None:
                raise err(f"{key} out of range", tok)
            ids.append((key, op, id_value))
        elif key in _LSM_KEYS:
            lsm.append((key, value))
        elif key == "keyrings":
            if not value or any(not k for k in value.split("|")):
                raise err("empty keyring name", tok)
            fields["keyrings"] = tuple(value.split("|"))
        elif key == "label":
            if not value:
                raise err("empty label", tok)
            fields["labels"] = tuple(value.split("|"))
        elif key == "appraise_type":
            if value not in ("imasig", "imasig|modsig", "sigv3"):
                raise err("unknown appraise_type", tok)
            fields["appraise_type"] = value
        elif key == "appraise_flag":
            if value != "check_blacklist":
                raise err("unknown appraise_flag", tok)
            fields["check_blacklist"] = True
        elif key == "appraise_algos":
            fields["appraise_algos"] = tuple(value.split(","))
        elif key == "digest_type":
            if value != "verity":
                raise err("unknown digest_type", tok)
            fields["digest_type_verity"] = True
        elif key == "pcr":
            pcr = decimal(value, 63)
            if pcr is None:
                raise err("pcr out of range", tok)
            fields["pcr"] = pcr
        elif key == "template":
            if action is not Action.MEASURE:
                raise err("template= only after measure", tok)
            try:
                desc = lookup_template(value)
            except UnknownTemplateError:
                raise err("unknown template", tok) from None
            fields["template"] = desc.name
        else:
            raise err("unknown token", tok)
    if action is None:
        raise PolicyError("no action", line=lineno, token=tokens[0] if tokens else None)
    rule = Rule(action=action, ids=tuple(ids), lsm=tuple(lsm), text=line.strip(),
                **fields)  # type: ignore[arg-type]
    _validate(rule, lineno)
    return rule


def _split(tok: str) -> tuple[str, str | None, str]:
    for i, ch in enumerate(tok):
        if ch in "=<>":
            return tok[:i], ch, tok[i + 1:]
    return tok, None, ""


def _validate(r: Rule, lineno: int) -> None:
    """ima_validate_rule."""

    def bad(reason: str) -> PolicyError:
        return PolicyError(reason, line=lineno, token=r.text[:80])

    if r.pcr is not None and r.action is not Action.MEASURE:
        raise bad("pcr= only with measure")
    appraise_opts = (r.appraise_type is not None or r.check_blacklist
                     or r.appraise_algos is not None)
    if appraise_opts and r.action is not Action.APPRAISE:
        raise bad("appraise options only with appraise")
    f = r.func
    if f in (Hook.KEXEC_CMDLINE, Hook.KEY_CHECK, Hook.CRITICAL_DATA):
        if r.action not in (Action.MEASURE, Action.DONT_MEASURE):
            raise bad(f"{f.value} only with measure/dont_measure")
        if r.mask is not None or r.permit_directio or r.digest_type_verity:
            raise bad(f"condition not allowed with {f.value}")
        if f is not Hook.KEXEC_CMDLINE:
            if r.fsmagic is not None or r.fsname is not None or r.fsuuid is not None or r.lsm:
                raise bad(f"condition not allowed with {f.value}")
            if any(k not in ("uid", "gid") for k, _, _ in r.ids):
                raise bad(f"condition not allowed with {f.value}")
    if r.keyrings is not None and f is not Hook.KEY_CHECK:
        raise bad("keyrings= only with func=KEY_CHECK")
    if r.labels is not None and f is not Hook.CRITICAL_DATA:
        raise bad("label= only with func=CRITICAL_DATA")
    if r.modsig_allowed and f not in _MODSIG_HOOKS:
        raise bad("imasig|modsig only with MODULE_CHECK, KEXEC_KERNEL_CHECK, "
                  "KEXEC_INITRAMFS_CHECK")
    if f is Hook.SETXATTR_CHECK and (r.action is not Action.APPRAISE or r.appraise_algos is None):
        raise bad("SETXATTR_CHECK needs appraise with appraise_algos")
    if r.appraise_type == "sigv3" and not r.digest_type_verity:
        raise bad("appraise_type=sigv3 needs digest_type=verity (before 7.1)")


def parse_ima_policy(text: str, *, max_lines: int = 100_000,
                     appraise_modsig: bool = True) -> ImaPolicy:
    """Parse policy text; the first bad rule raises PolicyError(line, token).
    ``appraise_modsig`` is CONFIG_IMA_APPRAISE_MODSIG: without it the kernel refuses
    ``appraise_type=imasig|modsig`` (-EINVAL)."""
    rules: list[Rule] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if lineno > max_lines:
            raise PolicyError("policy too long", line=lineno)
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        rule = _parse_rule(stripped.split("#", 1)[0], lineno)
        if rule.modsig_allowed and not appraise_modsig:
            raise PolicyError("appraise_type=imasig|modsig needs CONFIG_IMA_APPRAISE_MODSIG",
                              line=lineno, token="appraise_type=imasig|modsig")
        rules.append(rule)
    return ImaPolicy(tuple(rules))


_DONT_MEASURE: Final = """\
dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_measure fsmagic=0x64626720
dont_measure fsmagic=0x1021994
dont_measure fsmagic=0x1cd1
dont_measure fsmagic=0x42494e4d
dont_measure fsmagic=0x73636673
dont_measure fsmagic=0xf97cff8c
dont_measure fsmagic=0x43415d53
dont_measure fsmagic=0x27e0eb
dont_measure fsmagic=0x63677270
dont_measure fsmagic=0x6e736673
dont_measure fsmagic=0xde5e81e4
"""
_TCB: Final = """\
measure func=MMAP_CHECK mask=MAY_EXEC
measure func=BPRM_CHECK mask=MAY_EXEC
measure func=FILE_CHECK mask=^MAY_READ euid=0
measure func=FILE_CHECK mask=^MAY_READ uid=0
measure func=MODULE_CHECK
measure func=FIRMWARE_CHECK
measure func=POLICY_CHECK
"""
_APPRAISE_TCB: Final = """\
dont_appraise fsmagic=0x9fa0
dont_appraise fsmagic=0x62656572
dont_appraise fsmagic=0x64626720
dont_appraise fsmagic=0x1021994
dont_appraise fsmagic=0x858458f6
dont_appraise fsmagic=0x1cd1
dont_appraise fsmagic=0x42494e4d
dont_appraise fsmagic=0x73636673
dont_appraise fsmagic=0xf97cff8c
dont_appraise fsmagic=0x43415d53
dont_appraise fsmagic=0x6e736673
dont_appraise fsmagic=0xde5e81e4
dont_appraise fsmagic=0x27e0eb
dont_appraise fsmagic=0x63677270
appraise fowner=0
"""
_SECURE_BOOT: Final = """\
appraise func=MODULE_CHECK appraise_type=imasig
appraise func=FIRMWARE_CHECK appraise_type=imasig
appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig
appraise func=POLICY_CHECK appraise_type=imasig
"""
_CRITICAL_DATA: Final = "measure func=CRITICAL_DATA\n"

#: ``ima_policy=`` names -> their rule text (ima_init_policy).
BUILTIN_POLICIES: Final[Mapping[str, str]] = {
    "tcb": _DONT_MEASURE + _TCB,
    "appraise_tcb": _APPRAISE_TCB,
    "secure_boot": _SECURE_BOOT,
    "critical_data": _CRITICAL_DATA,
}


def arch_policy(*, kexec_sig: bool = True, module_sig: bool = True,
                machine_keyring_policy: bool = False) -> str:
    """The x86 EFI secure-boot architecture rules (``sb_arch_rules`` in ima_efi.c), which
    ``CONFIG_IMA_ARCH_POLICY`` installs when the firmware booted with secure boot on.

    >>> print(arch_policy(), end="")
    measure func=KEXEC_KERNEL_CHECK
    measure func=MODULE_CHECK
    """
    text = "" if kexec_sig else "appraise func=KEXEC_KERNEL_CHECK appraise_type=imasig\n"
    text += "measure func=KEXEC_KERNEL_CHECK\n"
    if not module_sig:
        text += "appraise func=MODULE_CHECK appraise_type=imasig\n"
    if machine_keyring_policy:
        text += "appraise func=POLICY_CHECK appraise_type=imasig\n"
    return text + "measure func=MODULE_CHECK\n"


def builtin_policy(names: Sequence[str] | str, *, kernel_version: tuple[int, int] = (6, 1),
                   arch_rules: str = "", signed_init: bool = False) -> ImaPolicy:
    """The rules ``ima_policy=<names>`` installs, in the kernel's order (ima_init_policy:
    dont_measure and tcb, then ``arch_rules``, then secure_boot, appraise_tcb and
    critical_data). ``signed_init`` is CONFIG_IMA_APPRAISE_SIGNED_INIT: appraise_tcb's
    last rule (files root owns) requires a signature (IMA_DIGSIG_REQUIRED), not a hash."""
    if isinstance(names, str):
        names = [n for n in names.replace("|", " ").split() if n]
    unknown = set(names) - set(BUILTIN_POLICIES) - {"fail_securely"}
    if unknown:
        raise PolicyError(f"unknown ima_policy= name(s) {sorted(unknown)}")
    text = ""
    for name in ("tcb", "secure_boot", "appraise_tcb", "critical_data"):
        if name in names:
            part = BUILTIN_POLICIES[name]
            if name == "tcb" and kernel_version >= (6, 14):
                part = part.replace("fsmagic=0x1021994\n", "fsmagic=0x1021994 func=FILE_CHECK\n")
            if name == "appraise_tcb" and signed_init:
                part = part.replace("appraise fowner=0\n",
                                    "appraise fowner=0 appraise_type=imasig\n")
            text += part
        if name == "tcb":
            text += arch_rules  # whether or not tcb was asked for
    pol = parse_ima_policy(text)
    return ImaPolicy(pol.rules, "|".join(names) or "none")


