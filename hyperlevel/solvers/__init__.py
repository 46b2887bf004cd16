"""Hypergradient solvers. Each computes or approximates ``d/do F(o, w*(o))``; see docs/concepts.md."""

from .base import Reduce, Solver, SolverInfo
from .finite_difference import FiniteDifference
from .first_order import FirstOrder
from .implicit import ConjugateGradient, ImplicitSolver, Neumann
from .linear import LinearSolveInfo, conjugate_gradient, neumann_series
from .unrolled import Unrolled

__all__ = [
    "ConjugateGradient",
    "FiniteDifference",
    "FirstOrder",
    "ImplicitSolver",
    "LinearSolveInfo",
    "Neumann",
    "Reduce",
    "Solver",
    "SolverInfo",
    "Unrolled",
    "conjugate_gradient",
    "neumann_series",
]
