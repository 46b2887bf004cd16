"""The algorithm registry: a method is one file plus one ``@register``."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidProblemError
from .base import Algorithm

_METHODS: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name or cls.name in _METHODS:
        raise ValueError(f"algorithm name {cls.name!r} is empty or already registered")
    _METHODS[cls.name] = cls
    return cls


def available() -> list[str]:
    """The registered method names."""
    return sorted(_METHODS)


def get(name: str, outer_lr: float, inner_lr: float, **options: Any) -> Algorithm:
    """The algorithm ``name`` with these step sizes and options (unknown name or option: a clear error)."""
    try:
        cls = _METHODS[name]
    except (KeyError, TypeError):
        raise InvalidProblemError(f"unknown method {name!r}; available: {available()}") from None
    return cls(outer_lr=outer_lr, inner_lr=inner_lr, **options)


def defaults(name: str) -> dict[str, Any]:
    """The documented default options of ``name`` (besides ``outer_lr`` and ``inner_lr``)."""
    get(name, 1.0, 1.0)  # raises for an unknown name
    return dict(_METHODS[name].defaults)
