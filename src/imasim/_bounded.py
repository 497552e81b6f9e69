"""JSON and TOML documents with a nesting bound checked before the parser recurses.

``json.loads`` and ``tomllib.loads`` recurse once per nesting level: 100,000 ``[`` raise
``RecursionError`` (or, nearer the recursion limit, crash the caller that walks the
result), and ``tomllib`` spends minutes on one key of 200,000 dotted parts. These
loaders first measure the document without recursion, in a few passes of C-speed regular
expressions plus one loop over the brackets alone (stopping at the first level too
deep), and refuse it with :class:`~imasim.errors.LimitExceededError`; every other
failure is a :class:`~imasim.errors.ParseError`. Time and memory are linear in the text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from .errors import LimitExceededError, ParseError

__all__ = ["MAX_DOCUMENT_DEPTH", "check_json_depth", "check_toml_depth", "load_json_bounded",
           "load_toml_bounded"]

MAX_DOCUMENT_DEPTH: Final = 64
"""Arrays and objects (tables) nested deeper than this are refused; so are dotted keys
of more parts. imasim's own documents nest at most 4 deep."""

# a string runs to its closing quote or, unterminated, to the end (so that a search never
# restarts inside one: that would be quadratic)
_JSON_STRING: Final = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+\\?(?:"|\Z)', re.S)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_MAX_DIGITS: Final = 4300  # int() refuses more (sys.get_int_max_str_digits)
# a match starts only where a run of digits starts, so the search is linear
_LONG_NUMBER: Final = re.compile(rf"(?<![0-9_])[0-9_]{{{_MAX_DIGITS + 1}}}")
# TOML strings (multi-line first) and comments, the parts where brackets mean nothing
_TOML_SKIP: Final = re.compile(
    r'"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
    r'|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+\\?(?:"|$)|\'[^\'\n]*+(?:\'|$)|#[^\n]*', re.M)


def _text(data: str | bytes, what: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{what} is not UTF-8", offset=exc.start, field=what) from None


def _bracket_depth(skeleton: str, max_depth: int, what: str) -> None:
    if _LONG_NUMBER.search(skeleton):
        # the parsers would refuse it too, after spending ~150 bytes a digit (tomllib)
        raise LimitExceededError(f"{what} has a number of more than {_MAX_DIGITS} digits",
                                 field=what, expected=f"<= {_MAX_DIGITS} digits")
    depth = 0
    for ch in _NOT_BRACKET.sub("", skeleton):
        if ch in "[{":
            depth += 1
            if depth > max_depth:
                raise LimitExceededError(f"{what} nests deeper than {max_depth}",
                                         field=what, expected=f"<= {max_depth}")
        else:
            depth -= 1


def check_json_depth(text: str | bytes, max_depth: int = MAX_DOCUMENT_DEPTH, *,
                     what: str = "JSON") -> None:
    """Refuse JSON whose arrays and objects nest deeper than ``max_depth``."""
    _bracket_depth(_JSON_STRING.sub('""', _text(text, what)), max_depth, what)


def check_toml_depth(text: str | bytes, max_depth: int = MAX_DOCUMENT_DEPTH, *,
                     what: str = "TOML") -> None:
    """Refuse TOML whose arrays and inline tables nest deeper than ``max_depth``, or with
    a key of more than ``max_depth`` dotted parts."""
    skeleton = _TOML_SKIP.sub('""', _text(text, what))
    _bracket_depth(skeleton, max_depth, what)
    # a part is a bare key or a (blanked) quoted one; a match can only start where a
    # key starts, so each attempt is linear and the search is too
    dotted = re.compile(r'(?<![A-Za-z0-9_"-])(?:(?:[A-Za-z0-9_-]++|"")[ \t]*+\.[ \t]*+)'
                        rf"{{{max_depth}}}")
    m = dotted.search(skeleton)
    if m is not None:
        raise LimitExceededError(f"{what} has a key of more than {max_depth} dotted parts",
                                 field=what, expected=f"<= {max_depth}")


def load_json_bounded(text: str | bytes, *, max_depth: int = MAX_DOCUMENT_DEPTH,
                      what: str = "JSON") -> Any:
    """``json.loads`` after :func:`check_json_depth`; any failure is a ParseError (a bad
    document, invalid UTF-8, a number of more than 4,300 digits)."""
    doc = _text(text, what)
    check_json_depth(doc, max_depth, what=what)
    try:
        return json.loads(doc)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{what}: {exc.msg}", line=exc.lineno, offset=exc.pos,
                         field=what) from None
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"{what}: {str(exc).splitlines()[0][:120] if str(exc) else exc!r}",
                         field=what) from None


def load_toml_bounded(text: str | bytes, *, max_depth: int = MAX_DOCUMENT_DEPTH,
                      what: str = "TOML") -> dict[str, Any]:
    """``tomllib.loads`` after :func:`check_toml_depth`; any failure is a ParseError
    (TOML syntax errors carry the line)."""
    import tomllib  # only TOML documents need it (10 ms of start-up otherwise)

    doc = _text(text, what)
    check_toml_depth(doc, max_depth, what=what)
    try:
        return tomllib.loads(doc)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ParseError(f"{what}: {exc}", line=int(m.group(1)) if m else None,
                         field=what) from None
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"{what}: {str(exc).splitlines()[0][:120] if str(exc) else exc!r}",
                         field=what) from None
