"""DARTS-style finite-difference hypergradient: one unrolled inner step, its coupled term by a probe of the outer
variables."""

from __future__ import annotations

import torch
from torch import Tensor

from .._flat import flatten, unflatten
from ..functional import (
    check_outer_used,
    evaluate,
    grads,
    inner_gradient,
    outer_partials,
    total_derivative,
    zeros_for_none,
)
from ..typing import PairLoss, Params, Reduce
from .base import Solver, SolverInfo, blow_up, reduce_list
from .target import Declaration, UnrolledTarget
from .unrolled import divergence_message


class FiniteDifference(Solver):
    """One-step unrolled hypergradient with its second-order term by central finite differences.

    The exact quantity approximated is the gradient of ``F(o, w_hat)`` with ``w_hat = w - inner_lr * d_w G(o, w)``:

        d_o F(o, w_hat) - inner_lr * (d_o d_w G)(o, w) v,    v = d_w F(o, w_hat),

    and the mixed product is replaced by ``(d_o G(o, w + eps v) - d_o G(o, w - eps v)) / (2 eps)`` with
    ``eps = epsilon / ||v||`` (DARTS' scaling, so ``epsilon`` is the length of the probe in parameter space).
    The probe direction is the *outer* objective's gradient at the unrolled point, as in the DARTS derivation; a
    probe along the lower objective's gradient (as some write it) does not approximate the coupled term
    (docs/concepts.md). Cost: 5 gradient evaluations and no Hessian-vector product; error ``O(epsilon^2)``.

    Args:
        inner_lr: the step of the one-step unrolled inner update (usually the inner level's learning rate).
        epsilon: length of the finite-difference probe (DARTS uses 0.01).
        check_divergence: evaluate the inner loss after the unrolled step (one forward pass, no backward) and
            report ``converged=False`` with a :class:`~hyperlevel.DivergenceWarning` when the step increased it
            (``inner_lr`` too large for the inner loss).
    """

    method = "finite_difference"

    def __init__(self, inner_lr: float = 1e-2, epsilon: float = 1e-2, check_divergence: bool = True):
        if inner_lr < 0:
            raise ValueError(f"inner_lr must be >= 0, got {inner_lr}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be positive, got {epsilon}")
        self.inner_lr = float(inner_lr)
        self.epsilon = float(epsilon)
        self.check_divergence = bool(check_divergence)

    @property
    def declaration(self) -> Declaration:
        return Declaration(UnrolledTarget(1, self.inner_lr), exact=False,
                           how=f"mixed term by central finite differences, probe length {self.epsilon}")

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        names = list(inner)
        shapes = list(inner.values())
        with torch.no_grad():
            w = flatten([p.detach() for p in inner.values()])
        g_value = evaluate(inner_loss, outer, inner, "inner_loss")
        g = flatten(inner_gradient(lambda o, i: g_value, outer, inner, create_graph=False)).detach()
        if reduce is not None:
            g = reduce(g)
        w_hat = {n: t.detach().requires_grad_() for n, t in zip(names, unflatten(w - self.inner_lr * g, shapes))}
        f_value, direct, d_inner = outer_partials(outer_loss, outer, w_hat)
        diverged = False
        if self.check_divergence:  # one forward pass: did the unrolled step increase the inner loss?
            stepped = evaluate(inner_loss, outer, w_hat, "inner_loss")
            diverged, g0, g1 = blow_up(g_value, stepped, reduce=reduce)
        v = flatten(zeros_for_none(d_inner, shapes))
        if reduce is not None:
            v = reduce(v)
        v_norm = torch.linalg.vector_norm(v)
        info = SolverInfo(
            solver=type(self).__name__, iterations=1, gradient_evals=3, outer_loss=float(f_value.detach()),
            inner_gradient=(float(g_value.detach()), g),
        )
        coupled: list[Tensor | None] = [None] * len(outer)
        if v_norm > 0 and self.inner_lr > 0:
            eps = self.epsilon / v_norm
            sides = []
            for sign in (1.0, -1.0):
                probe = {n: t for n, t in zip(names, unflatten(w + sign * eps * v, shapes))}
                value = evaluate(inner_loss, outer, probe, "inner_loss")
                sides.append(grads(value, outer))
            coupled = [
                None if a is None else (a - b) / (2 * eps) for a, b in zip(sides[0], sides[1], strict=True)
            ]
            info.gradient_evals += 2
            info.extra["eps"] = float(eps)
        check_outer_used(outer, direct, coupled if v_norm > 0 else [True] * len(outer))  # type: ignore[list-item]
        if diverged:
            info.converged, info.diverged = False, True
            info.message = divergence_message(
                f"FiniteDifference(inner_lr={self.inner_lr})", "inner_lr", self.inner_lr, g0, g1, [], inner_loss,
                outer, inner, reduce,
            )
        return reduce_list(reduce, total_derivative(direct, coupled, outer, self.inner_lr)), info
