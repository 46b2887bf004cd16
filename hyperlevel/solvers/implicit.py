"""Implicit-function-theorem hypergradients: conjugate gradient and Neumann series.

At an inner minimiser ``w*(o)`` of ``G(o, w)`` the implicit function theorem gives

    dF/do = d_o F(o, w*) - (d_o d_w G)(o, w*) H^{-1} d_w F(o, w*),    H = d_w d_w G(o, w*),

so one linear solve ``H x = d_w F`` (matrix-free, by Hessian-vector products) plus one mixed second-derivative
product gives the exact hypergradient, whatever path led to ``w*``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Literal

import torch
from torch import Tensor

from .._flat import flatten
from ..errors import InvalidProblemError
from ..functional import (
    HessianOperator,
    check_outer_used,
    inner_gradient,
    outer_partials,
    total_derivative,
    zeros_for_none,
)
from ..hvp import AutoHvp, check_hvp_option, resolve
from ..optimality import ADVICE, ON_NONSTATIONARY, STATIONARITY_TOL, OnNonstationary, relative_stationarity
from ..precision import UnitProducts
from ..spectral import largest_eigenvalue
from ..typing import PairLoss, Params, Reduce
from .base import OnNonconvergence, Solver, SolverInfo, check_choice, reduce_list
from .linear import LinearSolveInfo, conjugate_gradient, minres, neumann_series
from .preconditioners import Preconditioner
from .preconditioners import resolve as resolve_preconditioner
from .target import Declaration, ImplicitTarget


def default_tol(dtype: torch.dtype) -> float:
    """A relative residual each dtype can reach: 1e-10 in float64, 1e-5 in float32 and lower precision."""
    return 1e-10 if dtype == torch.float64 else 1e-5


class ImplicitSolver(Solver):
    """Shared machinery of the implicit solvers; subclasses only choose the linear solver."""

    def __init__(self, iterations: int, tol: float | None, on_nonconvergence: OnNonconvergence, warm_start: bool,
                 on_nonstationary: OnNonstationary = "warn", stationarity_tol: float = STATIONARITY_TOL,
                 hvp: str | AutoHvp = "double_backward"):
        check_choice("on_nonconvergence", on_nonconvergence, ("warn", "raise", "ignore"))
        check_choice("on_nonstationary", on_nonstationary, ON_NONSTATIONARY)
        if not stationarity_tol > 0:
            raise ValueError(f"stationarity_tol must be positive, got {stationarity_tol}")
        self.on_nonstationary: OnNonstationary = on_nonstationary
        self.stationarity_tol = float(stationarity_tol)
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
        b = flatten(zeros_for_none(d_inner, inner))
        if reduce is not None:
            b = reduce(b)
            x, lin = self.linear_solve(lambda v: reduce(hessian(v)), b)
        else:
            x, lin = self.linear_solve(hessian, b)
        if lin.indefinite and self.on_nonconvergence != "ignore":
            raise InvalidProblemError(
                f"{type(self).__name__}: {lin.message}. The implicit hypergradient is defined at a strict local "
                "minimum of the inner loss, and no linear solver (Neumann included: its series diverges on a "
                "negative eigenvalue) fixes a point that is not one: solve the inner problem to a minimum (e.g. "
                "hyperlevel.solve_inner), add curvature (regularisation) if the inner loss has none, or use "
                "Unrolled / FiniteDifference, whose targets are defined at any inner point"
            )
        if self.warm_start:
            self._previous = x.detach()
        # the gradient at the given point: the double-backward operator holds it; other product paths pay one
        # more (graph-free) gradient for the stationarity check
        exact_graph = getattr(hessian, "operator", hessian)
        if isinstance(exact_graph, HessianOperator):
            grad_w, extra_gradients = exact_graph.grad, 0
        else:
            grad_w, extra_gradients = inner_gradient(inner_loss, outer, inner, create_graph=False), 1
        g_norm, stationarity = self._stationarity(grad_w, inner, hessian, reduce)
        mixed = hessian.mixed(outer, x)
        check_outer_used(outer, direct, list(mixed))
        result = total_derivative(direct, mixed, outer)
        result = reduce_list(reduce, result)
        info = SolverInfo(
            solver=type(self).__name__,
            iterations=lin.iterations,
            residual=lin.residual,
            converged=lin.converged,
            gradient_evals=2 + extra_gradients,
            hvp_evals=lin.matvecs + 2,
            message=lin.message,
            outer_loss=float(f_value.detach()),
            inner_gradient_norm=g_norm,
            stationarity=stationarity,
            hvp=hvp_path,
        )
        info.extra.update(hvp_extra)
        return result, info

    @staticmethod
    def _stationarity(grad_w, inner: Params, hessian: HessianOperator, reduce: Reduce | None) -> tuple[float, float]:
        """``(||g||, relative stationarity)`` at the given point (one Hessian-vector product; the graph stays)."""
        with torch.no_grad():
            g = flatten([t.detach() for t in grad_w])
            w = flatten([t.detach() for t in inner.values()])
        hw = hessian(w)
        if reduce is not None:
            g, hw = reduce(g), reduce(hw)
        return relative_stationarity(g, hw.detach())

    def warm_start_point(self, b: Tensor, warm: bool = True) -> Tensor | None:
        """The previous call's solution as the starting point (``warm_start``), when it fits ``b``; else None."""
        x0 = self._previous if warm and self.warm_start and self._previous is not None else None
        if x0 is None or x0.shape != b.shape or x0.dtype != b.dtype:
            return None
        return x0.to(b.device)

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
            ``"ignore"`` also accepts a solve truncated at non-positive curvature (otherwise an error): the result
            is then not the implicit hypergradient, and ``info.converged`` is ``False``.
        warm_start: start CG from the previous call's solution (useful inside a training loop).
        on_nonstationary: ``"warn"`` (default), ``"raise"`` or ``"ignore"`` when the given inner point is not
            stationary (relative stationarity above ``stationarity_tol``; see :mod:`hyperlevel.optimality`).
        stationarity_tol: the threshold of that check (default 1e-3).
        hvp: how Hessian-vector products are computed (:mod:`hyperlevel.hvp`): ``"double_backward"`` (default),
            ``"forward_over_reverse"``, ``"finite_difference"`` (an approximation, opt-in) or ``"auto"`` (timed
            once per problem signature and device, cached; the choice is reported in ``SolverInfo.hvp``).
        preconditioner: ``None`` (default: plain CG), ``"jacobi"`` (exact diagonal, ``n`` batched products),
            ``"hutchinson"`` (diagonal estimated from 10 probes), ``"nystrom"`` (rank-50 randomised Nystrom) or a
            builder from :mod:`hyperlevel.solvers.preconditioners` (e.g. ``Jacobi(probes=20)``). Built once per
            call; its products count in ``hvp_evals``. Same solution, fewer iterations when the preconditioned
            Hessian is better conditioned; whether that is faster overall is measured per problem in
            docs/benchmarks.md ("CG levers"): on the benchmark problems it is not, so the default stays off.
    """

    method = "cg"

    def __init__(
        self,
        iterations: int = 50,
        tol: float | None = None,
        on_nonconvergence: OnNonconvergence = "warn",
        warm_start: bool = False,
        on_nonstationary: OnNonstationary = "warn",
        stationarity_tol: float = STATIONARITY_TOL,
        hvp: str | AutoHvp = "double_backward",
        preconditioner: str | Preconditioner | None = None,
    ):
        super().__init__(iterations, tol, on_nonconvergence, warm_start, on_nonstationary, stationarity_tol, hvp)
        self.preconditioner = resolve_preconditioner(preconditioner)

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=True, how="conjugate gradients on H x = d_w F, up to tol",
                           nested="implicit")

    def linear_solve(self, matvec, b, warm=True):
        x0 = self.warm_start_point(b, warm)
        apply, products = None, 0
        if self.preconditioner is not None and bool(b.any()):
            apply, products = self.preconditioner.build(matvec, b)
        x, lin = conjugate_gradient(
            matvec, b, iterations=self.iterations, tol=self.resolved_tol(b), x0=x0, solver_name=type(self).__name__,
            preconditioner=apply,
        )
        lin.matvecs += products
        return x, lin


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
            ``"auto"`` estimates ``lambda_max`` by power iteration on Hessian-vector products at every call
            (:func:`hyperlevel.spectral.largest_eigenvalue`, ``power_iterations`` products) and uses
            ``alpha = 1 / lambda_max``, safe while the estimate is within a factor 2 of the truth.
        tol: relative residual at which to stop early (default 1e-10 in float64, 1e-5 else).
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        on_nonstationary: as for :class:`ConjugateGradient`.
        stationarity_tol: as for :class:`ConjugateGradient`.
        power_iterations: the products spent on the estimate when ``alpha="auto"``.
        hvp: the product path, as for :class:`ConjugateGradient`.
    """

    method = "neumann"

    def __init__(
        self,
        iterations: int = 100,
        alpha: float | Literal["auto"] = 0.01,
        tol: float | None = None,
        on_nonconvergence: OnNonconvergence = "warn",
        on_nonstationary: OnNonstationary = "warn",
        stationarity_tol: float = STATIONARITY_TOL,
        power_iterations: int = 30,
        hvp: str | AutoHvp = "double_backward",
    ):
        if isinstance(alpha, str):
            if alpha != "auto":
                raise ValueError(f"alpha must be a positive number or 'auto', got {alpha!r}")
        elif not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if power_iterations < 1:
            raise ValueError(f"power_iterations must be >= 1, got {power_iterations}")
        super().__init__(iterations, tol, on_nonconvergence, False, on_nonstationary, stationarity_tol, hvp)
        self.alpha: float | str = alpha if isinstance(alpha, str) else float(alpha)
        self.power_iterations = int(power_iterations)
        #: the step used by the last solve (the estimate when ``alpha="auto"``)
        self.last_alpha: float = math.nan if isinstance(alpha, str) else float(alpha)

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=True, how="truncated Neumann series for H^-1 d_w F, up to tol",
                           nested="implicit")

    def resolve_alpha(self, matvec, b: Tensor) -> float:
        """The series step: ``alpha`` itself, or ``1 / lambda_max`` estimated by power iteration."""
        if self.alpha != "auto":
            return float(self.alpha)
        estimate = largest_eigenvalue(matvec, b, iterations=self.power_iterations)
        if not estimate.value > 0:
            raise InvalidProblemError(
                f"Neumann(alpha='auto'): the inner Hessian's dominant eigenvalue is {estimate.value:.3e} <= 0: the "
                f"inner point is not a minimum and no alpha makes the series converge; {ADVICE}"
            )
        return 1.0 / estimate.value

    def linear_solve(self, matvec, b, warm=True):
        counted = _CountingMatVec(matvec)
        alpha = self.resolve_alpha(counted, b)
        self.last_alpha = alpha
        x, lin = neumann_series(
            matvec, b, iterations=self.iterations, alpha=alpha, tol=self.resolved_tol(b),
            solver_name=f"Neumann(alpha={self.alpha if self.alpha == 'auto' else alpha})",
        )
        lin.matvecs += counted.calls
        return x, lin


