"""The one exception hierarchy every imasim module raises from.

::

    ImasimError
    ├── ParseError(ValueError)        malformed bytes or text: offset, field, path, expected, actual
    │   ├── TruncatedError            the input ended inside a field
    │   ├── TrailingDataError         bytes left over after a complete structure
    │   ├── LimitExceededError        a length or count above a configured limit
    │   ├── UnknownTemplateError      a template or field name imasim does not know
    │   └── UnknownAlgorithmError     an algorithm number or name the input uses and
    │                                 imasim cannot decode (decoding; verifiers say
    │                                 UnsupportedAlgorithmError, the kernel's -ENOPKG)
    ├── VerificationError             well-formed, but does not check out
    │   ├── DigestMismatchError
    │   ├── SignatureInvalidError
    │   ├── PcrMismatchError          carries the mismatches
    │   ├── NonceMismatchError
    │   ├── KeyNotFoundError
    │   ├── KeyRejectedError          a keyring restriction refused the key
    │   ├── RevokedError              the blacklist refused a key or a hash
    │   └── UnsupportedAlgorithmError
    ├── PolicyError                   policy text parsed but semantically invalid (line, reason)
    ├── UsageError(ValueError)        the caller misused an API
    └── SimulationError               an illegal transition of a simulated machine

Errors compare equal by type and fields so parametrised tests stay short; ``str(err)``
names the place and the cause. Tests should assert on attributes, not on messages.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DigestMismatchError",
    "ImasimError",
    "KeyNotFoundError",
    "KeyRejectedError",
    "LimitExceededError",
    "NonceMismatchError",
    "ParseError",
    "PcrMismatchError",
    "PolicyError",
    "RevokedError",
    "SignatureInvalidError",
    "SimulationError",
    "TrailingDataError",
    "TruncatedError",
    "UnknownAlgorithmError",
    "UnknownTemplateError",
    "UnsignedError",
    "UnsupportedAlgorithmError",
    "UsageError",
    "VerificationError",
]


class ImasimError(Exception):
    """Base class of every exception imasim raises on purpose."""

    def _fields(self) -> tuple[Any, ...]:
        return (str(self),)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ImasimError)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))


class ParseError(ImasimError, ValueError):
    """Malformed input: the bytes or text do not have the expected structure.

    ``offset`` is absolute in the caller's buffer (or the line number for text formats,
    when ``line`` is set), ``field`` names what was being read, ``path`` locates the
    structure (for example ``("entry[41]", "ima-sig", "sig")``), ``expected`` and
    ``actual`` describe the disagreement.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        field: str | None = None,
        path: tuple[str, ...] = (),
        expected: object = None,
        actual: object = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.offset = offset
        self.field = field
        self.path = tuple(path)
        self.expected = expected
        self.actual = actual
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        parts: list[str] = []
        if self.path:
            parts.append(" ".join(self.path))
        if self.field:
            parts.append(f"field {self.field}:")
        parts.append(self.message)
        if self.expected is not None:
            parts.append(f"(expected {self.expected}")
            parts[-1] += f", got {self.actual})" if self.actual is not None else ")"
        if self.line is not None:
            parts.append(f"at line {self.line}")
        if self.offset is not None:
            parts.append(f"at offset {self.offset:#x}")
        return " ".join(parts)

    def _fields(self) -> tuple[Any, ...]:
        return (self.message, self.offset, self.field, self.path, self.line)

    def with_path(self, *prefix: str, shift: int = 0) -> ParseError:
        """Return a copy of this error (same class) located under ``prefix`` (outermost
        first), its offset moved by ``shift`` (for a part read out of a larger buffer)."""
        err = type(self).__new__(type(self))
        ParseError.__init__(
            err,
            self.message,
            offset=None if self.offset is None else self.offset + shift,
            field=self.field,
            path=tuple(prefix) + self.path,
            expected=self.expected,
            actual=self.actual,
            line=self.line,
        )
        return err


class TruncatedError(ParseError):
    """The input ended before a field was complete."""


class TrailingDataError(ParseError):
    """A complete structure was followed by bytes that belong to nothing."""


class LimitExceededError(ParseError):
    """A length or count is above the configured :class:`imasim.limits.Limits`."""


class UnknownTemplateError(ParseError):
    """A template or template-field name imasim does not know."""


class UnknownAlgorithmError(ParseError):
    """The input names an algorithm imasim cannot decode: a ``hash_algo`` number, a TPM
    algorithm id, the bank of a per-bank list. Bad input to a command that only decodes
    (exit 2); a verification that meets it reports :class:`UnsupportedAlgorithmError`
    (the kernel's -ENOPKG) instead."""


class VerificationError(ImasimError):
    """Well-formed input that does not check out (signature, digest, PCRs, trust)."""


class DigestMismatchError(VerificationError):
    """A computed digest differs from the one stated."""


class SignatureInvalidError(VerificationError):
    """A signature does not verify with the key it names."""


class PcrMismatchError(VerificationError):
    """PCR values differ from the expected ones; ``mismatches`` holds the evidence."""

    def __init__(self, message: str, mismatches: tuple[object, ...] = ()) -> None:
        self.mismatches = tuple(mismatches)
        super().__init__(message)

    def _fields(self) -> tuple[Any, ...]:
        return (str(self), self.mismatches)


class NonceMismatchError(VerificationError):
    """A quote's extraData is not the nonce the verifier sent."""


class KeyNotFoundError(VerificationError):
    """No key in the given keyrings matches the signer (the kernel's -ENOKEY)."""


class KeyRejectedError(VerificationError):
    """A keyring restriction refused the key (the kernel's -ENOKEY/-EKEYREJECTED)."""


class RevokedError(VerificationError):
    """A key or a hash is on the blacklist (the kernel's -EKEYREJECTED)."""


class UnsupportedAlgorithmError(VerificationError):
    """An algorithm the kernel (or imasim) does not support (the kernel's -ENOPKG)."""


class UnsignedError(VerificationError):
    """No signature where one is required (the kernel's -ENODATA, e.g. an unsigned PE)."""


class PolicyError(ImasimError):
    """Policy text that is invalid; ``line`` is 1-based when known, ``reason`` says why."""

    def __init__(self, reason: str, *, line: int | None = None, token: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.token = token
        where = f"line {line}: " if line is not None else ""
        tok = f" (token {token!r})" if token is not None else ""
        super().__init__(f"{where}{reason}{tok}")

    def _fields(self) -> tuple[Any, ...]:
        return (self.reason, self.line, self.token)


class UsageError(ImasimError, ValueError):
    """The caller misused an API (wrong argument, a builder field set twice, ...)."""


class SimulationError(ImasimError):
    """An illegal transition of a simulated machine or TPM."""


class PermissionDeniedError(SimulationError):
    """The kernel refused a user-space operation on a key or keyring for lack of
    permission (security/keys/permission.c key_task_permission: -EACCES)."""
