"""Reverse mode through unrolled inner steps with the trajectory recomputed by segments (gradient checkpointing).

``Unrolled`` stores the autograd graph of every differentiated step, so its memory grows linearly with the number
of steps ``K``. Here the forward pass keeps only every ``C``-th inner point (``K / C`` checkpoints, no graph); the
backward pass walks the segments from the last one: it recomputes the ``C`` points of a segment from its checkpoint
(no graph), then back-propagates through one step at a time,

    a_t = a_{t+1} (d w_{t+1} / d w_t),    o_bar += a_{t+1} (d w_{t+1} / d o),    a_K = d_w F(o, w_K),

building and freeing one step's graph per step. Peak memory is ``O(K / C + C)`` inner points plus one step's
graph instead of ``K`` step graphs, for about one extra forward pass of the inner gradient (the recomputation);
``C ~ sqrt(K)`` minimises it. The per-step vector-Jacobian product is the very computation the stored graph
performs, so the result equals the stored trajectory's to rounding (1e-12 relative in float64 or better; the
sums over steps are taken in a different order).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InvalidProblemError
from ..functional import evaluate, grads, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from .base import reduce_list


def _gradient(inner_loss: PairLoss, outer: Params, w: Params, reduce: Reduce | None, create_graph: bool):
    """The (averaged) inner gradient at ``w``; raises when an inner tensor does not reach the inner loss."""
    value = evaluate(inner_loss, outer, w, "inner_loss")
    gs = grads(value, w, create_graph=create_graph)
    if reduce is not None and all(g is not None for g in gs):
        step_reduce = getattr(reduce, "differentiable", reduce) if create_graph else reduce
        gs = reduce_list(step_reduce, gs)  # type: ignore[arg-type]
    missing = [n for n, g in zip(w, gs, strict=True) if g is None]
    if missing:
        raise InvalidProblemError(f"inner parameters {missing} do not influence inner_loss")
    return gs


def _step(inner_loss, outer, w: Params, inner_lr: float, reduce) -> Params:
    """One inner gradient step without a graph."""
    gs = _gradient(inner_loss, outer, w, reduce, create_graph=False)
    with torch.no_grad():
        return {n: (p - inner_lr * g).requires_grad_() for (n, p), g in zip(w.items(), gs, strict=True)}


def checkpointed_unroll(
    outer_loss: PairLoss,
    inner_loss: PairLoss,
    outer: Params,
    inner: Params,
    *,
    steps: int,
    inner_lr: float,
    differentiated: int,
    checkpoint_every: int,
    reduce: Reduce | None = None,
) -> tuple[list[Tensor | None], Tensor, dict[str, float], Params]:
    """Gradient of ``F(o, w_K)`` with respect to ``o`` through the last ``differentiated`` of ``steps`` steps.

    Returns the per-outer-tensor gradients (``None`` where ``o`` reaches neither loss), the outer loss value,
    figures for ``SolverInfo.extra`` (checkpoints kept, steps recomputed) and the final inner point ``w_K``
    (detached, for the caller's divergence check).
    """
    first = steps - differentiated  # steps before this one are not differentiated (truncation)
    w = {n: t.detach().requires_grad_() for n, t in inner.items()}
    checkpoints: dict[int, Params] = {}
    for t in range(steps):
        if t >= first and (t - first) % checkpoint_every == 0:
            checkpoints[t] = {n: p.detach() for n, p in w.items()}
        w = _step(inner_loss, outer, w, inner_lr, reduce)
    value = evaluate(outer_loss, outer, w, "outer_loss")
    both = {**{("o", k): v for k, v in outer.items()}, **{("i", k): v for k, v in w.items()}}
    gs = grads(value, both)
    n_outer = len(outer)
    o_bar: list[Tensor | None] = list(gs[:n_outer])
    adjoint = zeros_for_none(gs[n_outer:], w)
    final = {n: p.detach().requires_grad_() for n, p in w.items()}
    del w, both, gs
    recomputed = 0
    for start in sorted(checkpoints, reverse=True):
        end = min(start + checkpoint_every, steps)
        points = [{n: p.requires_grad_() for n, p in checkpoints.pop(start).items()}]
        for _ in range(start, end - 1):  # the segment's points, without graphs
            points.append(_step(inner_loss, outer, points[-1], inner_lr, reduce))
            recomputed += 1
        while points:
            w_t = {n: p.detach().requires_grad_() for n, p in points.pop().items()}
            g_t = _gradient(inner_loss, outer, w_t, reduce, create_graph=True)
            nxt = [p - inner_lr * g for p, g in zip(w_t.values(), g_t, strict=True)]
            back = torch.autograd.grad(nxt, [*w_t.values(), *outer.values()], grad_outputs=adjoint,
                                       allow_unused=True)
            adjoint = zeros_for_none(back[: len(w_t)], w_t)
            for k, contribution in enumerate(back[len(w_t):]):
                if contribution is not None:
                    o_bar[k] = contribution if o_bar[k] is None else o_bar[k] + contribution
            del w_t, g_t, nxt, back
    extra = {"checkpoints": float(math.ceil(differentiated / checkpoint_every)), "recomputed_steps": float(recomputed)}
    return o_bar, value, extra, final


__all__ = ["checkpointed_unroll"]
