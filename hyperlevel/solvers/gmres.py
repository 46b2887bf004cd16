"""GMRES for the implicit hypergradient when the inner Jacobian is not symmetric (fixed-point maps)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import SolverDivergedError
from ..typing import MatVec, Reduce
from ._stationarity import Stationarity, StationaritySolver, reduced
from .base import OnNonconvergence
from .linear import LinearSolveInfo
from .target import FixedPointMap


def gmres(matvec: MatVec, b: Tensor, *, iterations: int, restart: int, tol: float,
          solver_name: str = "GMRES") -> tuple[Tensor, LinearSolveInfo]:
    """Solve ``A x = b`` for a general (non-symmetric, possibly indefinite) ``A`` by restarted GMRES(``restart``).

    Arnoldi with modified Gram-Schmidt; the small least-squares problem in float64 on the host. Stops when the
    relative residual reaches ``tol`` or after ``iterations`` matvecs; the reported residual is the true
    ``||b - A x|| / ||b||`` (one more matvec). Memory: ``restart + 1`` vectors of the size of ``b``.
    """
    b_norm = float(torch.linalg.vector_norm(b))
    if b_norm == 0:
        return torch.zeros_like(b), LinearSolveInfo(0, 0.0, True, 0, "right-hand side is zero")
    x = torch.zeros_like(b)
    r = b.clone()
    matvecs = total = 0
    while total < iterations:
        beta = float(torch.linalg.vector_norm(r))
        if beta <= tol * b_norm:
            break
        m = min(restart, iterations - total)
        basis = [r / beta]
        hess = torch.zeros(m + 1, m, dtype=torch.float64)
        y = torch.zeros(0, dtype=torch.float64)
        for j in range(m):
            w = matvec(basis[j])
            matvecs += 1
            total += 1
            for i in range(j + 1):  # modified Gram-Schmidt
                h = float(torch.dot(w, basis[i]))
                hess[i, j] = h
                w = w - h * basis[i]
            h_next = float(torch.linalg.vector_norm(w))
            if not math.isfinite(h_next):
                raise SolverDivergedError(f"{solver_name}: the Arnoldi vector became NaN/Inf at iteration {total}")
            hess[j + 1, j] = h_next
            rhs = torch.zeros(j + 2, dtype=torch.float64)
            rhs[0] = beta
            y = torch.linalg.lstsq(hess[: j + 2, : j + 1], rhs.unsqueeze(1)).solution.squeeze(1)
            estimate = float(torch.linalg.vector_norm(hess[: j + 2, : j + 1] @ y - rhs))
            if h_next <= 1e-14 * beta or estimate <= tol * b_norm:  # (lucky) breakdown or converged
                break
            basis.append(w / h_next)
        for i, coefficient in enumerate(y.tolist()):
            x.add_(basis[i], alpha=coefficient)
        r = b - matvec(x)
        matvecs += 1
    residual = float(torch.linalg.vector_norm(r)) / b_norm
    if not math.isfinite(residual):
        raise SolverDivergedError(f"{solver_name}: the residual of the final iterate is NaN/Inf")
    return x, LinearSolveInfo(total, residual, residual <= tol, matvecs)


class GMRES(StationaritySolver):
    """Implicit hypergradient with the adjoint system ``M^T v = d_w F`` solved by restarted GMRES.

    ``M = d_w T`` for the inner equation ``T(o, w) = 0``: the inner Hessian (symmetric, possibly indefinite), or
    ``I - d_w Phi`` for a ``fixed_point_map`` ``Phi``, which is in general not symmetric, where CG does not apply.
    GMRES minimises the residual over the Krylov space, so it needs neither symmetry, definiteness nor a
    contraction. Cost: 2 gradient evaluations, one vector-Jacobian product per iteration (plus one per restart and
    one final check) and 1 mixed product; memory ``restart + 1`` vectors.

    Args:
        iterations: maximal products.
        restart: Krylov dimension before a restart.
        tol: relative residual at which to stop (default 1e-10 in float64, 1e-5 else).
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        fixed_point_map: ``Phi(outer, inner) -> inner dict`` whose fixed point is the inner solution (default: the
            inner problem is ``d_w G = 0``).
    """

    method = "gmres"
    how = "restarted GMRES on M^T v = d_w F"

    def __init__(self, iterations: int = 100, restart: int = 30, tol: float | None = None,
                 on_nonconvergence: OnNonconvergence = "warn", fixed_point_map: FixedPointMap | None = None):
        if restart < 1:
            raise ValueError(f"restart must be >= 1, got {restart}")
        super().__init__(iterations, tol, on_nonconvergence, fixed_point_map)
        self.restart = int(restart)

    def solve_transposed(self, equation: Stationarity, b: Tensor, tol: float,
                         reduce: Reduce | None) -> tuple[Tensor, LinearSolveInfo]:
        return gmres(reduced(equation.transpose, reduce), b, iterations=self.iterations, restart=self.restart,
                     tol=tol, solver_name=type(self).__name__)
