"""The largest eigenvalue of an inner Hessian by power iteration on Hessian-vector products.

Step sizes of the Neumann series (``alpha < 2 / lambda_max``) and of unrolled gradient descent
(``inner_lr < 2 / lambda_max``) are safe only below a bound set by the Hessian's largest eigenvalue, which the user
rarely knows. Power iteration finds the eigenvalue of largest magnitude from matrix-free products alone; its
Rayleigh quotient approaches it from below for a positive semi-definite Hessian, so ``1 / estimate`` stays a safe
step unless the estimate is off by more than a factor of two. A negative dominant eigenvalue is reported as such:
the point is then not a minimum, and no step size helps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ._flat import flatten, leaves
from .functional import HessianOperator, inner_gradient
from .typing import MatVec, PairLoss


@dataclass
class EigenvalueEstimate:
    """Result of :func:`largest_eigenvalue`.

    Attributes:
        value: the Rayleigh quotient ``v^T H v`` of the final unit vector (the dominant eigenvalue, signed).
        iterations: products spent.
        converged: the relative change of the estimate between the last two iterations fell below ``tol``.
        vector: the final unit vector (an approximate eigenvector).
    """

    value: float
    iterations: int
    converged: bool
    vector: Tensor


def start_vector(like: Tensor, seed: int = 0) -> Tensor:
    """A fixed unit start vector ``1 + 0.5 sin(k (seed + 1.618))``: deterministic, generic (no eigenvector of a
    structured operator is orthogonal to it in practice), and made without a random operation, which
    ``torch.func.vmap`` refuses (so both paths start from the same vector)."""
    k = torch.arange(like.numel(), dtype=torch.float64)
    v = (1.0 + 0.5 * torch.sin(k * (seed + 1.6180339887))).to(dtype=like.dtype, device=like.device)
    return v / torch.linalg.vector_norm(v)


def largest_eigenvalue(
    matvec: MatVec, like: Tensor, *, iterations: int = 30, tol: float = 1e-3, seed: int = 0
) -> EigenvalueEstimate:
    """Dominant (largest-magnitude) eigenvalue of the symmetric operator ``matvec`` on vectors shaped like ``like``.

    The start vector is :func:`start_vector` (no random state is drawn or touched, so training runs stay
    reproducible and data-parallel processes agree).
    """
    v = start_vector(like, seed)
    value, previous = float("nan"), None
    k = 0
    for k in range(1, iterations + 1):  # noqa: B007 - k is reported after the loop
        hv = matvec(v).detach()
        value = float(torch.dot(v, hv))
        norm = torch.linalg.vector_norm(hv)
        if not bool(torch.isfinite(norm)) or float(norm) == 0.0:
            break
        v = hv / norm
        if previous is not None and abs(value - previous) <= tol * abs(value):
            return EigenvalueEstimate(value, k, True, v)
        previous = value
    return EigenvalueEstimate(value, k, False, v)


def hessian_largest_eigenvalue(
    inner_loss: PairLoss,
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    *,
    iterations: int = 30,
    tol: float = 1e-3,
) -> EigenvalueEstimate:
    """Dominant eigenvalue of the inner loss's Hessian ``d_w d_w G(o, w)`` at the given point.

    A safe step for ``Neumann(alpha=...)`` or ``Unrolled(inner_lr=...)`` is below ``2 / value``; ``1 / value`` is
    what ``Neumann(alpha="auto")`` uses.
    """
    with torch.enable_grad():
        o, w = leaves(outer_params), leaves(inner_params)
        hessian = HessianOperator(inner_gradient(inner_loss, o, w, create_graph=True), w)
        like = flatten([t.detach() for t in w.values()])
        return largest_eigenvalue(hessian, like, iterations=iterations, tol=tol)


__all__ = ["EigenvalueEstimate", "hessian_largest_eigenvalue", "largest_eigenvalue", "start_vector"]
