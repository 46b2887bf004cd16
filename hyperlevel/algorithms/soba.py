"""``soba``: Stochastic Bilevel Algorithm (Dagreou, Ablin, Vaiter and Moreau, NeurIPS 2022).

A single loop over three variables: the inner ``y``, the outer ``x`` and ``v``, an estimate of
``-H^{-1} grad_y f`` (``H`` the inner Hessian) that one step of a linear-system iteration refines each time.
All three directions are taken at the current point, then applied together:

    D_y = grad_y g(x, y)
    D_v = (d_yy g) v + grad_y f(x, y)
    D_x = grad_x f(x, y) + (d_xy g) v
    y <- y - inner_lr D_y,  v <- v - inner_lr D_v,  x <- x - outer_lr D_x

Made for minibatches (each direction an unbiased estimate); with full batches it is the deterministic
single-loop method. Per step: 2 gradient calls and 1 Hessian-vector product (both second-order blocks come from
one backward pass). Pass ``outer_data`` / ``inner_data`` to :func:`hyperlevel.optimize` for the stochastic run.
"""

from __future__ import annotations

from typing import Any

import torch

from ..typing import Params
from .base import Algorithm, Oracle, axpy, combine
from .registry import register


@register
class SOBA(Algorithm):
    """SOBA (no options besides the two step sizes; ``v`` starts at zero)."""

    name = "soba"
    defaults: dict[str, Any] = {}

    def init_state(self, outer: Params, inner: Params) -> dict[str, Any]:
        return {"v": {k: torch.zeros_like(t) for k, t in inner.items()}}

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        v = self.state["v"]
        _, fx, fy = oracle.grad("outer", x, y)
        gy, hv_y, hv_x = oracle.inner_hvp(x, y, v)
        self.state["v"] = axpy(v, -self.inner_lr, combine(hv_y, fy, 1.0))
        return axpy(x, -self.outer_lr, combine(fx, hv_x, 1.0)), axpy(y, -self.inner_lr, gy)
