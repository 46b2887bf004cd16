"""Implicit-function-theorem hypergradients: conjugate gradient and Neumann series.

At an inner minimiser ``w*(o)`` of ``G(o, w)`` the implicit function theorem gives

    dF/do = d_o F(o, w*) - (d_o d_w G)(o, w*) H^{-1} d_w F(o, w*),    H = d_w d_w G(o, w*),

so one linear solve ``H x = d_w F`` (matrix-free, by Hessian-vector products) plus one mixed second-derivative
product gives the exact hypergradient, whatever path led to ``w*``.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from .._flat import Params, flatten
from ..errors import InvalidProblemError
from ..functional import check_outer_used, outer_partials
from ..hvp import AutoHvp, check_hvp_option, resolve
from ..precision import UnitProducts
from .base import OnNonconvergence, PairLoss, Reduce, Solver, SolverInfo, reduce_list
from .linear import LinearSolveInfo, conjugate_gradient, neumann_series
from .target import Declaration, ImplicitTarget


def default_tol(dtype: torch.dtype) -> float:
    """A relative residual each dtype can reach: 1e-10 in float64, 1e-5 in float32 and lower precision."""
    return 1e-10 if dtype == torch.float64 else 1e-5


class ImplicitSolver(Solver):
    """Shared machinery of the implicit solvers; subclasses only choose the linear solver."""

    def __init__(self, iterations: int, tol: float | None, on_nonconvergence: OnNonconvergence, warm_start: bool,
                 hvp: str | AutoHvp = "double_backward"):
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if tol is not None and tol <= 0:
            raise ValueError(f"tol must be positive, got {tol}")
        self.iterations = int(iterations)
        self.tol = tol
        self.on_nonconvergence: OnNonconvergence = on_nonconvergence
        self.warm_start = warm_start
        self.hvp = check_hvp_option(hvp)
        self._previous: Tensor | None = None

    def state_dict(self) -> dict:
        return {"previous": self._previous} if self.warm_start and self._previous is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._previous = state.get("previous")

    @abstractmethod
    def linear_solve(self, matvec, b: Tensor, warm: bool = True) -> tuple[Tensor, LinearSolveInfo]:
        """Solve ``H x = b`` approximately for symmetric ``H``, with ``matvec(v) = H v``; ``warm=False`` ignores any
        warm start (the nested path solves a different system each time)."""

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        f_value, direct, d_inner = outer_partials(outer_loss, outer, inner)
        hvp = self.hvp
        if isinstance(hvp, str) and hvp == "auto":
            hvp = AutoHvp(expected_products=self.iterations)
        hessian, hvp_path, hvp_extra = resolve(hvp, inner_loss, outer, inner)
        if getattr(inner_loss, "hyperlevel_precision", None) is not None:  # mixed precision: keep products in range
            hessian = UnitProducts(hessian)
        b = flatten([torch.zeros_like(p) if g is None else g for g, p in zip(d_inner, inner.values(), strict=True)])
        if reduce is not None:
            b = reduce(b)
            x, lin = self.linear_solve(lambda v: reduce(hessian(v)), b)
        else:
            x, lin = self.linear_solve(hessian, b)
        if lin.indefinite and self.on_nonconvergence != "ignore":
            raise InvalidProblemError(
                f"{type(self).__name__}: {lin.message}. The implicit hypergradient needs a strict local minimum "
                "of the inner loss; converge the inner problem further, add curvature (regularisation), or use "
                "Neumann/Unrolled, or pass on_nonconvergence='ignore' to accept the truncated solve"
            )
        if self.warm_start:
            self._previous = x.detach()
        mixed = hessian.mixed(outer, x)
        check_outer_used(outer, direct, list(mixed))
        result = []
        for d, m, p in zip(direct, mixed, outer.values(), strict=True):
            g = torch.zeros_like(p) if d is None else d
            result.append(g if m is None else g - m)
        result = reduce_list(reduce, result)
        info = SolverInfo(
            solver=type(self).__name__,
            iterations=lin.iterations,
            residual=lin.residual,
            converged=lin.converged,
            gradient_evals=2,
            hvp_evals=lin.matvecs + 1,
            message=lin.message,
            outer_loss=float(f_value.detach()),
            hvp=hvp_path,
        )
        info.extra.update(hvp_extra)
        return result, info

    def resolved_tol(self, b: Tensor) -> float:
        return self.tol if self.tol is not None else default_tol(b.dtype)


class ConjugateGradient(ImplicitSolver):
    """Implicit hypergradient with the linear system solved by conjugate gradients.

    Computes the implicit-function-theorem hypergradient at the given inner point (exact when that point is an
    inner minimiser and CG converges). Cost: 2 gradient evaluations, ``k <= iterations`` Hessian-vector
    products and 1 mixed second-derivative product. Needs a positive-definite inner Hessian. The fastest exact
    choice on well-conditioned problems; iterations grow with the square root of the condition number.

    Args:
        iterations: maximal CG iterations.
        tol: relative residual ``||H x - b|| / ||b||`` at which to stop (default 1e-10 in float64, 1e-5 else).
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"`` when the tolerance is not reached.
        warm_start: start CG from the previous call's solution (useful inside a training loop).
        hvp: how Hessian-vector products are computed (:mod:`hyperlevel.hvp`): ``"double_backward"`` (default),
            ``"forward_over_reverse"``, ``"finite_difference"`` (an approximation, opt-in) or ``"auto"`` (timed
            once per problem signature and device, cached; the choice is reported in ``SolverInfo.hvp``).
    """

    method = "cg"

    def __init__(
        self,
        iterations: int = 50,
        tol: float | None = None,
        on_nonconvergence: OnNonconvergence = "warn",
        warm_start: bool = False,
        hvp: str | AutoHvp = "double_backward",
    ):
        super().__init__(iterations, tol, on_nonconvergence, warm_start, hvp)

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=True, how="conjugate gradients on H x = d_w F, up to tol",
                           nested="implicit")

    def linear_solve(self, matvec, b, warm=True):
        x0 = self._previous if warm and self.warm_start and self._previous is not None else None
        if x0 is not None and (x0.shape != b.shape or x0.dtype != b.dtype):
            x0 = None
        elif x0 is not None:
            x0 = x0.to(b.device)
        return conjugate_gradient(
            matvec, b, iterations=self.iterations, tol=self.resolved_tol(b), x0=x0, solver_name=type(self).__name__
        )


class Neumann(ImplicitSolver):
    """Implicit hypergradient with ``H^{-1}`` approximated by a truncated Neumann series.

    Computes ``d_o F - (d_o d_w G) alpha sum_{j<=K} (I - alpha H)^j d_w F`` at the given inner point, which
    tends to the implicit hypergradient as ``K`` grows when ``0 < alpha < 2 / lambda_max(H)``. Cost: 2 gradient
    evaluations, ``K + 1`` Hessian-vector products (one measures the residual) and 1 mixed product. Converges
    linearly at rate ``max |1 - alpha lambda|``: slower than CG, but it never divides by a curvature, so it
    degrades gracefully on indefinite or noisy Hessians (stochastic settings, early training).

    Args:
        iterations: number of series terms ``K``.
        alpha: step of the series; must satisfy ``alpha < 2 / lambda_max`` (the solver raises when it diverges).
        tol: relative residual at which to stop early (default 1e-10 in float64, 1e-5 else).
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        hvp: the product path, as for :class:`ConjugateGradient`.
    """

    method = "neumann"

    def __init__(
        self,
        iterations: int = 100,
        alpha: float = 0.01,
        tol: float | None = None,
        on_nonconvergence: OnNonconvergence = "warn",
        hvp: str | AutoHvp = "double_backward",
    ):
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        super().__init__(iterations, tol, on_nonconvergence, warm_start=False, hvp=hvp)
        self.alpha = float(alpha)

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=True, how="truncated Neumann series for H^-1 d_w F, up to tol",
                           nested="implicit")

    def linear_solve(self, matvec, b, warm=True):
        return neumann_series(
            matvec, b, iterations=self.iterations, alpha=self.alpha, tol=self.resolved_tol(b),
            solver_name=f"Neumann(alpha={self.alpha})",
        )


__all__ = ["ConjugateGradient", "Neumann", "ImplicitSolver", "InvalidProblemError"]
