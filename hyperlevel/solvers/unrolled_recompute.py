"""Reverse mode through unrolled inner steps that recomputes the trajectory instead of storing its graph."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..functional import check_outer_used, evaluate, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from ._trajectory import descend, detached, loss_gradients
from .base import Solver, SolverInfo, reduce_list
from .target import Declaration, UnrolledTarget


class UnrolledRecompute(Solver):
    """``d/do F(o, w_K(o))`` through ``K`` gradient steps, like ``Unrolled``, in bounded memory.

    ``Unrolled`` keeps the autograd graph of all ``K`` steps (memory O(K) graphs). This solver runs the reverse pass
    by hand, one step at a time: the forward pass keeps only ``segments`` iterates (no graphs); the reverse pass
    recomputes each segment's iterates from its stored start, then walks back through it, rebuilding one step's
    graph ``w_{t+1} = w_t - lr d_w G(o, w_t)`` at a time and propagating the adjoint ``a <- a - lr H_t a`` while
    accumulating ``-lr (d_o d_w G)_t^T a``. Same quantity as ``Unrolled(steps, inner_lr)`` up to rounding. Cost:
    ``3 K - S`` gradient evaluations (``K`` forward, ``K - S`` to recompute the segments, ``K`` with a graph) and
    ``K`` backward passes (one HVP and one mixed product each); memory ``S + K / S`` iterates and one step's graph
    for ``S`` segments (default ``ceil(sqrt(K))``: O(sqrt K), against ``Unrolled``'s K step graphs).

    Args:
        steps: number of inner steps ``K``.
        inner_lr: inner step size.
        segments: number of stored iterates (``None``: ``ceil(sqrt(steps))``).
    """

    method = "unrolled_recompute"

    def __init__(self, steps: int = 10, inner_lr: float = 1e-2, segments: int | None = None):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if segments is not None and not 1 <= segments <= steps:
            raise ValueError(f"segments must be in [1, steps={steps}], got {segments}")
        self.steps = int(steps)
        self.inner_lr = float(inner_lr)
        self.segments = segments

    @property
    def declaration(self) -> Declaration:
        return Declaration(UnrolledTarget(self.steps, self.inner_lr), exact=True,
                           how="hand-written reverse mode, trajectory recomputed per segment")

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        steps, lr = self.steps, self.inner_lr
        length = math.ceil(steps / (self.segments or math.ceil(math.sqrt(steps))))
        starts = list(range(0, steps, length))
        stored: dict[int, Params] = {}
        w = detached(inner)
        gradient_evals = 0

        def advance(w: Params) -> Params:
            return descend(w, loss_gradients(inner_loss, outer, w, create_graph=False, reduce=reduce)[1], lr,
                           track=False)

        for t in range(steps):
            if t in starts:
                stored[t] = {n: p.detach() for n, p in w.items()}
            w = advance(w)
            gradient_evals += 1
        value = evaluate(outer_loss, outer, w, "outer_loss")
        direct = list(torch.autograd.grad(value, [*outer.values(), *w.values()], allow_unused=True))
        total = zeros_for_none(direct[: len(outer)], outer)
        adjoint = zeros_for_none(direct[len(outer):], w)
        coupled = [False] * len(outer)
        adjoint = reduce_list(reduce, adjoint)
        for start in reversed(starts):
            end = min(start + length, steps)
            iterates = [detached(stored[start])]
            for _ in range(start, end - 1):  # recompute the segment's iterates (no graphs)
                iterates.append(advance(iterates[-1]))
                gradient_evals += 1
            for x in reversed(iterates):  # one step's graph at a time
                # local step graph; the adjoint is averaged after the product (linear in the data)
                _, gs = loss_gradients(inner_loss, outer, x, create_graph=True, reduce=None)
                gradient_evals += 1
                nxt = descend(x, gs, lr, track=True)
                back = torch.autograd.grad(list(nxt.values()), [*outer.values(), *x.values()], grad_outputs=adjoint,
                                           allow_unused=True)
                for i, g in enumerate(back[: len(outer)]):
                    if g is not None:
                        total[i] = total[i] + g
                        coupled[i] = True
                adjoint = [a if g is None else g for a, g in zip(adjoint, back[len(outer):], strict=True)]
                adjoint = reduce_list(reduce, adjoint)
        check_outer_used(outer, direct[: len(outer)], [True if c else None for c in coupled])
        info = SolverInfo(solver=type(self).__name__, iterations=steps, gradient_evals=gradient_evals + 1,
                          hvp_evals=steps, outer_loss=float(value.detach()),
                          extra={"segments": float(len(starts)), "segment_length": float(length)})
        return reduce_list(reduce, [t.detach() for t in total]), info
