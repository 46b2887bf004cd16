"""Fixed-point iteration for the implicit hypergradient of a fixed-point map (hypertorch's ``fixed_point``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import SolverDivergedError
from ..typing import Reduce
from ._stationarity import Stationarity, StationaritySolver, reduced
from .base import OnNonconvergence
from .linear import LinearSolveInfo
from .target import FixedPointMap


class FixedPoint(StationaritySolver):
    """Implicit hypergradient of ``w* = Phi(o, w*)`` with the adjoint found by fixed-point iteration.

    Iterates ``v <- (d_w Phi)^T v + d_w F`` (each step one vector-Jacobian product of ``Phi``), which converges to
    ``(I - d_w Phi)^{-T} d_w F`` when ``Phi`` is a contraction (spectral radius of ``d_w Phi`` below 1), then returns
    ``d_o F + (d_o Phi)^T v``. Without ``fixed_point_map`` the map is the inner gradient step
    ``Phi(o, w) = w - step * d_w G(o, w)``, and the iteration is the Neumann series with ``alpha = step``. Unlike
    ``Neumann``, the map need not come from a loss: its Jacobian may be non-symmetric (deep equilibrium models,
    message passing, proximal or momentum updates). Cost: 2 gradient evaluations, one product per iteration plus 1
    mixed product; converges linearly at the map's contraction rate.

    Args:
        iterations: maximal iterations.
        step: the inner step of the default map (ignored with ``fixed_point_map``).
        tol: relative residual ``||(I - d_w Phi)^T v - d_w F|| / ||d_w F||`` at which to stop (default 1e-10 in
            float64, 1e-5 else); the residual is the iteration's own update, so checking it is free.
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        fixed_point_map: ``Phi(outer, inner) -> inner dict`` whose fixed point is the inner solution.
    """

    method = "fixed_point"
    how = "fixed-point iteration v <- (d_w Phi)^T v + d_w F"

    def __init__(self, iterations: int = 100, step: float = 0.01, tol: float | None = None,
                 on_nonconvergence: OnNonconvergence = "warn", fixed_point_map: FixedPointMap | None = None):
        if not step > 0:
            raise ValueError(f"step must be positive, got {step}")
        super().__init__(iterations, tol, on_nonconvergence, fixed_point_map)
        self.step = float(step)

    def scale(self) -> float:
        return self.step

    def solve_transposed(self, equation: Stationarity, b: Tensor, tol: float,
                         reduce: Reduce | None) -> tuple[Tensor, LinearSolveInfo]:
        transpose = reduced(equation.transpose, reduce)
        b_norm = float(torch.linalg.vector_norm(b))
        if b_norm == 0:
            return torch.zeros_like(b), LinearSolveInfo(0, 0.0, True, 0, "right-hand side is zero")
        v = b.clone()  # the first iterate from v = 0
        residual = math.inf
        k = 0
        for k in range(1, self.iterations + 1):  # noqa: B007 - k is reported after the loop
            r = b - transpose(v)  # (d_w Phi)^T v + b - v: the update is the residual
            residual = float(torch.linalg.vector_norm(r)) / b_norm
            if not math.isfinite(residual) or residual > 1e8:
                raise SolverDivergedError(
                    f"FixedPoint: the residual grew to {residual:.3e} at iteration {k}; the map is not a contraction "
                    "at this point (lower step, or use GMRES / CGNormal, which need no contraction)"
                )
            if residual <= tol:
                break
            v.add_(r)
        return v, LinearSolveInfo(k, residual, residual <= tol, k)
