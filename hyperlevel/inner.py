"""``hyperlevel.solve_inner``: bring the inner parameters to a stationary point before an implicit hypergradient.

The implicit solvers compute a quantity defined at an inner minimiser and warn when the given point is not one
(:mod:`hyperlevel.optimality`). This is the matching remedy: minimise the inner loss for fixed outer parameters
until the *same* stationarity measure is below a tolerance, and say how far it got.

Two methods, both matrix-free. The default is Newton-CG because the implicit solvers want a *high-accuracy*
stationary point: loss-based line searches such as L-BFGS's stall once the loss stops changing in floating point
(around a relative stationarity of 1e-8 in float64 on the logistic test problem), whereas Newton's full steps keep
converging quadratically.

* ``"lbfgs"``: ``torch.optim.LBFGS`` with a strong-Wolfe line search, run in chunks of
  ``check_every`` iterations with the stationarity measured between chunks. Robust on non-convex losses; gradients
  only (plus one Hessian-vector product per check).
* ``"newton-cg"`` (default): Newton steps whose system is solved by conjugate gradients on Hessian-vector products (to a
  relative residual ``min(0.5, sqrt(||g||))``, the classic forcing sequence), with an Armijo backtracking line
  search; a step that meets negative curvature falls back to the steepest-descent direction. Quadratic
  convergence near a strict minimum, so it reaches ``1e-12`` in a handful of steps when the Hessian is benign.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ._flat import flatten, leaves, unflatten
from .errors import ConvergenceWarning, InvalidProblemError, NonFiniteError
from .functional import HessianOperator
from .optimality import relative_stationarity
from .solvers.base import check_choice
from .solvers.linear import conjugate_gradient
from .typing import PairLoss
from .validation import check_loss, check_params, check_same_dtype

Method = Literal["lbfgs", "newton-cg"]


@dataclass
class InnerSolveInfo:
    """What :func:`solve_inner` did.

    Attributes:
        method: ``"lbfgs"`` or ``"newton-cg"``.
        iterations: outer iterations (L-BFGS iterations or Newton steps).
        gradient_evals: evaluations of the inner loss with its gradient.
        hvp_evals: Hessian-vector products (stationarity checks and Newton-CG systems).
        loss: the inner loss at the returned point.
        gradient_norm: ``||grad_w G||`` there.
        stationarity: the relative stationarity there (the measure the implicit solvers check).
        converged: ``stationarity <= tol``.
        message: why it stopped.
    """

    method: str
    iterations: int = 0
    gradient_evals: int = 0
    hvp_evals: int = 0
    loss: float = math.nan
    gradient_norm: float = math.nan
    stationarity: float = math.nan
    converged: bool = False
    message: str = ""


def default_inner_tol(dtype: torch.dtype) -> float:
    """1e-9 in float64, 1e-4 in lower precision: well below the solvers' warning threshold (1e-3)."""
    return 1e-9 if dtype == torch.float64 else 1e-4


class _Problem:
    """The inner loss as a function of one flat vector, with counters."""

    def __init__(self, inner_loss: PairLoss, outer: Mapping[str, Tensor], inner: Mapping[str, Tensor]):
        self.loss_fn = inner_loss
        self.outer = {k: v.detach() for k, v in outer.items()}
        self.names = list(inner)
        self.like = [v.detach() for v in inner.values()]
        self.gradient_evals = 0
        self.hvp_evals = 0

    def as_dict(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.names, unflatten(x, self.like), strict=True))

    def value(self, x: Tensor) -> Tensor:
        return check_loss(self.loss_fn(self.outer, self.as_dict(x)), "inner_loss", finite=False)

    def value_and_grad(self, x: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
        self.gradient_evals += 1
        with torch.enable_grad():
            leaf = x if x.requires_grad else x.detach().requires_grad_()
            value = self.value(leaf)
            (g,) = torch.autograd.grad(value, leaf, create_graph=create_graph, allow_unused=True)
        if g is None:
            raise InvalidProblemError("inner_loss does not depend on the inner parameters")
        if create_graph and not g.requires_grad:  # linear in w: no curvature, no minimiser
            raise InvalidProblemError(
                "inner_loss is linear in the inner parameters: it has no minimiser; add a curvature term"
            )
        return value, g

    def stationarity(self, x: Tensor) -> tuple[float, float, float]:
        """``(loss, ||g||, relative stationarity)`` at ``x`` (one gradient and one Hessian-vector product)."""
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            value, g = self.value_and_grad(leaf, create_graph=True)
            hx = HessianOperator(g, {"x": leaf})(x.detach())
            self.hvp_evals += 1
        g_norm, stationarity = relative_stationarity(g.detach(), hx.detach())
        return float(value.detach()), g_norm, stationarity


def solve_inner(
    inner_loss: PairLoss,
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    *,
    method: Method = "newton-cg",
    tol: float | None = None,
    max_iterations: int = 500,
    check_every: int = 10,
    return_info: bool = False,
) -> dict[str, Tensor] | tuple[dict[str, Tensor], InnerSolveInfo]:
    """Minimise ``inner_loss(outer_params, w)`` over ``w`` from ``inner_params`` to a relative stationarity ``tol``.

    Args:
        inner_loss: ``inner_loss(outer_params, inner_params) -> scalar tensor``, as for
            :func:`hyperlevel.hypergradient`.
        outer_params: held fixed (detached).
        inner_params: the starting point (not modified).
        method: ``"newton-cg"`` (default) or ``"lbfgs"`` (module docstring).
        tol: target relative stationarity ``||g|| / ||H w - g||`` (default 1e-9 in float64, 1e-4 else).
        max_iterations: L-BFGS iterations or Newton steps at most.
        check_every: L-BFGS iterations between stationarity checks.
        return_info: also return an :class:`InnerSolveInfo`.

    Returns:
        The solution (a dict like ``inner_params``, detached), and the info when asked. When the tolerance is not
        reached a :class:`~hyperlevel.ConvergenceWarning` says how far it got.

    Example:
        >>> w = hyperlevel.solve_inner(inner_loss, o, w0)
        >>> g = hyperlevel.hypergradient(outer_loss, inner_loss, o, w)  # no InnerOptimalityWarning
    """
    check_choice("method", method, ("lbfgs", "newton-cg"))
    if max_iterations < 1 or check_every < 1:
        raise ValueError(f"max_iterations and check_every must be >= 1, got {max_iterations}, {check_every}")
    check_params(outer_params, "outer_params")
    check_params(inner_params, "inner_params")
    dtype = check_same_dtype([("outer_params", outer_params), ("inner_params", inner_params)])
    if tol is None:
        tol = default_inner_tol(dtype)
    elif not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    problem = _Problem(inner_loss, leaves(outer_params, requires_grad=False), inner_params)
    x = flatten([t.detach() for t in inner_params.values()]).clone()
    run = _lbfgs if method == "lbfgs" else _newton_cg
    x, info = run(problem, x, tol, max_iterations, check_every)
    info.gradient_evals, info.hvp_evals = problem.gradient_evals, problem.hvp_evals
    if not math.isfinite(info.loss) or not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"solve_inner ({method}): the inner loss or the iterate became non-finite; {info.message}")
    if not info.converged:
        warnings.warn(
            f"solve_inner ({method}) stopped after {info.iterations} iterations at relative stationarity "
            f"{info.stationarity:.3e} > tol {tol:g} ({info.message}); raise max_iterations, try the other method, "
            "or check that the inner loss has a minimiser (e.g. add L2 regularisation)",
            ConvergenceWarning,
            stacklevel=2,
        )
    result = {name: t.detach().clone() for name, t in problem.as_dict(x).items()}
    return (result, info) if return_info else result


