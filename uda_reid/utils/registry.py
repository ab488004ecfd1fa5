"""Name -> component registries (detectron2 / FastReID style).

A registry is a small dict filled by a decorator. Adding a component is one new function or
class plus ``@REGISTRY.register()`` (optionally with aliases); nothing else changes.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple, TypeVar
from uda_reid.utils.errors import UnknownNameError

T = TypeVar("T")


class Registry:
    """A named mapping from lower-case names (and aliases) to components."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: Dict[str, object] = {}
        self._aliases: Dict[str, str] = {}

    def register(self, name: Optional[str] = None, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``) and aliases."""

        def deco(obj: T) -> T:
            key = (name or obj.__name__).lower()
            self._add(key, obj)
            for alias in aliases:
                alias = alias.lower()
                if alias in self._entries or alias in self._aliases:
                    raise KeyError(f"{self.name} registry: alias '{alias}' is already taken")
                self._aliases[alias] = key
            return obj

        return deco

    def _add(self, key: str, obj: object) -> None:
        if key in self._entries or key in self._aliases:
            raise KeyError(f"{self.name} registry: '{key}' is already registered")
        self._entries[key] = obj

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases; KeyError with suggestions."""
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            known = sorted(set(self._entries) | set(self._aliases))
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"No {self.name} named '{name}'.{hint} "
                                   f"Known: {', '.join(known)}")
        return key

    def get(self, name: str) -> object:
        return self._entries[self.canonical(name)]

    def __contains__(self, name: str) -> bool:
        key = name.lower()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> Iterator[Tuple[str, object]]:
        return iter(sorted(self._entries.items()))

    def __repr__(self) -> str:
        return f"Registry({self.name}: {', '.join(self)})"


def import_submodules(package_name: str, package_path: Iterable[str]) -> None:
    """Import every module of a package so that their ``@register`` decorators run.

    Used in the ``__init__`` of component packages (backbones, heads, datasets, methods):
    a new component is a new file, and no list of imports has to be edited.
    """
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(list(package_path)):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
