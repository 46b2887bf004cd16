"""Hypergradient solvers by name, for ``method="implicit"``.

Uses ``hyperlevel.solvers.get`` (the solver registry) when it exists; until then a small table of the solvers
this package ships. Either way an unknown name is an error that lists the known ones.
"""

from __future__ import annotations

from typing import Any

from .. import solvers
from ..errors import InvalidProblemError
from ..solvers import ConjugateGradient, FiniteDifference, FirstOrder, Neumann, Solver, Unrolled


def _table(inner_lr: float) -> dict[str, Any]:
    return {
        "cg": lambda: ConjugateGradient(iterations=20, warm_start=True, on_nonconvergence="ignore"),
        "neumann": lambda: Neumann(iterations=50, alpha=inner_lr, on_nonconvergence="ignore"),
        "unrolled": lambda: Unrolled(steps=20, inner_lr=inner_lr),
        "finite_difference": lambda: FiniteDifference(inner_lr=inner_lr),
        "first_order": FirstOrder,
    }


def resolve_solver(solver: Solver | str, *, inner_lr: float, options: dict[str, Any] | None = None) -> Solver:
    """A solver object as given, or the named one: with ``options``, built by the solver registry with exactly
    those; without, with defaults suited to running inside a loop (CG warm-started and silent when capped, the
    step-based solvers using the method's ``inner_lr``)."""
    if isinstance(solver, Solver):
        return solver
    if not isinstance(solver, str):
        raise InvalidProblemError(f"solver must be a hyperlevel solver or a solver name, got {solver!r}")
    table = _table(inner_lr)
    registry_get = getattr(solvers, "get", None)
    if solver in table and not options:
        return table[solver]()
    if registry_get is not None:
        return registry_get(solver, **(options or {}))
    raise InvalidProblemError(f"unknown solver {solver!r}; available: {sorted(table)}")
