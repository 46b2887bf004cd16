"""The solver registry: one table from a solver's name (its ``method``) to its class.

``get("cg", iterations=20)`` builds a solver by name, ``available()`` lists the names. Benchmarks, the solver names
of configuration files and of :func:`hyperlevel.algorithms.get` all go through it; ``Phase`` and ``hypergradient``
take the built object (``solver=get("cg")``). Adding a solver is one file (a :class:`~hyperlevel.solvers.Solver` subclass with ``method`` and a
``declaration``) plus one line in :data:`SOLVERS`; users can add their own at run time with :func:`register`.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import InvalidProblemError
from .aggregated import Aggregated
from .base import Solver
from .cg_normal import CGNormal
from .dense import Dense
from .finite_difference import FiniteDifference
from .first_order import FirstOrder
from .fixed_point import FixedPoint
from .gmres import GMRES
from .iad import InitialisationAuxiliary
from .implicit import ConjugateGradient, MinimalResidual, Neumann
from .nystrom import Nystrom
from .ptt import PessimisticTruncation
from .unrolled import Unrolled
from .unrolled_recompute import UnrolledRecompute
from .zero_order import ZeroOrder

#: name -> solver class; the name is the class's ``method``. Order: the order of tables and plots.
SOLVERS: dict[str, type[Solver]] = {
    "cg": ConjugateGradient,
    "neumann": Neumann,
    "finite_difference": FiniteDifference,
    "unrolled": Unrolled,
    "first_order": FirstOrder,
    "nystrom": Nystrom,
    "zero_order": ZeroOrder,
    "fixed_point": FixedPoint,
    "gmres": GMRES,
    "cg_normal": CGNormal,
    "unrolled_recompute": UnrolledRecompute,
    "ptt": PessimisticTruncation,
    "gda": Aggregated,
    "iad": InitialisationAuxiliary,
    "dense": Dense,
    "minres": MinimalResidual,
}


def available() -> list[str]:
    """The registered solver names, in registry order."""
    return list(SOLVERS)


def solver_class(name: str) -> type[Solver]:
    """The class registered under ``name``; an unknown name raises :class:`InvalidProblemError` listing the names."""
    if not isinstance(name, str) or name not in SOLVERS:
        raise InvalidProblemError(f"unknown solver {name!r}; available: {', '.join(available())}")
    return SOLVERS[name]


def options(name: str) -> dict[str, Any]:
    """The options ``get(name, ...)`` accepts, with their defaults (``inspect.Parameter.empty`` when required)."""
    params = inspect.signature(solver_class(name).__init__).parameters
    return {
        k: p.default for k, p in params.items()
        if k != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def get(name: str, **opts: Any) -> Solver:
    """Build the solver registered under ``name`` with ``opts``.

    Raises :class:`InvalidProblemError` for an unknown name (listing the available ones) or an option the solver
    does not accept (listing its options); the solver's own checks (``ValueError``) pass through.

    Example:
        >>> hyperlevel.solvers.get("neumann", iterations=200, alpha=0.05)
    """
    cls = solver_class(name)
    accepted = options(name)
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise InvalidProblemError(f"solver {name!r} does not accept {unknown}; its options: {list(accepted)}")
    return cls(**opts)


def solver_type_message(solver: object) -> str:
    """The error text for something passed as a solver that is not one (a name gets a pointer to :func:`get`)."""
    hint = f"; build it by name with hyperlevel.solvers.get({solver!r})" if isinstance(solver, str) else ""
    return f"solver must be a hyperlevel.solvers.Solver (e.g. ConjugateGradient(iterations=50)), got {solver!r}{hint}"


def register(name: str, cls: type[Solver], *, replace: bool = False) -> None:
    """Add a solver class under ``name`` (for solvers defined outside hyperlevel)."""
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise InvalidProblemError(f"register({name!r}, ...): expected a Solver subclass, got {cls!r}")
    if name in SOLVERS and not replace and SOLVERS[name] is not cls:
        raise InvalidProblemError(f"a solver is already registered as {name!r} ({SOLVERS[name].__name__}); "
                                  "pass replace=True to override it")
    SOLVERS[name] = cls


__all__ = ["SOLVERS", "available", "get", "options", "register", "solver_class", "solver_type_message"]