class _CountingMatVec:
    """A matvec that counts its calls (the power iteration's products are part of the solver's cost)."""

    def __init__(self, matvec):
        self.matvec, self.calls = matvec, 0

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        return self.matvec(v)


class MinimalResidual(ImplicitSolver):
    """Implicit hypergradient with the linear system solved by MINRES (symmetric, possibly indefinite).

    For two levels it computes the same quantity as :class:`ConjugateGradient` (about as many iterations on a
    positive-definite Hessian; it minimises the residual instead of the energy norm, so it does not stop at
    non-positive curvature). Its purpose is the *joint* nested hypergradient for three or more levels
    (docs/nesting.md): ``nested_hypergradient`` with this solver solves one symmetric indefinite saddle-point system
    (the Hessian of the top Lagrangian) plus one smaller system per deeper level for its adjoints, instead of the
    chord-step recursion of CG / Neumann whose cost multiplies with depth.

    Args:
        iterations: maximal MINRES iterations per linear solve.
        tol: relative residual ``||A x - b|| / ||b||`` at which to stop (default 1e-10 in float64, 1e-5 else).
        on_nonconvergence: ``"warn"`` (default), ``"raise"`` or ``"ignore"``.
        warm_start: start from the previous call's solution (two-level hypergradients only).
    """

    method = "minres"

    def __init__(
        self,
        iterations: int = 200,
        tol: float | None = None,
        on_nonconvergence: OnNonconvergence = "warn",
        warm_start: bool = False,
    ):
        super().__init__(iterations, tol, on_nonconvergence, warm_start)

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=True, how="MINRES on H x = d_w F (symmetric, indefinite allowed)",
                           nested="joint")

    def linear_solve(self, matvec, b, warm=True):
        x0 = self.warm_start_point(b, warm)
        return minres(matvec, b, iterations=self.iterations, tol=self.resolved_tol(b), x0=x0,
                      solver_name=type(self).__name__)


__all__ = ["ConjugateGradient", "ImplicitSolver", "InvalidProblemError", "MinimalResidual", "Neumann"]
