"""Conjugate gradients on the normal equations, for inner Jacobians that are not symmetric (fixed-point maps)."""

from __future__ import annotations

from torch import Tensor

from ..typing import Reduce
from ._stationarity import Stationarity, StationaritySolver, reduced
from .base import OnNonconvergence
from .linear import LinearSolveInfo, conjugate_gradient
from .target import FixedPointMap


class CGNormal(StationaritySolver):
    """Implicit hypergradient with ``M^T v = d_w F`` solved by CG on the normal equations (CGNE, Craig's method).

    Writes ``v = M y`` and solves the symmetric positive-definite ``M^T M y = d_w F`` by conjugate gradients, whose
    residual is exactly that of ``M^T v = d_w F``. Works for any invertible ``M`` (non-symmetric Jacobians of a
    ``fixed_point_map``, indefinite Hessians) with CG's short recurrences and no stored basis (unlike GMRES), at
    the price of two products per iteration (``M u`` by double backward, ``M^T v`` by one backward) and a
    squared condition number. Cost: 2 gradient evaluations, ``2 k + 1`` products, 1 mixed product.

    Args:
        iterations: maximal CG iterations.
        tol: relative residual at which to stop (default 1e-10 in float64, 1e-5 else).
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        fixed_point_map: ``Phi(outer, inner) -> inner dict`` whose fixed point is the inner solution (default: the
            inner problem is ``d_w G = 0``).
    """

    method = "cg_normal"
    how = "CG on the normal equations M^T M y = d_w F, v = M y"

    def __init__(self, iterations: int = 100, tol: float | None = None, on_nonconvergence: OnNonconvergence = "warn",
                 fixed_point_map: FixedPointMap | None = None):
        super().__init__(iterations, tol, on_nonconvergence, fixed_point_map)

    def solve_transposed(self, equation: Stationarity, b: Tensor, tol: float,
                         reduce: Reduce | None) -> tuple[Tensor, LinearSolveInfo]:
        transpose = reduced(equation.transpose, reduce)
        forward = reduced(equation.forward, reduce)
        y, lin = conjugate_gradient(lambda u: transpose(forward(u)), b, iterations=self.iterations, tol=tol,
                                    solver_name=type(self).__name__)
        return forward(y), lin
