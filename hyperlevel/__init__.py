"""hyperlevel: nested (bilevel, trilevel, N-level) optimization for PyTorch, with verified hypergradients."""

from . import (
    algorithms,
    checkpoint,
    distributed,
    hvp,
    optimality,
    precision,
    runfolder,
    signals,
    solvers,
    spectral,
    testing,
)
from .algorithms import OptimizeResult, optimize
from .callbacks import CSVLogger, ProgressBar, TensorBoardLogger
from .data import ResumableLoader
from .engine import Callback, Engine, RunSummary, StepRecord
from .errors import (
    ConvergenceError,
    ConvergenceWarning,
    DivergenceWarning,
    HyperlevelError,
    HyperlevelWarning,
    InnerOptimalityError,
    InnerOptimalityWarning,
    InvalidProblemError,
    NonFiniteError,
    SkippedStepsWarning,
    SolverDivergedError,
)
from .hypergradient import hypergradient
from .inner import InnerSolveInfo, solve_inner
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
    "DivergenceWarning",
    "Engine",
    "HyperlevelError",
    "HyperlevelWarning",
    "InnerOptimalityError",
    "InnerOptimalityWarning",
    "InnerSolveInfo",
    "InvalidProblemError",
    "Level",
    "LossWeights",
    "NonFiniteError",
    "OptimizeResult",
    "Phase",
    "Precision",
    "Problem",
    "ProgressBar",
    "ResumableLoader",
    "RunSummary",
    "Schedule",
    "SkippedStepsWarning",
    "SolverDivergedError",
    "SolverInfo",
    "StepRecord",
    "TensorBoardLogger",
    "adam",
    "algorithms",
    "checkpoint",
    "cosine_restarts",
    "distributed",
    "hvp",
    "hypergradient",
    "nested_hypergradient",
    "optimality",
    "optimize",
    "precision",
    "prefixed",
    "runfolder",
    "signals",
    "sgd",
    "solve_inner",
    "solvers",
    "spectral",
    "testing",
]
