"""Data-source registry: one name -> data-set builder table that a task's training and evaluation both use.

A data *spec* is ``NAME`` or ``NAME:ROOT`` (``embedded``, ``folder:/photos``, ``rellisur:/data/RELLISUR``), as
in a YAML ``data.source`` / ``data.root`` pair or a ``--data`` option. A task keeps one :class:`SourceRegistry`
and registers a :class:`DataSource` per kind of data: its ``build(split, root, **options)`` returns the data set
of ``split`` (``train``, ``val`` or ``test``) with items ``{"input", "target", "name", ...}``. Because training
and evaluation look the name up in the same table, a new source is one registration, not two ``if`` chains.

``synthetic`` says whether the source makes its inputs from clean photos with a degradation model (then an
evaluation can measure it once per model) or holds real degraded/clean pairs. Each task has its own registry:
"embedded" means "the embedded photos, degraded *this task's* way".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from ..registry import Registry

__all__ = ["DataSource", "SourceRegistry", "parse_spec"]


@dataclass(frozen=True)
class DataSource:
    """One kind of data: ``build(split, root, **options) -> Dataset``; ``needs_root``: a path is required
    (``folder:PATH``), and refused otherwise; ``synthetic``: degraded on the fly from clean photos."""

    name: str
    build: Callable[..., Dataset]
    needs_root: bool = False
    synthetic: bool = True
    description: str = ""


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"folder:/x"`` -> ``("folder", "/x")``; ``"embedded"`` -> ``("embedded", None)``."""
    name, sep, root = spec.partition(":")
    return name, (root if sep else None)


class SourceRegistry(Registry[DataSource]):
    """The data sources of one task (``kind`` names it in error messages)."""

    def __init__(self, kind: str = "data source"):
        super().__init__(kind)

    def add(self, source: DataSource, replace: bool = False) -> DataSource:
        """Register ``source`` under its name."""
        return self.register(source.name, source, replace=replace)

    def check(self, name: str, root: str | None) -> DataSource:
        """The source ``name``, after checking that ``root`` is given exactly when the source needs one;
        ``ValueError`` naming the usage otherwise."""
        if name not in self:
            specs = ", ".join(f"{n}:PATH" if self.get(n).needs_root else n for n in self.names())
            raise ValueError(f"unknown {self.kind} {name!r}: use {specs}")
        source = self.get(name)
        if source.needs_root and not root:
            raise ValueError(f"use --data {name}:/path (the {self.kind} {name!r} needs a folder)")
        if not source.needs_root and root:
            raise ValueError(f"the {self.kind} {name!r} takes no path, got {root!r}")
        return source

    def build(self, spec: str, split: str, root: str | None = None, **options: Any) -> Dataset:
        """The data set of ``split`` for ``spec`` (``NAME`` or ``NAME:ROOT``; ``root`` given separately wins over
        an empty spec root)."""
        name, spec_root = parse_spec(spec)
        root = root or spec_root
        return self.check(name, root).build(split, root, **options)

    def is_synthetic(self, spec: str) -> bool:
        return self.get(parse_spec(spec)[0]).synthetic
