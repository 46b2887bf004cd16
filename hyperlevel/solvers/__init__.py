"""Hypergradient solvers. Each computes or approximates ``d/do F(o, w*(o))``; see docs/concepts.md."""

from .base import Reduce, Solver, SolverInfo
from .dense import DENSE_JOINT_MAX_SIZE, DENSE_MAX_SIZE, Dense
from .finite_difference import FiniteDifference
from .first_order import FirstOrder
from .implicit import ConjugateGradient, ImplicitSolver, MinimalResidual, Neumann
from .linear import LinearSolveInfo, conjugate_gradient, minres, neumann_series
from .unrolled import Unrolled

__all__ = [
    "DENSE_JOINT_MAX_SIZE",
    "DENSE_MAX_SIZE",
    "ConjugateGradient",
    "Dense",
    "FiniteDifference",
    "FirstOrder",
    "ImplicitSolver",
    "LinearSolveInfo",
    "MinimalResidual",
    "Neumann",
    "Reduce",
    "Solver",
    "SolverInfo",
    "Unrolled",
    "conjugate_gradient",
    "minres",
    "neumann_series",
]
