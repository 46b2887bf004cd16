"""The dynamic-barrier direction shared by the value-function methods (``bome``, ``vfo``).

The bilevel problem is rewritten as ``min f(x, y)`` subject to ``q(x, y) = g(x, y) - g*(x) <= 0``, with
``g*(x) = min_z g(x, z)`` estimated by a few inner gradient steps ``z``; by Danskin's theorem ``grad_x g*(x)``
is ``grad_x g(x, z)`` without any derivative of ``z``. Both levels then move along

    d = grad f + lambda grad q,    lambda = max((phi - <grad f, grad q>) / |grad q|^2, 0),

the smallest correction of ``grad f`` that still decreases ``q`` at rate ``phi`` (Gong and Liu's dynamic
barrier, as used by BOME): ``<d, grad q> >= phi``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..typing import Params
from .base import Oracle, combine, dot


def barrier_direction(
    oracle: Oracle, x: Params, y: Params, z: Params, phi_of: str, eta: float
) -> tuple[Params, Params, Tensor, Tensor]:
    """``(d_x, d_y, lambda, q)`` at ``(x, y)`` with the inner estimate ``z`` (3 gradient calls).

    ``phi_of`` chooses the barrier rate: ``"grad"`` (BOME: ``eta |grad q|^2``) or ``"value"`` (``eta q``).
    """
    _, fx, fy = oracle.grad("outer", x, y)
    gval, gx, gy = oracle.grad("inner", x, y)
    zval, zx, _ = oracle.grad("inner", x, z, wrt="x")
    qx = combine(gx, zx, -1.0)  # grad_x q = grad_x g(x, y) - grad_x g(x, z)
    q = gval - zval
    norm2 = dot(qx, qx) + dot(gy, gy)
    phi = eta * norm2 if phi_of == "grad" else eta * q.clamp_min(0)
    inner = dot(fx, qx) + dot(fy, gy)
    lam = torch.where(norm2 > 0, torch.relu(phi - inner) / norm2.clamp_min(torch.finfo(norm2.dtype).tiny),
                      torch.zeros_like(norm2))
    return combine(fx, qx, float(lam)), combine(fy, gy, float(lam)), lam, q
