"""IPE policy text (security/ipe/policy_parser.c): parse, validate, render.

Lines end at LF or CR; ``#`` starts a comment; tokens are separated by spaces and tabs
and matched case-sensitively. The first line is ``policy_name=N policy_version=A.B.C``;
every other line is a rule ``op=OP {property} action=ALLOW|DENY`` or a default
``DEFAULT [op=OP] action=ALLOW|DENY``. Without a global default, every operation needs
its own. Errors are :class:`IpePolicyError` with the line, the token and the errno the
kernel returns (``-EBADMSG``, ``-ERANGE``, ``-EINVAL``).

>>> p = parse_ipe_policy('''policy_name=Allow_Initramfs policy_version=0.0.0
... DEFAULT action=DENY
...
... op=EXECUTE boot_verified=TRUE action=ALLOW
... ''')
>>> p.name, p.version_text, [r.render() for r in p.rules[Op.EXECUTE]]
('Allow_Initramfs', '0.0.0', ['op=EXECUTE boot_verified=TRUE action=ALLOW'])
>>> parse_ipe_policy("policy_name=x policy_version=0.0.0\\nop=EXECUTE action=MAYBE\\n")
Traceback (most recent call last):
...
imasim.ipe.policy.IpePolicyError: line 2: bad action, -EBADMSG (token 'action=MAYBE')
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .._wire import decimal
from ..errors import PolicyError

__all__ = [
    "EBADMSG",
    "EINVAL",
    "ERANGE",
    "Action",
    "IpePolicy",
    "IpePolicyError",
    "IpeRule",
    "Op",
    "Property",
    "parse_ipe_policy",
]

EBADMSG: Final = 74
ERANGE: Final = 34
EINVAL: Final = 22


class IpePolicyError(PolicyError):
    """A policy the kernel refuses: ``errno`` (positive), ``line`` (1-based) and ``token``."""

    def __init__(self, message: str, *, errno: int = EBADMSG, line: int | None = None,
                 token: str | None = None) -> None:
        self.errno = errno
        name = {EBADMSG: "EBADMSG", ERANGE: "ERANGE", EINVAL: "EINVAL"}.get(errno, str(errno))
        super().__init__(f"{message}, -{name}", line=line, token=token)


class Op(enum.Enum):
    """The operations a rule names (``op=``), in the kernel's order."""

    EXECUTE = "EXECUTE"
    FIRMWARE = "FIRMWARE"
    KMODULE = "KMODULE"
    KEXEC_IMAGE = "KEXEC_IMAGE"
    KEXEC_INITRAMFS = "KEXEC_INITRAMFS"
    POLICY = "POLICY"
    X509_CERT = "X509_CERT"


class Action(enum.Enum):
    """What a rule or a default decides: ``ALLOW`` or ``DENY``."""

    ALLOW = "ALLOW"
    DENY = "DENY"


@dataclass(frozen=True, slots=True)
class Property:
    """``key=value``: a boolean (``boot_verified``, ``dmverity_signature``,
    ``fsverity_signature``) or a digest (``dmverity_roothash``, ``fsverity_digest``: the
    algorithm name, not validated, and the bytes)."""

    key: str
    value: bool | None = None
    alg: str = ""
    digest: bytes = b""

    def render(self, *, upper: bool = False) -> str:
        """As the policy says it; ``upper`` as the audit record prints digests."""
        if self.value is not None:
            return f"{self.key}={'TRUE' if self.value else 'FALSE'}"
        hexd = self.digest.hex().upper() if upper else self.digest.hex()
        return f"{self.key}={self.alg}:{hexd}"


@dataclass(frozen=True, slots=True)
class IpeRule:
    """One rule: ``op=OP`` and its properties, all of which must hold, then the action."""

    op: Op
    action: Action
    props: tuple[Property, ...] = ()

    def __repr__(self) -> str:
        return f"<IpeRule {self.render()!r}>"

    def render(self, *, upper: bool = False) -> str:
        """``op=OP props action=A``, the form the 1420 audit record's ``rule=`` shows."""
        mid = "".join(p.render(upper=upper) + " " for p in self.props)
        return f"op={self.op.value} {mid}action={self.action.value}"


@dataclass(frozen=True, slots=True)
class IpePolicy:
    """A parsed policy: name, version (major, minor, rev), rules per op in file order,
    the per-op defaults and the global default; ``text`` is the text it came from."""

    name: str
    version: tuple[int, int, int]
    rules: Mapping[Op, tuple[IpeRule, ...]]
    op_defaults: Mapping[Op, Action]
    global_default: Action | None
    text: str = field(default="", repr=False)

    def __repr__(self) -> str:
        n = sum(len(r) for r in self.rules.values())
        return f"<IpePolicy {self.name!r} version {self.version_text}, {n} rules>"

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)

    @property
    def version_key(self) -> int:
        """(major << 32) | (minor << 16) | rev, as the kernel compares versions."""
        a, b, c = self.version
        return (a << 32) | (b << 16) | c

    def render(self) -> str:
        """The policy back as text (header, defaults, rules per op)."""
        out = [f"policy_name={self.name} policy_version={self.version_text}"]
        if self.global_default is not None:
            out.append(f"DEFAULT action={self.global_default.value}")
        for op, act in self.op_defaults.items():
            out.append(f"DEFAULT op={op.value} action={act.value}")
        for rules in self.rules.values():
            out.extend(r.render() for r in rules)
        return "\n".join(out) + "\n"


