"""``bome``: BOME, Bilevel Optimization Made Easy (Liu, Ye, Wright, Stone and Liu, NeurIPS 2022).

Per step: ``z`` = ``inner_steps`` gradient steps (size ``inner_lr``) on ``g(x, .)`` from the current ``y``
(the paper's ``theta^(T)``); then ``x`` and ``y`` move together along the dynamic-barrier direction of the
value-function constraint ``q(x, y) = g(x, y) - g(x, z) <= 0`` with ``phi = eta |grad q|^2``
(:mod:`.value_function`). First order only: ``inner_steps + 3`` gradient calls per step.

The estimate ``g(x, z)`` of ``g*(x)`` from ``T`` steps started at ``y`` biases the limit point: on a quadratic
the hypergradient it follows is off by the factor ``(I - inner_lr A)^T`` on the slow inner directions, hence
the default ``inner_steps = 50`` rather than the paper's 10 (docs/algorithms.md measures the effect).

The paper moves ``x`` and ``y`` with one step size ``xi``. The barrier direction has no fixed point (``<d, grad
q> = phi > 0`` wherever ``lambda > 0``), so with a finite step the iterates settle at a distance from the
solution proportional to the ``y`` step: on the test quadratic at ``xi = 0.05`` the relative error of ``x``
stalls at 2.3e-2 (4.7e-2 with a ``y`` step of 0.1, 1.3e-1 with 0.3). Here ``x`` steps with ``outer_lr`` and
``y`` with ``y_scale * inner_lr`` (the ``y`` step is an inner-scale step: on hyper-cleaning ``outer_lr`` is 50);
the default ``y_scale = 0.1`` (a ``y`` step of 0.01 on the test quadratic) reaches 1e-2 in 892 steps.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidProblemError
from ..typing import Params
from .base import Algorithm, Oracle, axpy
from .registry import register
from .value_function import barrier_direction


@register
class BOME(Algorithm):
    """BOME.

    Options:
        inner_steps: gradient steps computing ``z`` (default 50).
        eta: barrier coefficient ``eta`` in ``phi = eta |grad q|^2`` (default 0.5, the paper's choice).
        warm_start: start ``z`` from its previous value instead of from ``y`` (default ``False``, as the paper).
        y_scale: the ``y`` part of the barrier step is ``y_scale * inner_lr`` (default 0.1; the paper uses the
            outer step for both levels).
    """

    name = "bome"
    defaults: dict[str, Any] = {"inner_steps": 50, "eta": 0.5, "warm_start": False, "y_scale": 0.1}

    def check_options(self) -> None:
        self._positive("inner_steps", integer=True)
        self._positive("eta", "y_scale")
        if not isinstance(self.warm_start, bool):
            raise InvalidProblemError(f"method 'bome': warm_start must be a bool, got {self.warm_start!r}")

    def init_state(self, outer: Params, inner: Params) -> dict[str, Any]:
        return {"z": inner}

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        start = self.state["z"] if self.warm_start else y
        z = oracle.inner_descent(x, start, self.inner_steps, self.inner_lr)
        self.state["z"] = z
        dx, dy, _, _ = barrier_direction(oracle, x, y, z, "grad", self.eta)
        return axpy(x, -self.outer_lr, dx), axpy(y, -self.y_scale * self.inner_lr, dy)
