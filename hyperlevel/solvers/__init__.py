"""Hypergradient solvers. Each computes or approximates ``d/do F(o, w*(o))``; see docs/concepts.md.

Build one by name with ``get(name, **options)`` (names: ``available()``); each solver's ``declaration`` says which
function's gradient it computes (:mod:`hyperlevel.solvers.target`).
"""

from .base import Reduce, Solver, SolverInfo
from .finite_difference import FiniteDifference
from .first_order import FirstOrder
from .implicit import ConjugateGradient, ImplicitSolver, Neumann
from .linear import LinearSolveInfo, conjugate_gradient, neumann_series
from .registry import SOLVERS, available, get, options, register
from .target import Declaration, ImplicitTarget, PartialTarget, Target, UnrolledTarget
from .unrolled import Unrolled

__all__ = [
    "SOLVERS",
    "ConjugateGradient",
    "Declaration",
    "FiniteDifference",
    "FirstOrder",
    "ImplicitSolver",
    "ImplicitTarget",
    "LinearSolveInfo",
    "Neumann",
    "PartialTarget",
    "Reduce",
    "Solver",
    "SolverInfo",
    "Target",
    "Unrolled",
    "UnrolledTarget",
    "available",
    "conjugate_gradient",
    "get",
    "neumann_series",
    "options",
    "register",
]
