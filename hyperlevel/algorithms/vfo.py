"""``vfo``: value-function-based first-order method, in the form BOAT implements as ``VFO``.

BOAT cites the value-function interior-point method of Liu, Liu, Yuan, Zeng and Zhang (BVFIM, ICML 2021) for
it, but its update is a value-function barrier step rather than BVFIM's sequence of log-barrier subproblems:
per step, ``y`` first takes ``inner_steps`` plain gradient steps on ``g(x, .)``; ``z`` continues ``inner_steps``
more from there (the estimate of ``g*(x)``); then ``x`` and ``y`` move along the dynamic-barrier direction
(:mod:`.value_function`) with the rate tied to the constraint *value*, ``phi = eta q(x, y)``, instead of
BOME's ``eta |grad q|^2``. Because ``y`` itself descends the inner loss every step, the method tracks the
inner solution like hypergradient descent does while the barrier corrects the outer direction.
"""

from __future__ import annotations

from typing import Any

from .._flat import Params
from .base import Algorithm, Oracle, axpy
from .registry import register
from .value_function import barrier_direction


@register
class VFO(Algorithm):
    """VFO.

    Options:
        inner_steps: gradient steps on ``y``, and again on ``z`` from ``y``, per step (default 10).
        eta: barrier coefficient in ``phi = eta q`` (default 1.0).
    """

    name = "vfo"
    defaults: dict[str, Any] = {"inner_steps": 10, "eta": 1.0}

    def check_options(self) -> None:
        self._positive("inner_steps", integer=True)
        self._positive("eta")

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        y = oracle.inner_descent(x, y, self.inner_steps, self.inner_lr)
        z = oracle.inner_descent(x, y, self.inner_steps, self.inner_lr)
        dx, dy, _, _ = barrier_direction(oracle, x, y, z, "value", self.eta)
        return axpy(x, -self.outer_lr, dx), axpy(y, -self.outer_lr, dy)
