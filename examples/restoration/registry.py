"""A small name -> entry registry, the one mechanism behind the toolkit's metrics, degradations, data sources and
model builders.

Registries are plain objects: a task registers its entries at import time (``METRICS.register("psnr", ...)`` or
the ``@REGISTRY.register("name")`` decorator form) and code that takes a name from a YAML file or the command
line looks it up with :meth:`Registry.get`, whose error lists what is available. Registering a name twice is an
error unless ``replace=True``: two tasks silently fighting over ``"embedded"`` would be a bug.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "RegistryError"]

T = TypeVar("T")


class RegistryError(KeyError, ValueError):
    """An unknown or duplicate name (a ``KeyError`` and, as a bad setting, a ``ValueError``); the message lists
    the registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Entries of one ``kind`` (used in error messages: "unknown metric 'x'; available: [...]")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, replace: bool = False):
        """Add ``entry`` under ``name``; without ``entry``, return a decorator that registers what it wraps."""
        if entry is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, replace=replace)
                return obj

            return decorator
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names are non-empty strings, got {name!r}")
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise RegistryError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (tests register temporary entries)."""
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {self.names()}")
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {self.names()}") from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
