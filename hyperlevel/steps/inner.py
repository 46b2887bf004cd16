"""Inner-only steps: plain gradient steps on a phase's inner levels (a phase with ``outer=[]``: ordinary
training), and the inner half of the bilevel and nested steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._flat import unflatten
from ..functional import zeros_for_none
from ..solvers.base import reduce_list
from ..validation import check_loss
from .base import StepContext, apply_gradients

if TYPE_CHECKING:
    from ..schedule import Phase
    from ..training.records import StepRecord

__all__ = ["InnerStep", "inner_gradient_steps"]


def inner_gradient_steps(context: StepContext, levels: Sequence[str], objective_level: str, steps: int,
                         record: StepRecord, first_batch: Any = None,
                         first_gradient: tuple[float, Tensor] | None = None) -> None:
    """``steps`` optimizer steps of ``levels`` (one joint level) on the objective of ``objective_level``.

    The first step uses ``first_batch`` when given (the batch the hypergradient just saw), else each step draws
    the next batch. ``first_gradient`` (loss value, flat gradient) replaces the first step's forward and
    backward pass when a solver already computed that gradient at the same point and batch. Mixed precision:
    autocast forward, scaled loss (float16), float32 gradient. Data parallel: gradients are averaged.
    """
    problem = context.problem
    level = problem[objective_level]
    for k in range(steps):
        if k == 0 and first_gradient is not None:
            value, flat = first_gradient
            live = [t for lv in levels for t in problem[lv].named_parameters().values()]
            keys = [f"{lv}/{n}" for lv in levels for n in problem[lv].named_parameters()]
            apply_gradients(context, levels, dict(zip(keys, unflatten(flat, live), strict=True)), record,
                            "gradient")
            record.inner_loss = value
            continue
        batch = first_batch if (k == 0 and first_batch is not None) else level.next_batch()
        params = problem.detached()
        for lv in levels:
            params[lv] = problem[lv].named_parameters()
        objective, scale = level.objective, 1.0
        if level.precision is not None:
            scale = level.precision.scale
            objective = level.precision.wrap(objective, scale)
        with torch.enable_grad():
            value = check_loss(objective(params, batch), f"objective of level {level.name!r}")
            live = [t for lv in levels for t in params[lv].values()]
            gs = torch.autograd.grad(value, live, allow_unused=True)
        gs = zeros_for_none(gs, live)
        if scale != 1.0:
            gs = [g / scale for g in gs]
        value = value / scale if scale != 1.0 else value
        gs = reduce_list(context.reduce, gs)
        keys = [f"{lv}/{n}" for lv in levels for n in params[lv]]
        apply_gradients(context, levels, dict(zip(keys, gs, strict=True)), record, "gradient")
        record.inner_loss = float(value.detach())


class InnerStep:
    """A phase without outer levels: ``max(inner_steps, 1)`` gradient steps of its (joint) inner level on the
    objective of ``phase.inner_objective`` (default: the innermost inner level)."""

    def __init__(self, phase: Phase):
        self.phase = phase

    @staticmethod
    def handles(phase: Phase) -> bool:
        return not phase.outer

    def __call__(self, context: StepContext, record: StepRecord) -> None:
        phase = self.phase
        inner_gradient_steps(context, phase.inner, phase.inner_objective or phase.inner[-1],
                             max(phase.inner_steps, 1), record)
