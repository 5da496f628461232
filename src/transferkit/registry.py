"""One small registry per family (backbones, heads, strategies, datasets)."""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections.abc import Callable
from typing import Generic, TypeVar

from transferkit.errors import TransferkitError, unknown_name

T = TypeVar("T")
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "cf.", "vs.", "etc.")


def first_sentence(text: str) -> str:
    """The first sentence of ``text``'s first paragraph, on one line (all of it when it has no
    sentence end: a period, ! or ? followed by a capital letter)."""
    para = " ".join(inspect.cleandoc(text or "").split("\n\n")[0].split())
    for m in re.finditer(r"[.!?](?=\s+[A-Z])", para):
        if not para[: m.end()].endswith(_ABBREVIATIONS):
            return para[: m.end()]
    return para


class Registry(Generic[T]):
    """Maps a name to a factory; ``get`` raises a did-you-mean error for unknown names.

    Example:
        >>> BACKBONES = Registry("backbone")
        >>> @BACKBONES.register("mlp")
        ... def mlp(**kw): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise RuntimeError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            self._help[name] = first_sentence(help or getattr(obj, "__doc__", "") or "")
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise unknown_name(self.kind, name, self._items)
        return self._items[name]

    def build(self, name: str, /, **kwargs):
        """Call the factory registered as ``name``; unknown keyword arguments get a clear error."""
        factory = self.get(name)
        check_kwargs(f"{self.kind.capitalize()} '{name}'", factory, kwargs)
        return factory(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._items


def check_kwargs(what: str, factory: Callable, kwargs: dict, hidden: tuple[str, ...] = ()) -> None:
    """Raise a one-sentence error for a keyword that ``factory`` does not take."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in hidden and p != "self"]
    for key in kwargs:
        if key not in allowed:
            raise TransferkitError(f"{what} has no argument '{key}'; its arguments are: {', '.join(allowed) or 'none'}.")
