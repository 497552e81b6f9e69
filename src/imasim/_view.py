"""A typed, documented read-only attribute computed from its object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

_O = TypeVar("_O")
_T = TypeVar("_T")


class View(Generic[_O, _T]):
    """``name = View(lambda obj: ..., "doc")``: a property whose type mypy infers."""

    def __init__(self, get: Callable[[_O], _T], doc: str) -> None:
        self._get, self.__doc__ = get, doc

    def __get__(self, obj: _O | None, owner: Any = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]
        return self._get(obj)
