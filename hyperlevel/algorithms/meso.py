"""``meso``: Moreau-envelope single-loop method (Liu, Liu, Yao, Zeng and Zhang, ICML 2024; BOAT's ``MESO``).

The lower level is replaced by the constraint ``g(x, y) - v_gamma(x, y) <= 0`` with the Moreau envelope
``v_gamma(x, y) = min_theta g(x, theta) + |theta - y|^2 / (2 gamma)``, which is zero exactly when ``y`` solves
the (convex) inner problem, and the constraint enters as a penalty of weight ``c_k = c0 (k + 1)^p`` that grows
along the run. One single loop, per step:

    theta <- theta - inner_lr (grad_y g(x, theta) + (theta - y) / gamma)
    x     <- x - outer_lr (grad_x f(x, y) + c_k (grad_x g(x, y) - grad_x g(x, theta)))
    y     <- y - inner_lr (grad_y f(x, y) / c_k + grad_y g(x, y) - (y - theta) / gamma)

The paper writes the ``x`` step as ``alpha (grad_x f / c_k + ...)``; here ``alpha = outer_lr c_k``, so that
``outer_lr`` keeps its meaning (the step on the outer objective) whatever ``c_k`` is. First order and
Hessian-free: 4 gradient calls per step.
"""

from __future__ import annotations

from typing import Any

from ..typing import Params
from .base import Algorithm, Oracle, axpy, combine
from .registry import register


@register
class MESO(Algorithm):
    """MESO.

    Options:
        gamma: Moreau-envelope parameter (default 1.0).
        c0: penalty at the first step (default 10.0).
        p: growth exponent of the penalty, ``c_k = c0 (k + 1)^p`` (default 0.3; the paper needs ``p < 1/2``).
        c_max: cap on ``c_k`` (default 1000.0).
    """

    name = "meso"
    defaults: dict[str, Any] = {"gamma": 1.0, "c0": 10.0, "p": 0.3, "c_max": 1000.0}

    def check_options(self) -> None:
        self._positive("gamma", "c0", "p", "c_max")

    def init_state(self, outer: Params, inner: Params) -> dict[str, Any]:
        return {"theta": inner}

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        c = min(self.c0 * (self.iteration + 1) ** self.p, self.c_max)
        theta = self.state["theta"]
        _, _, t_gy = oracle.grad("inner", x, theta, wrt="y")
        theta = combine(theta, combine(t_gy, combine(theta, y, -1.0), 1.0 / self.gamma), -self.inner_lr)
        self.state["theta"] = theta
        _, fx, fy = oracle.grad("outer", x, y)
        _, gx, gy = oracle.grad("inner", x, y)
        _, tx, _ = oracle.grad("inner", x, theta, wrt="x")
        x_next = axpy(x, -self.outer_lr, combine(fx, combine(gx, tx, -1.0), c))
        dy = combine(combine(gy, fy, 1.0 / c), combine(y, theta, -1.0), -1.0 / self.gamma)
        return x_next, axpy(y, -self.inner_lr, dy)
