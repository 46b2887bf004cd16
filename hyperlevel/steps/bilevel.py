"""The bilevel step (TriCo's Alg. 1): the outer levels take one step along the hypergradient of the outer
objective, computed by the phase's solver; then the inner levels take ``inner_steps`` gradient steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hypergradient import _hypergradient
from .base import StepContext, apply_gradients, flat_params, level_loss
from .inner import inner_gradient_steps

if TYPE_CHECKING:
    from ..schedule import Phase
    from ..training.records import StepRecord

__all__ = ["BilevelStep"]


class BilevelStep:
    """One outer step of a bilevel phase.

    Draws one batch for the outer objective (``phase.outer_objective``, default the outermost outer level's) and
    one for the inner objective (``phase.inner_objective``, default the innermost inner level's); the outer
    levels' optimizers step on the hypergradient at the current point; the first of the ``inner_steps`` inner
    steps reuses the inner batch (and, with ``reuse_inner_gradient``, the solver's inner gradient).
    """

    def __init__(self, phase: Phase):
        self.phase = phase

    @staticmethod
    def handles(phase: Phase) -> bool:
        return bool(phase.outer) and not phase.nested and phase.method is None

    def __call__(self, context: StepContext, record: StepRecord) -> None:
        phase, problem = self.phase, context.problem
        outer_level = problem[phase.outer_objective or phase.outer[0]]
        inner_level = problem[phase.inner_objective or phase.inner[-1]]
        outer_batch = outer_level.next_batch()
        inner_batch = inner_level.next_batch()
        base = problem.detached()
        grads, info = _hypergradient(
            level_loss(outer_level, base, outer_batch), level_loss(inner_level, base, inner_batch),
            flat_params(base, phase.outer), flat_params(base, phase.inner),
            phase.solver, return_info=True, reduce=context.reduce,
            outer_precision=outer_level.precision, inner_precision=inner_level.precision,
        )
        record.solver_info = info
        record.outer_loss = info.outer_loss
        apply_gradients(context, phase.outer, grads, record, "hypergradient")
        reused = info.inner_gradient if phase.reuse_inner_gradient else None
        inner_gradient_steps(context, phase.inner, inner_level.name, phase.inner_steps, record,
                             first_batch=inner_batch, first_gradient=reused)
