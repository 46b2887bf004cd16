"""Phases and schedules: which levels are outer, inner or frozen, with which solver, until when."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .algorithms.base import Algorithm
from .errors import InvalidProblemError
from .hypergradient import default_solver
from .level import OptimizerFactory
from .solvers import Solver
from .solvers.registry import solver_type_message

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def cosine_restarts(period: int, period_mult: int = 1, eta_min: float = 0.0) -> SchedulerFactory:
    """Cosine annealing with warm restarts (SGDR), stepped once per phase step."""
    return lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=period, T_mult=period_mult, eta_min=eta_min
    )


@dataclass
class Converged:
    """Stop a phase when a watched level's parameters stop moving.

    Every ``window`` steps the parameters are compared with those ``window`` steps earlier; the phase has
    converged when ``||p_now - p_then|| <= tol * max(||p_then||, 1e-12)``. Only one snapshot is kept, so
    watching a large network costs one copy of it.
    """

    level: str
    tol: float = 1e-3
    window: int = 100
    _snapshot: Tensor | None = field(default=None, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    last_change: float = field(default=float("nan"), init=False)

    def __post_init__(self) -> None:
        if self.window < 1 or not self.tol > 0:
            raise InvalidProblemError(f"Converged needs window >= 1 and tol > 0, got {self.window}, {self.tol}")

    def update(self, flat_params: Tensor) -> bool:
        """Record the watched parameters after a step; ``True`` once converged."""
        self._count += 1
        if self._snapshot is None:
            self._snapshot = flat_params.detach().clone()
            self._count = 0
            return False
        if self._count < self.window:
            return False
        snapshot = self._snapshot.to(flat_params.device)  # a resumed snapshot is loaded on the CPU
        change = torch.linalg.vector_norm(flat_params - snapshot)
        scale = torch.linalg.vector_norm(snapshot).clamp_min(1e-12)
        self.last_change = float(change / scale)
        self._snapshot = flat_params.detach().clone()
        self._count = 0
        return self.last_change <= self.tol

    def state_dict(self) -> dict[str, Any]:
        return {"snapshot": self._snapshot, "count": self._count, "last_change": self.last_change}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._snapshot = state["snapshot"]
        self._count = int(state["count"])
        self.last_change = float(state["last_change"])

    def reset(self) -> None:
        self._snapshot, self._count, self.last_change = None, 0, float("nan")


@dataclass
class Phase:
    """One phase of a schedule: a bilevel sub-problem (or plain training) over some of the levels.

    Args:
        name: shown in logs and checkpoints.
        outer: levels updated with the hypergradient of the outer objective (may be empty: then the phase is
            plain training of ``inner``).
        inner: levels updated with their own gradient; several levels form one *joint* inner level.
        frozen: levels held constant. Levels named nowhere are frozen too; naming them documents intent.
        solver: hypergradient solver for this phase; by name: ``hyperlevel.solvers.get(name, **options)``.
            Default: the library's, :func:`hyperlevel.hypergradient.default_solver` for an inner size not known
            in advance (``ConjugateGradient(iterations=50)``, the exact implicit hypergradient). It assumes a
            (near-)stationary inner point and warns when the point is not; alternating training with one inner
            step per outer step usually wants a step-based solver such as ``FiniteDifference(inner_lr=...)`` or
            ``Unrolled``. Nested phases run it by the chord-step recursion; ``MinimalResidual`` or ``Dense``
            take the faster joint method (docs/nesting.md).
        inner_steps: inner optimizer steps per outer step.
        max_steps: outer steps at most.
        until: optional stop criterion (:class:`Converged`).
        optimizers: per-level optimizer factories for this phase (else each level's own, else Adam 1e-3).
        lr_schedulers: per-level scheduler factories (e.g. :func:`cosine_restarts`), stepped every phase step.
        outer_objective: whose objective the outer levels minimise (default: the outermost outer level's).
        inner_objective: whose objective the joint inner level minimises (default: its innermost level's).
        reuse_inner_gradient: let the first inner step reuse the inner gradient the solver already computed
            at the same point and batch (``FiniteDifference`` computes it for its probe), saving one forward and
            backward pass per step. That gradient is taken before the outer update, whereas alternating
            schemes take the inner step after it: off by default, so that the inner step sees the updated outer
            levels.
        nested: instead of one bilevel split, treat ``outer + inner`` as a nested chain (outermost first) and
            update each level with its exact nested hypergradient (:func:`hyperlevel.nested_hypergradient`);
            the innermost level takes plain gradient steps.
        method: a bilevel algorithm (:func:`hyperlevel.algorithms.get`, e.g. ``get("bome", outer_lr=1e-2,
            inner_lr=1e-1)``) that updates the outer and inner levels itself, one of its iterations per phase
            step; ``solver``, ``inner_steps`` and the levels' optimizers are then unused (the algorithm has its
            own step sizes). Its state (auxiliary variables) is saved in engine checkpoints.
    """

    name: str
    outer: Sequence[str]
    inner: Sequence[str]
    frozen: Sequence[str] = ()
    solver: Solver = field(default_factory=default_solver)
    inner_steps: int = 1
    max_steps: int = 1000
    until: Converged | None = None
    optimizers: Mapping[str, OptimizerFactory] = field(default_factory=dict)
    lr_schedulers: Mapping[str, SchedulerFactory] = field(default_factory=dict)
    outer_objective: str | None = None
    inner_objective: str | None = None
    reuse_inner_gradient: bool = False
    nested: bool = False
    method: Algorithm | None = None

    def __post_init__(self) -> None:
        self.outer, self.inner, self.frozen = list(self.outer), list(self.inner), list(self.frozen)
        if not self.inner:
            raise InvalidProblemError(f"phase {self.name!r}: needs at least one inner level")
        named = self.outer + self.inner + self.frozen
        dupes = sorted({n for n in named if named.count(n) > 1})
        if dupes:
            raise InvalidProblemError(f"phase {self.name!r}: levels {dupes} appear in more than one role")
        if self.inner_steps < 0 or self.max_steps < 1:
            raise InvalidProblemError(f"phase {self.name!r}: inner_steps >= 0 and max_steps >= 1 required")
        if not isinstance(self.solver, Solver):
            raise InvalidProblemError(f"phase {self.name!r}: {solver_type_message(self.solver)}")
        if self.nested and not self.outer:
            raise InvalidProblemError(f"phase {self.name!r}: a nested phase needs outer levels")
        if self.method is not None:
            if not isinstance(self.method, Algorithm):
                raise InvalidProblemError(
                    f"phase {self.name!r}: method must be a hyperlevel.algorithms.Algorithm (from "
                    f"hyperlevel.algorithms.get(name, outer_lr=..., inner_lr=...)), got {self.method!r}"
                )
            if not self.outer or self.nested:
                raise InvalidProblemError(f"phase {self.name!r}: a method phase needs outer levels and no nesting")

    @property
    def trained(self) -> list[str]:
        return self.outer + self.inner


@dataclass
class Schedule:
    """Phases run in order; a phase ends at ``max_steps`` or when its ``until`` criterion holds."""

    phases: Sequence[Phase]

    def __post_init__(self) -> None:
        self.phases = list(self.phases)
        if not self.phases:
            raise InvalidProblemError("a schedule needs at least one phase")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise InvalidProblemError(f"phase names must be unique, got {names}")

    def __len__(self) -> int:
        return len(self.phases)

    def __getitem__(self, i: int) -> Phase:
        return self.phases[i]

    def validate(self, level_names: Sequence[str]) -> None:
        known = set(level_names)
        for p in self.phases:
            for role, names in (("outer", p.outer), ("inner", p.inner), ("frozen", p.frozen)):
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise InvalidProblemError(
                        f"phase {p.name!r}: {role} levels {unknown} are not in the problem ({sorted(known)})"
                    )
            for what, name in (("outer_objective", p.outer_objective), ("inner_objective", p.inner_objective)):
                if name is not None and name not in known:
                    raise InvalidProblemError(f"phase {p.name!r}: {what} {name!r} is not a level")
            if p.until is not None and p.until.level not in known:
                raise InvalidProblemError(f"phase {p.name!r}: until watches unknown level {p.until.level!r}")
            order = list(level_names)
            if p.nested:
                chain = p.outer + p.inner
                if [order.index(n) for n in chain] != sorted(order.index(n) for n in chain):
                    raise InvalidProblemError(f"phase {p.name!r}: a nested chain must list levels outermost first")