_BOOL_PROPS: Final = ("boot_verified", "dmverity_signature", "fsverity_signature")
_DIGEST_PROPS: Final = ("dmverity_roothash", "fsverity_digest")
_VERSION: Final = re.compile(r"policy_version=(.*)")
_NAME: Final = re.compile(r"policy_name=(.+)")


def _lines(text: str) -> list[tuple[int, list[str]]]:
    out = []
    for n, raw in enumerate(re.split(r"\n|\r", text), start=1):
        line = raw.split("#", 1)[0].rstrip(" \t\n\r\f\v")
        tokens = [t for t in re.split(r"[ \t]", line) if t]
        if tokens:
            out.append((n, tokens))
    return out


def _version(tok: str, line: int) -> tuple[int, int, int]:
    """parse_version: up to three kstrtou16 fields, checked in order."""
    m = _VERSION.fullmatch(tok)
    assert m is not None
    vals: list[int] = []
    for p in m.group(1).split("."):
        if len(vals) >= 3:
            raise IpePolicyError("policy_version has more than three fields", line=line,
                                 token=tok)
        digits = p[1:] if p.startswith("+") else p
        if not digits.isdigit() or not digits.isascii():
            raise IpePolicyError("policy_version field is not a number", errno=EINVAL,
                                 line=line, token=tok)
        value = decimal(digits, 0xFFFF)  # kstrtou16: -ERANGE above 65535
        if value is None:
            raise IpePolicyError("policy_version field out of range", errno=ERANGE,
                                 line=line, token=tok)
        vals.append(value)
    if len(vals) != 3:
        raise IpePolicyError("policy_version needs three fields", line=line, token=tok)
    return vals[0], vals[1], vals[2]


def _property(tok: str, line: int) -> Property:
    key, eq, value = tok.partition("=")
    if not eq:
        raise IpePolicyError("unknown property", line=line, token=tok)
    if key in _BOOL_PROPS:
        if value not in ("TRUE", "FALSE"):
            raise IpePolicyError("unknown property", line=line, token=tok)
        return Property(key, value == "TRUE")
    if key in _DIGEST_PROPS:
        alg, colon, hexd = value.partition(":")
        if not colon:
            raise IpePolicyError("digest property needs alg:hex", line=line, token=tok)
        try:
            if len(hexd) % 2:
                raise ValueError
            digest = bytes.fromhex(hexd)
        except ValueError:
            raise IpePolicyError("digest is not hexadecimal", errno=EINVAL, line=line,
                                 token=tok) from None
        return Property(key, alg=alg, digest=digest)
    raise IpePolicyError("unknown property", line=line, token=tok)


def _op(tok: str, line: int) -> Op:
    key, eq, value = tok.partition("=")
    try:
        if key != "op" or not eq:
            raise ValueError
        return Op(value)
    except ValueError:
        raise IpePolicyError("rule must start with a valid op=", line=line,
                             token=tok) from None


def _action(tok: str, line: int) -> Action:
    if tok == "action=ALLOW":
        return Action.ALLOW
    if tok == "action=DENY":
        return Action.DENY
    raise IpePolicyError("bad action", line=line, token=tok)


def parse_ipe_policy(text: str | bytes, *, max_lines: int = 100_000) -> IpePolicy:
    """ipe_parse_policy: the whole policy or an :class:`IpePolicyError`."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise IpePolicyError("policy is not text") from None
    lines = _lines(text)
    if not lines:
        raise IpePolicyError("empty policy")
    if len(lines) > max_lines:
        raise IpePolicyError("too many lines", line=max_lines + 1)
    n, head = lines[0]
    if len(head) != 2 or not _NAME.fullmatch(head[0]) or not _VERSION.fullmatch(head[1]):
        raise IpePolicyError("the first line must be 'policy_name=N policy_version=A.B.C'",
                             line=n, token=" ".join(head))
    name = head[0][len("policy_name="):]
    version = _version(head[1], n)
    rules: dict[Op, list[IpeRule]] = {op: [] for op in Op}
    op_defaults: dict[Op, Action] = {}
    global_default: Action | None = None
    for n, toks in lines[1:]:
        action = _action(toks[-1], n)
        if toks[0] == "DEFAULT":
            if len(toks) == 2:
                if global_default is not None:
                    raise IpePolicyError("a second global default", line=n, token=toks[0])
                global_default = action
            elif len(toks) == 3:
                op = _op(toks[1], n)
                if op in op_defaults:
                    raise IpePolicyError("a second default for this op", line=n,
                                         token=toks[1])
                op_defaults[op] = action
            else:
                raise IpePolicyError("DEFAULT takes no properties", line=n, token=toks[2])
            continue
        if len(toks) < 2:
            raise IpePolicyError("rule needs op= and action=", line=n, token=toks[0])
        op = _op(toks[0], n)
        props = tuple(_property(t, n) for t in toks[1:-1])
        rules[op].append(IpeRule(op, action, props))
    if global_default is None:
        missing = [op.value for op in Op if op not in op_defaults]
        if missing:
            raise IpePolicyError(f"no global default and no default for {missing}")
    return IpePolicy(name, version, {op: tuple(r) for op, r in rules.items()}, op_defaults,
                     global_default, text)
