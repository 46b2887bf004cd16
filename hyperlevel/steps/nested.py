"""The nested step: ``outer + inner`` is one nested chain (outermost first); every level but the innermost
steps along its exact nested hypergradient (:func:`hyperlevel.nested_hypergradient`), then the innermost level
takes ``max(inner_steps, 1)`` plain gradient steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..nested import _nested_hypergradient
from .base import StepContext, apply_gradients, flat_params, level_loss
from .inner import inner_gradient_steps

if TYPE_CHECKING:
    from ..schedule import Phase
    from ..training.records import StepRecord

__all__ = ["NestedStep"]


class NestedStep:
    """One step of a ``Phase(nested=True)``: level ``k`` of the chain gets the hypergradient of the sub-chain
    ``chain[k:]`` (its own objective, the levels below responding), all at the same point and batches."""

    def __init__(self, phase: Phase):
        self.phase = phase

    @staticmethod
    def handles(phase: Phase) -> bool:
        return phase.nested

    def __call__(self, context: StepContext, record: StepRecord) -> None:
        problem = context.problem
        chain = list(self.phase.outer) + list(self.phase.inner)
        batches = {n: problem[n].next_batch() for n in chain}
        base = problem.detached()
        grads: dict[str, Tensor] = {}
        for k in range(len(chain) - 1):
            sub = [problem[n] for n in chain[k:]]
            # nested solves: autocast only (no loss scaling: the nested products are not rescaled)
            losses = [level_loss(lv, base, batches[lv.name]) for lv in sub]
            losses = [lv.precision.wrap(fn, 1.0) if lv.precision is not None else fn
                      for lv, fn in zip(sub, losses, strict=True)]
            params = [flat_params(base, [lv.name]) for lv in sub]
            grads.update(_nested_hypergradient(losses, params, solver=self.phase.solver, reduce=context.reduce))
        with torch.no_grad():
            record.outer_loss = float(problem[chain[0]].objective(base, batches[chain[0]]))
        apply_gradients(context, chain[:-1], grads, record, "nested hypergradient")
        inner_gradient_steps(context, chain[-1:], chain[-1], max(self.phase.inner_steps, 1), record,
                             first_batch=batches[chain[-1]])
