"""The kinds of phase step, one small strategy per module (the engine only picks one per phase and calls it).

=================  ==========================================  ===================================
kind               a phase that has                             module
=================  ==========================================  ===================================
``MethodStep``     ``method=`` (an algorithm of the registry)   :mod:`hyperlevel.steps.method`
``NestedStep``     ``nested=True``                              :mod:`hyperlevel.steps.nested`
``BilevelStep``    outer levels                                 :mod:`hyperlevel.steps.bilevel`
``InnerStep``      no outer levels (plain training)             :mod:`hyperlevel.steps.inner`
=================  ==========================================  ===================================

A step kind is a class constructed with its :class:`~hyperlevel.Phase`, with a static ``handles(phase)`` and
``__call__(context, record)`` (:class:`StepKind`). :data:`STEP_KINDS` lists them in the order they are tried;
a new kind is one module plus one entry there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidProblemError
from .base import StepContext, StepKind, apply_gradients, flat_params, level_loss
from .bilevel import BilevelStep
from .inner import InnerStep, inner_gradient_steps
from .method import MethodStep
from .nested import NestedStep

if TYPE_CHECKING:
    from ..schedule import Phase

__all__ = ["STEP_KINDS", "BilevelStep", "InnerStep", "MethodStep", "NestedStep", "StepContext", "StepKind",
           "apply_gradients", "flat_params", "for_phase", "inner_gradient_steps", "level_loss"]

#: the step kinds, tried in this order; the first whose ``handles(phase)`` holds runs the phase
STEP_KINDS: list[type] = [MethodStep, NestedStep, BilevelStep, InnerStep]


def for_phase(phase: Phase) -> StepKind:
    """The step strategy for ``phase``: the first of :data:`STEP_KINDS` that handles it, bound to it."""
    for kind in STEP_KINDS:
        if kind.handles(phase):
            return kind(phase)
    raise InvalidProblemError(f"phase {phase.name!r}: no step kind handles it ({[k.__name__ for k in STEP_KINDS]})")
