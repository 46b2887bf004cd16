"""The algorithm step: one iteration of a bilevel algorithm of the registry (``Phase(method=...)``, e.g.
``hyperlevel.algorithms.get("bome", ...)``), which moves the outer and inner levels itself with its own step
sizes (the levels' optimizers are not used)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..algorithms.base import Oracle
from ..errors import NonFiniteError
from .base import StepContext, flat_params, level_loss

if TYPE_CHECKING:
    from ..schedule import Phase
    from ..training.records import StepRecord

__all__ = ["MethodStep"]


class MethodStep:
    """Builds the algorithm's :class:`~hyperlevel.algorithms.Oracle` on this step's batches, runs one
    ``method.step`` and copies the new outer and inner parameters into the levels (refusing non-finite ones)."""

    def __init__(self, phase: Phase):
        self.phase = phase

    @staticmethod
    def handles(phase: Phase) -> bool:
        return phase.method is not None

    def __call__(self, context: StepContext, record: StepRecord) -> None:
        phase, problem = self.phase, context.problem
        method = phase.method
        assert method is not None
        outer_level = problem[phase.outer_objective or phase.outer[0]]
        inner_level = problem[phase.inner_objective or phase.inner[-1]]
        base = problem.detached()
        oracle = Oracle(level_loss(outer_level, base, outer_level.next_batch()),
                        level_loss(inner_level, base, inner_level.next_batch()))
        x, y = flat_params(base, phase.outer), flat_params(base, phase.inner)
        record.outer_loss = oracle.value("outer", x, y)
        new_x, new_y = method.step(oracle, x, y)
        moved = {**new_x, **new_y}
        for key, t in moved.items():
            if not bool(torch.isfinite(t).all()):
                raise NonFiniteError(f"{method.name}: non-finite update of {key!r}")
        with torch.no_grad():
            for key, t in moved.items():
                lv, name = key.split("/", 1)
                problem[lv].named_parameters()[name].copy_(t)
