"""Bilevel algorithms that update both levels themselves, behind one registry, and ``hyperlevel.optimize``.

A hypergradient solver (:mod:`hyperlevel.solvers`) returns the outer gradient at a given inner point; an
algorithm here owns the whole iteration: how the inner variables move, which auxiliary variables it keeps, and
how the outer step is built (docs/algorithms.md).
"""

from . import bome, f2sa, implicit, meso, pgdo, soba, vfo  # noqa: F401 - importing registers them
from .base import Algorithm, Oracle
from .optimize import HistoryEntry, OptimizeResult, optimize
from .registry import available, defaults, get, register

__all__ = [
    "Algorithm",
    "HistoryEntry",
    "OptimizeResult",
    "Oracle",
    "available",
    "defaults",
    "get",
    "optimize",
    "register",
]
