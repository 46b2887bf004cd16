"""``f2sa``: Fully First-order Stochastic Approximation (Kwon, Kwon, Wright and Nowak, ICML 2023).

Per step ``k``: ``inner_steps`` times, ``z`` takes a gradient step on ``g(x, .)`` and ``y`` a step on the
penalised inner objective ``f / lam_k + g`` (both of size ``inner_lr``; the paper's ``gamma_k`` and
``alpha_k = inner_lr / lam_k``); then ``x`` steps along the penalty gradient
``grad_x f(x, y) + lam_k (grad_x g(x, y) - grad_x g(x, z))`` (:mod:`.penalty`) and the multiplier grows,
``lam_{k+1} = min(lam_k + lam_growth, lam_max)``. ``y`` and ``z`` are warm-started and take the same steps,
so their tracking errors nearly cancel in ``y - z``: that keeps the outer step stable although ``lam``
multiplies it. First order only: ``4 inner_steps + 3`` gradient calls per step.
"""

from __future__ import annotations

from typing import Any

from ..typing import Params
from .base import Algorithm, Oracle, axpy
from .penalty import penalised_inner_step, penalty_outer_gradient
from .registry import register


@register
class F2SA(Algorithm):
    """F2SA.

    Options:
        inner_steps: ``y`` and ``z`` steps per outer step (default 5).
        lam_init: initial multiplier ``lam_0`` (default 1.0).
        lam_growth: added to ``lam`` every step (default 1.0; the paper grows it polynomially).
        lam_max: cap on ``lam``; the limit point's bias is ``O(1 / lam_max)`` (default 1000.0).
    """

    name = "f2sa"
    defaults: dict[str, Any] = {"inner_steps": 5, "lam_init": 1.0, "lam_growth": 1.0, "lam_max": 1000.0}

    def check_options(self) -> None:
        self._positive("inner_steps", integer=True)
        self._positive("lam_init", "lam_growth", "lam_max")

    def init_state(self, outer: Params, inner: Params) -> dict[str, Any]:
        return {"z": inner, "lam": float(self.lam_init)}

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        lam, z = self.state["lam"], self.state["z"]
        for _ in range(self.inner_steps):
            z = oracle.inner_descent(x, z, 1, self.inner_lr)
            y = penalised_inner_step(oracle, x, y, lam, self.inner_lr)
        x = axpy(x, -self.outer_lr, penalty_outer_gradient(oracle, x, y, z, lam))
        self.state.update(z=z, lam=min(lam + self.lam_growth, self.lam_max))
        return x, y