def _lbfgs(problem: _Problem, x: Tensor, tol: float, max_iterations: int, check_every: int):
    info = InnerSolveInfo(method="lbfgs")
    param = x.clone().requires_grad_()
    opt = torch.optim.LBFGS([param], lr=1, max_iter=check_every, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        value, g = problem.value_and_grad(param.detach())
        param.grad = g
        return value.detach()

    info.loss, info.gradient_norm, info.stationarity = problem.stationarity(param.detach())
    info.message = "tolerance reached"
    while not info.stationarity <= tol:
        if info.iterations >= max_iterations:
            info.message = "iteration cap"
            break
        before = param.detach().clone()
        opt.max_iter = opt.param_groups[0]["max_iter"] = min(check_every, max_iterations - info.iterations)
        opt.step(closure)
        info.iterations += opt.param_groups[0]["max_iter"]
        info.loss, info.gradient_norm, info.stationarity = problem.stationarity(param.detach())
        if not math.isfinite(info.loss):
            info.message = "non-finite loss"
            break
        if torch.equal(before, param.detach()):
            info.message = "no progress (line search failed to decrease the loss)"
            break
    info.converged = info.stationarity <= tol
    return param.detach(), info


def _newton_cg(problem: _Problem, x: Tensor, tol: float, max_iterations: int, check_every: int):
    del check_every  # every Newton step is checked
    info = InnerSolveInfo(method="newton-cg", message="tolerance reached")
    x = x.clone()
    while True:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            value, g = problem.value_and_grad(leaf, create_graph=True)
            hessian = HessianOperator(g, {"x": leaf})
            hx = hessian(x)
        info.loss = float(value.detach())
        info.gradient_norm, info.stationarity = relative_stationarity(g.detach(), hx.detach())
        problem.hvp_evals += 1
        if info.stationarity <= tol or not math.isfinite(info.loss):
            break
        if info.iterations >= max_iterations:
            info.message = "iteration cap"
            break
        g_flat = g.detach()
        forcing = min(0.5, math.sqrt(info.gradient_norm))
        direction, lin = conjugate_gradient(hessian, g_flat, iterations=max(20, 2 * g_flat.numel()), tol=forcing,
                                            solver_name="solve_inner Newton-CG")
        problem.hvp_evals += lin.matvecs
        slope = float(torch.dot(g_flat, direction))
        if lin.indefinite and lin.iterations <= 1 or not slope > 0:
            direction, slope = g_flat, float(torch.dot(g_flat, g_flat))  # steepest descent
        step, current = 1.0, info.loss
        for _ in range(40):  # Armijo backtracking
            with torch.no_grad():
                candidate = x - step * direction
            trial = float(problem.value(candidate.detach().requires_grad_()).detach())
            rounding = 16 * torch.finfo(x.dtype).eps * abs(current)  # near the minimum the loss stops changing
            if math.isfinite(trial) and trial <= current - 1e-4 * step * slope + rounding:
                break
            step *= 0.5
        else:
            info.message = "line search failed (the loss does not decrease along the Newton or gradient direction)"
            break
        x = candidate.detach()
        info.iterations += 1
    info.converged = info.stationarity <= tol
    return x.detach(), info


__all__ = ["InnerSolveInfo", "default_inner_tol", "solve_inner"]
