"""hyperlevel: nested (bilevel, trilevel, N-level) optimization for PyTorch, with verified hypergradients."""

from . import checkpoint, distributed, hvp, precision, runfolder, signals, solvers, testing
from .callbacks import CSVLogger, ProgressBar, TensorBoardLogger
from .data import ResumableLoader
from .engine import Callback, Engine, RunSummary, StepRecord
from .errors import (
    ConvergenceError,
    ConvergenceWarning,
    HyperlevelError,
    InvalidProblemError,
    NonFiniteError,
    SolverDivergedError,
)
from .hypergradient import hypergradient
from .level import Level, adam, prefixed, sgd
from .nested import nested_hypergradient
from .precision import Precision
from .problem import Problem
from .schedule import Converged, Phase, Schedule, cosine_restarts
from .solvers import SolverInfo
from .weighting import LossWeights

__version__ = "0.1.0"

__all__ = [
    "CSVLogger",
    "Callback",
    "Converged",
    "ConvergenceError",
    "ConvergenceWarning",
    "Engine",
    "HyperlevelError",
    "InvalidProblemError",
    "Level",
    "LossWeights",
    "NonFiniteError",
    "Phase",
    "Precision",
    "Problem",
    "ProgressBar",
    "ResumableLoader",
    "RunSummary",
    "Schedule",
    "SolverDivergedError",
    "SolverInfo",
    "StepRecord",
    "TensorBoardLogger",
    "adam",
    "checkpoint",
    "cosine_restarts",
    "distributed",
    "hvp",
    "hypergradient",
    "nested_hypergradient",
    "precision",
    "prefixed",
    "runfolder",
    "signals",
    "sgd",
    "solvers",
    "testing",
]
