"""hyperlevel: nested (bilevel, trilevel, N-level) optimization for PyTorch, with verified hypergradients."""

from . import solvers
from .errors import (
    ConvergenceError,
    ConvergenceWarning,
    HyperlevelError,
    InvalidProblemError,
    NonFiniteError,
    SolverDivergedError,
)
from .hypergradient import hypergradient
from .nested import nested_hypergradient
from .solvers import SolverInfo

__version__ = "0.1.0"

__all__ = [
    "ConvergenceError",
    "ConvergenceWarning",
    "HyperlevelError",
    "InvalidProblemError",
    "NonFiniteError",
    "SolverDivergedError",
    "SolverInfo",
    "hypergradient",
    "nested_hypergradient",
    "solvers",
]
