"""``pgdo``: penalty-based bilevel gradient descent (V-PBGD of Shen and Chen, ICML 2023; BOAT's ``PGDO``).

The lower level is replaced by the penalty ``gamma (g(x, y) - g*(x))`` with a fixed ``gamma``. Per step,
``z`` (the estimate of the inner solution behind ``g*(x)``) takes ``inner_steps`` gradient steps on
``g(x, .)`` from its previous value; then ``y`` and ``x`` take one gradient step each on
``f + gamma (g(x, y) - g(x, z))``: ``y`` with ``inner_lr / gamma`` (the paper's step ``1 / (L_f + gamma L_g)``,
so that the inner curvature ``gamma L_g`` stays stable), then ``x`` with ``outer_lr`` at the new ``y``.

The paper steps ``x`` and ``y`` simultaneously from ``(x_k, y_k)``; we step ``y`` first (Gauss-Seidel). The
outer gradient multiplies ``y - z`` by ``gamma``, so ``y`` and ``z`` must be equally up to date: with the
simultaneous step ``z`` is one step ahead of ``y``, ``gamma`` amplifies that lag, and on the quadratic of
tests/test_algorithms.py the iteration diverges at ``outer_lr = 0.05`` (it converges after the change).
Differences from ``f2sa``: a constant penalty and a single ``y`` step per outer step. First order only:
``inner_steps + 5`` gradient calls per step.
"""

from __future__ import annotations

from typing import Any

from ..typing import Params
from .base import Algorithm, Oracle, axpy
from .penalty import penalised_inner_step, penalty_outer_gradient
from .registry import register


@register
class PGDO(Algorithm):
    """PGDO / V-PBGD.

    Options:
        inner_steps: ``z`` steps per outer step (default 1).
        gamma: the penalty (default 200.0); the limit point's bias is ``O(1 / gamma)``.
    """

    name = "pgdo"
    defaults: dict[str, Any] = {"inner_steps": 1, "gamma": 200.0}

    def check_options(self) -> None:
        self._positive("inner_steps", integer=True)
        self._positive("gamma")

    def init_state(self, outer: Params, inner: Params) -> dict[str, Any]:
        return {"z": inner}

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        z = oracle.inner_descent(x, self.state["z"], self.inner_steps, self.inner_lr)
        self.state["z"] = z
        y = penalised_inner_step(oracle, x, y, self.gamma, self.inner_lr)
        return axpy(x, -self.outer_lr, penalty_outer_gradient(oracle, x, y, z, self.gamma)), y
