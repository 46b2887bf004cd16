"""Trajectory aggregation of the upper and lower gradients (BDA, Liu et al. ICML 2020; BOAT's GDA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..functional import check_outer_used, evaluate, grads, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from ._trajectory import loss_gradients
from .base import Solver, SolverInfo, reduce_list
from .target import Declaration, Target


def aggregation_weight(alpha: float, k: int) -> float:
    """The outer gradient's share at step ``k`` (0-based): ``alpha / (k + 1)``, vanishing along the trajectory."""
    return alpha / (k + 1)


def aggregated_step(outer_loss: PairLoss, inner_loss: PairLoss, o: Params, w: Params, k: int, inner_lr: float,
                    outer_lr: float, alpha: float, *, create_graph: bool, reduce: Reduce | None) -> Params:
    """``w - [a_k outer_lr d_w F + (1 - a_k) inner_lr d_w G]`` at ``(o, w)``."""
    a = aggregation_weight(alpha, k)
    _, g = loss_gradients(inner_loss, o, w, create_graph=create_graph, reduce=reduce)
    _, f = loss_gradients(outer_loss, o, w, create_graph=create_graph, reduce=reduce, what="outer_loss",
                          required=False)
    return {n: p - (a * outer_lr) * fk - ((1 - a) * inner_lr) * gk
            for (n, p), fk, gk in zip(w.items(), f, g, strict=True)}


@dataclass(frozen=True)
class AggregatedTarget(Target):
    """``F(o, w_K(o))`` along ``K`` aggregated steps from the given inner point."""

    steps: int
    inner_lr: float
    outer_lr: float
    alpha: float
    kind: ClassVar[str] = "aggregated_unrolled"

    def objective(self, outer_loss, inner_loss, outer, inner):
        def value(o: Params) -> Tensor:
            w = {k: v.detach().double() for k, v in inner.items()}
            for k in range(self.steps):
                ws = {n: p.detach().requires_grad_() for n, p in w.items()}
                with torch.enable_grad():
                    w = {n: p.detach() for n, p in aggregated_step(
                        outer_loss, inner_loss, o, ws, k, self.inner_lr, self.outer_lr, self.alpha,
                        create_graph=False, reduce=None).items()}
            return outer_loss(o, w)

        return value

    def describe(self) -> str:
        return (f"d/do F(o, w_{self.steps}(o)), steps w - [a_k {self.outer_lr} d_w F + (1 - a_k) {self.inner_lr} "
                f"d_w G], a_k = {self.alpha}/(k+1)")


class Aggregated(Solver):
    """Gradient through ``K`` inner steps that aggregate the outer and the inner descent directions.

    ``w_{k+1} = w_k - [a_k outer_lr d_w F(o, w_k) + (1 - a_k) inner_lr d_w G(o, w_k)]`` with
    ``a_k = alpha / (k + 1)`` (Bi-level Descent Aggregation): the early steps lean towards the outer objective, which
    selects, among several inner minimisers, the one best for the outer loss (BDA's answer to inner problems
    without a unique solution, where the implicit hypergradient is undefined); the weight vanishes so the
    trajectory still converges to an inner solution. Returns ``d/do F(o, w_K(o))`` through the whole trajectory
    (reverse mode). Cost: ``2 K`` gradient evaluations forward (inner and outer), ``K`` double-backward products;
    memory O(K) step graphs. ``alpha = 0`` is ``Unrolled(K, inner_lr)``.

    Args:
        steps: number of inner steps ``K``.
        inner_lr: step on the inner gradient (BDA's ``s_l``).
        outer_lr: step on the outer gradient (BDA's ``s_u``; default ``inner_lr``).
        alpha: initial aggregation weight ``a_0`` in ``[0, 1]``.
    """

    method = "gda"

    def __init__(self, steps: int = 10, inner_lr: float = 1e-2, outer_lr: float | None = None, alpha: float = 0.5):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.steps = int(steps)
        self.inner_lr = float(inner_lr)
        self.outer_lr = float(inner_lr if outer_lr is None else outer_lr)
        self.alpha = float(alpha)

    @property
    def declaration(self) -> Declaration:
        return Declaration(AggregatedTarget(self.steps, self.inner_lr, self.outer_lr, self.alpha), exact=True,
                           how="reverse mode through the aggregated trajectory")

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        w = dict(inner)
        for k in range(self.steps):
            w = aggregated_step(outer_loss, inner_loss, outer, w, k, self.inner_lr, self.outer_lr, self.alpha,
                                create_graph=True, reduce=reduce)
        value = evaluate(outer_loss, outer, w, "outer_loss")
        result = grads(value, outer)
        check_outer_used(outer, result, None)
        out = reduce_list(reduce, zeros_for_none(result, outer))
        info = SolverInfo(solver=type(self).__name__, iterations=self.steps, gradient_evals=2 * self.steps + 1,
                          hvp_evals=2 * self.steps, outer_loss=float(value.detach()))
        return out, info
