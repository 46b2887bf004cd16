"""Gradient steps on the inner loss, shared by the trajectory solvers (PTT, aggregation, IAD, recompute, ES)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InvalidProblemError
from ..functional import evaluate, grads, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from .base import reduce_list


def loss_gradients(loss: PairLoss, outer: Params, w: Params, *, create_graph: bool, reduce: Reduce | None,
                   what: str = "inner_loss", required: bool = True) -> tuple[Tensor, list[Tensor]]:
    """``(loss, d_w loss)`` at ``(outer, w)``; a differentiated step averages with the autograd-aware reduce
    (``reduce.differentiable``, as ``Unrolled``). ``required``: an inner tensor the loss ignores is an error."""
    value = evaluate(loss, outer, w, what)
    gs = grads(value, w, create_graph=create_graph)
    missing = [n for n, g in zip(w, gs, strict=True) if g is None]
    if missing and required:
        raise InvalidProblemError(f"inner parameters {missing} do not influence {what}")
    out = zeros_for_none(gs, w)
    if reduce is not None:
        step_reduce = getattr(reduce, "differentiable", reduce) if create_graph else reduce
        out = reduce_list(step_reduce, out)  # type: ignore[arg-type]
    return value, out


def descend(w: Params, gs: list[Tensor], lr: float, *, track: bool) -> Params:
    """``w - lr * g``; without ``track`` the result is a fresh leaf (no graph to the past)."""
    if track:
        return {n: p - lr * g for (n, p), g in zip(w.items(), gs, strict=True)}
    with torch.no_grad():
        return {n: (p - lr * g).requires_grad_() for (n, p), g in zip(w.items(), gs, strict=True)}


def detached(w: Params) -> Params:
    """Fresh leaves with the values of ``w``."""
    return {n: p.detach().requires_grad_() for n, p in w.items()}
