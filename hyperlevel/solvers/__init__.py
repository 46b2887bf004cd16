"""Hypergradient solvers. Each computes or approximates ``d/do F(o, w*(o))``; see docs/concepts.md.

Build one by name with ``get(name, **options)`` (names: ``available()``); each solver's ``declaration`` says which
function's gradient it computes (:mod:`hyperlevel.solvers.target`).
"""

from ..typing import Reduce
from .aggregated import Aggregated
from .base import Solver, SolverInfo
from .cg_normal import CGNormal
from .dense import DENSE_JOINT_MAX_SIZE, DENSE_MAX_SIZE, Dense
from .finite_difference import FiniteDifference
from .first_order import FirstOrder
from .fixed_point import FixedPoint
from .gmres import GMRES, gmres
from .iad import InitialisationAuxiliary
from .implicit import ConjugateGradient, ImplicitSolver, MinimalResidual, Neumann
from .linear import LinearSolveInfo, conjugate_gradient, minres, neumann_series
from .nystrom import Nystrom
from .preconditioners import Jacobi, NystromPreconditioner
from .ptt import PessimisticTruncation
from .registry import SOLVERS, available, get, options, register
from .target import Declaration, ImplicitTarget, PartialTarget, Target, UnrolledTarget
from .unrolled import Unrolled
from .unrolled_recompute import UnrolledRecompute
from .zero_order import ZeroOrder

__all__ = [
    "DENSE_JOINT_MAX_SIZE",
    "DENSE_MAX_SIZE",
    "Dense",
    "GMRES",
    "SOLVERS",
    "Aggregated",
    "CGNormal",
    "FixedPoint",
    "InitialisationAuxiliary",
    "Jacobi",
    "Nystrom",
    "NystromPreconditioner",
    "PessimisticTruncation",
    "UnrolledRecompute",
    "ZeroOrder",
    "gmres",
    "ConjugateGradient",
    "Declaration",
    "FiniteDifference",
    "FirstOrder",
    "ImplicitSolver",
    "ImplicitTarget",
    "LinearSolveInfo",
    "MinimalResidual",
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
    "minres",
    "get",
    "neumann_series",
    "options",
    "register",
]
