"""Pessimistic trajectory truncation (PTT; Liu et al., "Towards gradient-based bilevel optimization with
non-convex followers and beyond", NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..functional import check_outer_used, evaluate, grads, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from ._trajectory import descend, detached, loss_gradients
from .base import Solver, SolverInfo, reduce_list
from .target import Declaration, Target, inner_gradient_step


@dataclass(frozen=True)
class PessimisticTarget(Target):
    """``max_{1 <= k <= K} F(o, w_k(o))`` along ``K`` plain gradient steps from the given inner point."""

    steps: int
    inner_lr: float
    kind: ClassVar[str] = "pessimistic_unrolled"

    def objective(self, outer_loss, inner_loss, outer, inner):
        def value(o: Params) -> Tensor:
            w = {k: v.detach().double() for k, v in inner.items()}
            best = None
            for _ in range(self.steps):
                w = inner_gradient_step(inner_loss, o, w, self.inner_lr)
                f = outer_loss(o, w)
                best = f if best is None or f > best else best
            return best

        return value

    def describe(self) -> str:
        return f"d/do max_(k<={self.steps}) F(o, w_k(o)), gradient steps of size {self.inner_lr}"


class PessimisticTruncation(Solver):
    """Gradient through the inner trajectory truncated at its *worst* iterate for the outer loss.

    Runs ``K`` gradient steps from the given inner point without a graph, picks ``k* = argmax_k F(o, w_k)``, and
    returns ``d/do F(o, w_{k*}(o))`` through the first ``k*`` steps, which is the gradient of the pessimistic
    objective ``max_k F(o, w_k(o))`` wherever the maximiser is unique. Liu et al. show this keeps the upper level
    safe when the follower (inner problem) is non-convex and its trajectory has not settled; it also shortens the
    back-propagation to ``k*`` steps. Cost: ``K + k*`` gradient evaluations and ``K`` outer-loss evaluations
    forward, ``k*`` HVPs backward; memory ``O(k*)`` step graphs. ``info.extra["selected_step"]`` is ``k*``.

    Args:
        steps: number of inner steps ``K``.
        inner_lr: inner step size.
    """

    method = "ptt"

    def __init__(self, steps: int = 10, inner_lr: float = 1e-2):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.inner_lr = float(inner_lr)

    @property
    def declaration(self) -> Declaration:
        return Declaration(PessimisticTarget(self.steps, self.inner_lr), exact=True,
                           how="argmax over the trajectory, reverse mode through the first k* steps")

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        w = detached(inner)
        values = []
        for _ in range(self.steps):
            w = descend(w, loss_gradients(inner_loss, outer, w, create_graph=False, reduce=reduce)[1],
                        self.inner_lr, track=False)
            with torch.no_grad():  # values only
                f = outer_loss(outer, w).detach().reshape(())
            values.append(f if reduce is None else reduce(f))
        selected = int(torch.stack(values).argmax()) + 1
        w = dict(inner)
        for _ in range(selected):
            w = descend(w, loss_gradients(inner_loss, outer, w, create_graph=True, reduce=reduce)[1],
                        self.inner_lr, track=True)
        value = evaluate(outer_loss, outer, w, "outer_loss")
        result = grads(value, outer)
        check_outer_used(outer, result, None)
        out = reduce_list(reduce, zeros_for_none(result, outer))
        info = SolverInfo(solver=type(self).__name__, iterations=self.steps,
                          gradient_evals=self.steps + selected + 1, hvp_evals=selected,
                          outer_loss=float(value.detach()), extra={"selected_step": float(selected)})
        return out, info
