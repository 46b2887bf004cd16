"""The penalty gradient shared by ``f2sa`` and ``pgdo``.

With ``z`` an estimate of the inner solution, the penalised objective ``f(x, y) + lam (g(x, y) - g(x, z))``
has, by Danskin's theorem, the outer gradient ``grad_x f(x, y) + lam (grad_x g(x, y) - grad_x g(x, z))``: when
``y`` minimises ``f / lam + g`` it tends to the hypergradient as ``lam`` grows (bias ``O(1 / lam)``), with no
second derivative.
"""

from __future__ import annotations

from ..typing import Params
from .base import Oracle, combine


def penalty_outer_gradient(oracle: Oracle, x: Params, y: Params, z: Params, lam: float) -> Params:
    """``grad_x f(x, y) + lam (grad_x g(x, y) - grad_x g(x, z))`` (3 gradient calls)."""
    _, fx, _ = oracle.grad("outer", x, y, wrt="x")
    _, gx, _ = oracle.grad("inner", x, y, wrt="x")
    _, zx, _ = oracle.grad("inner", x, z, wrt="x")
    return combine(fx, combine(gx, zx, -1.0), lam)


def penalised_inner_step(oracle: Oracle, x: Params, y: Params, lam: float, lr: float) -> Params:
    """One step of size ``lr / lam`` on ``f + lam g`` in ``y``, i.e. ``y - lr (grad_y f / lam + grad_y g)``:
    the step stays stable as ``lam`` grows (2 gradient calls)."""
    _, _, fy = oracle.grad("outer", x, y, wrt="y")
    _, _, gy = oracle.grad("inner", x, y, wrt="y")
    return combine(y, combine(gy, fy, 1.0 / lam), -lr)
