"""How far a given inner point is from being stationary, and what to do when it is not.

The implicit solvers (``ConjugateGradient``, ``Neumann``, and the nested solver per level) compute a quantity that
is defined at a stationary inner point. Handed a point that is not one (``w = 0``, a half-trained network), they
return a finite number that can be arbitrarily far from the hypergradient. They measure the inner gradient at the
given point anyway, so they report how stationary it is and warn (or raise) when it is not.

The scale. A gradient norm alone has the units of the loss over the parameters, so no fixed threshold fits every
problem. The measure used is

    stationarity = ||g|| / ||H w - g||,      g = grad_w G(o, w),   H = its Hessian,

which for a quadratic inner loss ``G = w^T H w / 2 - c^T w`` is exactly ``||H (w - w*)|| / ||H w*||``: the distance
to the minimiser relative to the minimiser's size, in the Hessian's metric. It is 0 at a minimiser, 1 at ``w = 0``,
and invariant to rescaling the loss or the parameters. It costs one Hessian-vector product on the graph the solver
builds anyway. When ``H w - g`` is zero (the minimiser is ``w* = 0``) the measure is 0 at ``w = 0`` and infinite
elsewhere.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor

from .errors import InnerOptimalityError, InnerOptimalityWarning

OnNonstationary = Literal["warn", "raise", "ignore"]
ON_NONSTATIONARY: tuple[str, ...] = ("warn", "raise", "ignore")
#: default tolerance on :func:`relative_stationarity` above which a point is reported as not stationary
STATIONARITY_TOL = 1e-3

ADVICE = (
    "solve the inner problem further (for instance hyperlevel.solve_inner(inner_loss, outer_params, "
    "inner_params)), or use Unrolled / FiniteDifference, whose targets are defined at any inner point"
)


def relative_stationarity(gradient: Tensor, hessian_times_point: Tensor) -> tuple[float, float]:
    """``(||g||, ||g|| / ||H w - g||)`` for flat ``g = grad_w G`` and ``H w`` (see the module docstring)."""
    g_norm = float(torch.linalg.vector_norm(gradient))
    scale = float(torch.linalg.vector_norm(hessian_times_point - gradient))
    if scale == 0.0:
        return g_norm, 0.0 if g_norm == 0.0 else math.inf
    return g_norm, g_norm / scale


def report_stationarity(
    stationarity: float, gradient_norm: float, *, solver: str, policy: OnNonstationary, tol: float,
    where: str = "the inner point", stacklevel: int = 4,
) -> None:
    """Warn or raise when a point the solver assumes stationary is not (``policy="ignore"`` stays silent)."""
    if policy == "ignore" or not stationarity > tol:  # nan: not measured
        return
    text = (
        f"{solver}: {where} is not stationary: ||grad|| = {gradient_norm:.3e}, relative stationarity "
        f"{stationarity:.3e} > {tol:g} (0 at a minimiser, 1 at w = 0). {solver} computes the implicit "
        f"hypergradient, which is defined at a minimiser, so this result may be far from the true hypergradient; "
        f"{ADVICE}"
    )
    if policy == "raise":
        raise InnerOptimalityError(text)
    warnings.warn(text, InnerOptimalityWarning, stacklevel=stacklevel)


__all__ = [
    "ON_NONSTATIONARY",
    "OnNonstationary",
    "STATIONARITY_TOL",
    "relative_stationarity",
    "report_stationarity",
]
