"""``vfo``: value-function-based first-order method, in the form BOAT implements as ``VFO``.

BOAT cites the value-function interior-point method of Liu, Liu, Yuan, Zeng and Zhang (BVFIM, ICML 2021) for
it, but its update is a value-function barrier step rather than BVFIM's sequence of log-barrier subproblems:
per step, ``y`` first takes ``pre_steps`` plain gradient steps on ``g(x, .)``; ``z`` takes ``inner_steps``
from there (the estimate of ``g*(x)``); then ``x`` and ``y`` move along the dynamic-barrier direction
(:mod:`.value_function`) with the rate tied to the constraint *value*, ``phi = eta q(x, y)``, instead of
BOME's ``eta |grad q|^2``.

BOAT takes ``pre_steps = inner_steps`` (10). On the test quadratic that stalls at a relative error of 0.76 to
0.83 in ``x``: pulling ``y`` back to ``y*(x)`` every step erases the offset ``y - y*`` through which the barrier
carries the implicit part of the hypergradient, and the outer step degenerates towards ``grad_x f``. The
default here is ``pre_steps = 0`` (``pre_steps=10, inner_steps=10, y_scale=1`` reproduces BOAT's update), and, as for
``bome``, ``y`` steps with ``y_scale * inner_lr`` (BOAT: the inner optimizer's rate, ``y_scale = 1``).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidProblemError
from ..typing import Params
from .base import Algorithm, Oracle, axpy
from .registry import register
from .value_function import barrier_direction


@register
class VFO(Algorithm):
    """VFO.

    Options:
        inner_steps: gradient steps computing ``z`` from ``y`` (default 50).
        pre_steps: plain inner gradient steps on ``y`` before the barrier step (default 0; BOAT: 10).
        eta: barrier coefficient in ``phi = eta q`` (default 1.0).
        y_scale: the ``y`` part of the barrier step is ``y_scale * inner_lr`` (default 0.2).
    """

    name = "vfo"
    defaults: dict[str, Any] = {"inner_steps": 50, "pre_steps": 0, "eta": 1.0, "y_scale": 0.2}

    def check_options(self) -> None:
        self._positive("inner_steps", integer=True)
        self._positive("eta", "y_scale")
        if not isinstance(self.pre_steps, int) or self.pre_steps < 0:
            raise InvalidProblemError(f"method 'vfo': pre_steps must be an integer >= 0, got {self.pre_steps!r}")

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        y = oracle.inner_descent(x, y, self.pre_steps, self.inner_lr)
        z = oracle.inner_descent(x, y, self.inner_steps, self.inner_lr)
        dx, dy, _, _ = barrier_direction(oracle, x, y, z, "value", self.eta)
        return axpy(x, -self.outer_lr, dx), axpy(y, -self.y_scale * self.inner_lr, dy)
