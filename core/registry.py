"""Name registries, filled where things are defined (CompressAI's habit).

Codecs, channels, split-model adapters and command groups each keep one :class:`Registry`. A
module registers what it defines with a decorator; the registry imports every module of its
package on the first look-up, so adding a module is all it takes to add a name.

>>> shapes = Registry("shape", package=None)
>>> @shapes.register("circle")
... class Circle:
...     pass
>>> shapes.get("circle") is Circle, shapes.names()
(True, ['circle'])
>>> shapes.get("square")
Traceback (most recent call last):
...
intelliflow.errors.RegistryError: unknown shape 'square'; registered: ['circle']
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

from intelliflow.errors import RegistryError


class Registry:
    """Names -> registered values (classes, or entries describing them).

    :param kind: what the names name, for messages (``"codec"``).
    :param package: the package whose modules are imported before the first look-up (``None``:
        nothing to discover).
    """

    def __init__(self, kind: str, package: str | None):
        self.kind, self.package = kind, package
        self._entries: dict[str, Any] = {}
        self._discovered = package is None

    def add(self, name: str, value: Any) -> Any:
        """Register ``value`` under ``name`` (a second, different value for a name is an error)."""
        if name in self._entries and self._entries[name] is not value:
            raise RegistryError(f"{self.kind} name {name!r} is registered twice")
        self._entries[name] = value
        return value

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: register the decorated class or function under ``name``."""
        return lambda value: self.add(name, value)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def get(self, name: str) -> Any:
        """The value registered as ``name``, or a :class:`RegistryError` listing the names."""
        self._discover()
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {self.names()}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._discover()
        return sorted(self._entries)

    def items(self) -> dict[str, Any]:
        """``{name: value}``, sorted by name."""
        self._discover()
        return {name: self._entries[name] for name in self.names()}
