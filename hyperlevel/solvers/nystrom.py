"""Nystrom low-rank inverse Hessian (Hataya & Yamada, "Nystrom method for accurate and scalable implicit
differentiation", AISTATS 2023)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import OnNonconvergence
from .implicit import ImplicitSolver
from .linear import LinearSolveInfo
from .target import Declaration, ImplicitTarget


def nystrom_solve(matvec, b: Tensor, columns: Tensor, rho: float) -> tuple[Tensor, int]:
    """``(H_k + rho I)^{-1} b`` with the Nystrom approximation ``H_k = C W^+ C^T`` from the columns ``C = H[:, idx]``
    (``W = C[idx]``), by the Woodbury identity ``(rho I + C W^+ C^T)^{-1} = (I - C (rho W + C^T C)^{-1} C^T) / rho``.
    Returns the solution and the number of matvecs (one per column)."""
    n = b.numel()
    cols = torch.stack([matvec(torch.nn.functional.one_hot(i, n).to(b)) for i in columns], dim=1)  # n x k
    c64 = cols.double()
    W = c64[columns]
    inner = rho * W + c64.T @ c64
    inner = 0.5 * (inner + inner.T)
    correction = c64 @ torch.linalg.solve(inner, c64.T @ b.double())
    return ((b.double() - correction) / rho).to(b.dtype), len(columns)


class Nystrom(ImplicitSolver):
    """Implicit hypergradient with ``H^{-1}`` replaced by the inverse of a rank-``k`` Nystrom approximation.

    ``k`` Hessian-vector products with unit vectors give ``k`` random columns ``C`` of the inner Hessian (and
    ``W``, their rows at the same indices); ``H ~ C W^+ C^T`` and ``(H_k + rho I)^{-1} d_w F`` follows from a
    ``k x k`` solve (Woodbury). Unlike CG and Neumann the cost is fixed, the products are independent (no
    sequential iteration), and the result is stable for any ``k`` thanks to ``rho``; it is exact (up to ``rho``)
    at full rank and approximates well when the Hessian's spectrum decays fast (Hataya & Yamada). Cost: 2 gradient
    evaluations, ``k + 1`` HVPs (one measures the residual) and 1 mixed product; ``O(n k)`` memory. New random
    columns at every call (a seeded generator, saved with the solver state).

    ``info.residual`` is the true ``||H x - b|| / ||b||``; ``converged`` is always true (the approximation is by
    design, not an unfinished iteration).

    Args:
        rank: number of sampled columns ``k`` (capped at the inner dimension).
        rho: the regulariser added to the low-rank Hessian (on the scale of the Hessian's small eigenvalues).
        seed: seed of the column sampling.
    """

    method = "nystrom"

    def __init__(self, rank: int = 10, rho: float = 1e-2, seed: int = 0, on_nonconvergence: OnNonconvergence = "warn"):
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if not rho > 0:
            raise ValueError(f"rho must be positive, got {rho}")
        super().__init__(iterations=rank, tol=None, on_nonconvergence=on_nonconvergence, warm_start=False)
        self.rank = int(rank)
        self.rho = float(rho)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=False,
                           how=f"rank-{self.rank} Nystrom inverse (H_k + {self.rho} I)^-1", nested="implicit")

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self._generator.set_state(state["generator"])

    def linear_solve(self, matvec, b, warm=True):
        n = b.numel()
        if float(torch.linalg.vector_norm(b)) == 0:
            return torch.zeros_like(b), LinearSolveInfo(0, 0.0, True, 0, "right-hand side is zero")
        columns = torch.randperm(n, generator=self._generator)[: min(self.rank, n)].sort().values.to(b.device)
        x, matvecs = nystrom_solve(matvec, b, columns, self.rho)
        residual = float(torch.linalg.vector_norm(matvec(x) - b) / torch.linalg.vector_norm(b))
        if not math.isfinite(residual):
            from ..errors import SolverDivergedError

            raise SolverDivergedError(f"Nystrom: the solution is NaN/Inf (rank {self.rank}, rho {self.rho})")
        return x, LinearSolveInfo(len(columns), residual, True, matvecs + 1, f"rank {len(columns)} of {n}")
