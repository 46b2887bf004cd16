"""What a solver computes: its declared target (the function whose gradient it returns) and how it gets there.

Every solver declares a :class:`Declaration`: the :class:`Target` (a scalar function of the outer parameters at
the given point: the implicit objective ``F(o, w*(o))``, the K-step unrolled objective ``F(o, w_K(o))``, the
partial objective ``F(o, w)``, ...), whether it computes that gradient exactly or approximates it and how, and
which N-level path :func:`hyperlevel.nested_hypergradient` may take with it. ``hyperlevel.testing``,
``nested_hypergradient``, the engine, the benchmarks and the examples dispatch on this declaration, never on solver
classes, so a new solver is one file plus one line in :mod:`hyperlevel.solvers.registry`.

A target's :meth:`Target.objective` is a *reference* implementation: plain, graph-free evaluations meant for
central finite differences on small float64 problems (``hyperlevel.testing.check_hypergradient``), not for speed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from .._flat import flatten, unflatten
from ..typing import PairLoss, Params, ReducedObjective

#: a fixed-point map ``Phi(outer, inner) -> inner`` whose fixed point ``w = Phi(o, w)`` is the inner solution
FixedPointMap = Callable[[Params, Params], Params]
#: the N-level path of nested_hypergradient a solver supports (None: two levels only)
NestedPath = Literal["implicit", "joint", "unrolled", "partial"]


class Target(ABC):
    """The scalar function of the outer parameters whose gradient a solver computes or approximates."""

    #: a short name for reports and tables ("implicit", "unrolled", "partial", ...)
    kind: ClassVar[str] = ""

    @abstractmethod
    def objective(self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params) -> ReducedObjective:
        """``o -> target(o)`` around the given point ``(outer, inner)`` (graph-free; for finite differences)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: the target as a formula."""


@dataclass(frozen=True)
class Declaration:
    """What a solver approximates and how.

    Attributes:
        target: the function of the outer parameters whose gradient the solver returns (or approximates).
        exact: ``True`` when the solver computes the target's gradient exactly (up to rounding and its own stopping
            tolerance), ``False`` when it approximates it (finite differences, sampling, low rank, truncation).
        how: one phrase: the method (for instance "CG on H x = d_w F", "antithetic Gaussian sampling").
        nested: the N-level path :func:`hyperlevel.nested_hypergradient` takes for ``N > 2`` (``"implicit"``:
            chord-step responses with the solver's symmetric ``linear_solve``; ``"joint"``: one saddle-point solve
            of the Lagrangian system, docs/nesting.md; ``"unrolled"``: the target's
            ``steps`` and ``inner_lr`` at every level; ``"partial"``: the top loss's partial derivative), or
            ``None`` when the solver is defined for two levels only.
    """

    target: Target
    exact: bool
    how: str
    nested: NestedPath | None = None

    def describe(self) -> str:
        return f"{'exactly' if self.exact else 'approximately'} {self.target.describe()} ({self.how})"


# ---------------------------------------------------------------------------------------------- reference solves
def _as_inner(names: list[str], like: list[Tensor], w: Tensor) -> Params:
    return dict(zip(names, unflatten(w, like), strict=True))


def newton_solve(
    inner_loss: PairLoss, o: Params, w_start: Mapping[str, Tensor], steps: int = 30, tol: float = 1e-13
) -> dict[str, Tensor]:
    """Re-solve the inner problem for fixed outer parameters by Newton's method with dense Hessians."""
    like = [v.detach().double() for v in w_start.values()]
    names = list(w_start)
    w = flatten(like).detach().clone()
    for _ in range(steps):
        v = w.clone().requires_grad_()
        g = torch.autograd.grad(inner_loss(o, _as_inner(names, like, v)), v)[0]
        if torch.linalg.vector_norm(g) <= tol * max(1.0, float(torch.linalg.vector_norm(w))):
            break
        H = torch.autograd.functional.hessian(lambda u: inner_loss(o, _as_inner(names, like, u)), w)
        w = w - torch.linalg.solve(H, g)
    return {k: t.detach() for k, t in _as_inner(names, like, w).items()}


def fixed_point_solve(
    fixed_point_map: FixedPointMap, o: Params, w_start: Mapping[str, Tensor], steps: int = 30, tol: float = 1e-13
) -> dict[str, Tensor]:
    """Solve ``w = Phi(o, w)`` for fixed outer parameters by Newton's method on ``w - Phi(o, w)`` (dense)."""
    like = [v.detach().double() for v in w_start.values()]
    names = list(w_start)
    w = flatten(like).detach().clone()

    def residual(u: Tensor) -> Tensor:
        mapped = fixed_point_map(o, _as_inner(names, like, u))
        return u - flatten([mapped[k].reshape(-1) for k in names])

    for _ in range(steps):
        r = residual(w).detach()
        if torch.linalg.vector_norm(r) <= tol * max(1.0, float(torch.linalg.vector_norm(w))):
            break
        J = torch.autograd.functional.jacobian(residual, w)
        w = w - torch.linalg.solve(J, r)
    return {k: t.detach() for k, t in _as_inner(names, like, w).items()}


def inner_gradient_step(inner_loss: PairLoss, o: Params, w: Params, lr: float) -> Params:
    """``w - lr * d_w G(o, w)`` without a graph to ``o`` (reference trajectories)."""
    ws = {k: v.detach().requires_grad_() for k, v in w.items()}
    with torch.enable_grad():
        g = torch.autograd.grad(inner_loss(o, ws), list(ws.values()), allow_unused=True)
    return {k: (v - lr * gk if gk is not None else v).detach() for (k, v), gk in zip(w.items(), g, strict=True)}


# ------------------------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class ImplicitTarget(Target):
    """``F(o, w*(o))`` with ``w*(o)`` the inner minimiser near the given point (or, with ``fixed_point_map``, the
    fixed point ``w* = Phi(o, w*)``)."""

    fixed_point_map: FixedPointMap | None = None
    kind: ClassVar[str] = "implicit"

    def objective(self, outer_loss, inner_loss, outer, inner):
        if self.fixed_point_map is None:
            return lambda o: outer_loss(o, newton_solve(inner_loss, o, inner))
        return lambda o: outer_loss(o, fixed_point_solve(self.fixed_point_map, o, inner))

    def describe(self) -> str:
        where = "w* = Phi(o, w*)" if self.fixed_point_map is not None else "w* = argmin_w G(o, w)"
        return f"d/do F(o, w*(o)), {where}"


@dataclass(frozen=True)
class UnrolledTarget(Target):
    """``F(o, w_K(o))`` with ``w_{t+1} = w_t - inner_lr * d_w G(o, w_t)`` from ``start`` (default: the given inner
    point); the first ``frozen_steps`` steps are taken at the given outer point and held constant (truncated
    back-propagation differentiates only the last ``steps - frozen_steps``)."""

    steps: int
    inner_lr: float
    frozen_steps: int = 0
    start: Params | None = None
    kind: ClassVar[str] = "unrolled"

    def objective(self, outer_loss, inner_loss, outer, inner):
        w0 = {k: v.detach().double() for k, v in (self.start if self.start is not None else inner).items()}
        for _ in range(self.frozen_steps):
            w0 = inner_gradient_step(inner_loss, outer, w0, self.inner_lr)

        def value(o: Params) -> Tensor:
            w = w0
            for _ in range(self.steps - self.frozen_steps):
                w = inner_gradient_step(inner_loss, o, w, self.inner_lr)
            return outer_loss(o, w)

        return value

    def describe(self) -> str:
        trunc = f", first {self.frozen_steps} held constant" if self.frozen_steps else ""
        start = " from the solver's own initialisation" if self.start is not None else ""
        return f"d/do F(o, w_{self.steps}(o)), {self.steps} gradient steps of size {self.inner_lr}{start}{trunc}"


@dataclass(frozen=True)
class PartialTarget(Target):
    """``F(o, w)`` at the given inner point held constant."""

    kind: ClassVar[str] = "partial"

    def objective(self, outer_loss, inner_loss, outer, inner):
        w = {k: v.detach().double() for k, v in inner.items()}
        return lambda o: outer_loss(o, w)

    def describe(self) -> str:
        return "the partial derivative d_o F(o, w) at the given w"


__all__ = [
    "Declaration",
    "FixedPointMap",
    "ImplicitTarget",
    "PartialTarget",
    "Target",
    "UnrolledTarget",
    "fixed_point_solve",
    "inner_gradient_step",
    "newton_solve",
]
