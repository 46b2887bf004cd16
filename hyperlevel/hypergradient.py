"""The two-level functional entry point ``hyperlevel.hypergradient``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ._flat import flatten, leaves
from .composable import composable_hypergradient, inside_transform
from .errors import InvalidProblemError, SolverDivergedError
from .optimality import STATIONARITY_TOL, relative_stationarity, report_stationarity
from .solvers.base import OnNonconvergence, Solver, SolverInfo, report_convergence
from .solvers.implicit import ConjugateGradient
from .solvers.unrolled import Unrolled
from .validation import check_loss, check_params, check_same_dtype


def hypergradient(
    outer_loss: Callable[[dict[str, Tensor], dict[str, Tensor]], Tensor],
    inner_loss: Callable[[dict[str, Tensor], dict[str, Tensor]], Tensor],
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    solver: Solver | None = None,
    *,
    return_info: bool = False,
    differentiable: bool = False,
) -> dict[str, Tensor] | tuple[dict[str, Tensor], SolverInfo]:
    r"""Gradient of the outer loss with respect to the outer parameters through the inner best response.

    For ``w*(o) = argmin_w inner_loss(o, w)`` this returns (an approximation of)

    .. math:: \frac{d}{do} F(o, w^*(o)) = \partial_o F - \partial_o\partial_w G \, H^{-1} \partial_w F

    evaluated at ``inner_params``, which should be at or near ``w*(o)``. Which quantity exactly is computed
    depends on the solver (docs/concepts.md): the implicit solvers (:class:`~hyperlevel.solvers.ConjugateGradient`,
    :class:`~hyperlevel.solvers.Neumann`) the formula above; ``FiniteDifference`` and ``Unrolled`` the gradient
    through one or ``K`` inner gradient steps; ``FirstOrder`` the partial derivative only.

    Args:
        outer_loss: ``outer_loss(outer_params, inner_params) -> scalar tensor`` (``F``).
        inner_loss: ``inner_loss(outer_params, inner_params) -> scalar tensor`` (``G``).
        outer_params: dict of name -> tensor.
        inner_params: dict of name -> tensor at (or near) a minimiser of ``inner_loss``.
        solver: default ``ConjugateGradient(iterations=50)``.
        return_info: also return a :class:`~hyperlevel.solvers.SolverInfo` (iterations, final residual, ...).
            Not available inside ``torch.func`` transforms (diagnostics need host values).
        differentiable: keep the autograd graph, so that the result can be differentiated again with respect to
            the outer and the inner parameters (hyper-Hessians, meta-meta-learning). Inside ``torch.func``
            transforms (``vmap``, ``grad``, ``jacrev``, ``jacfwd``) this path is taken without the flag.

    Returns:
        A dict with the keys, shapes and dtype of ``outer_params``, and the info when asked. Without
        ``differentiable`` the values are detached, and differentiating through them raises an error (rather
        than silently giving zeros). The user's tensors are never modified and no ``.grad`` is written.

    Checks: implicit solvers measure how stationary the given inner point is and warn
    (:class:`~hyperlevel.InnerOptimalityWarning`) when it is not; see docs/concepts.md, "When the answer may be
    wrong".

    Example:
        >>> import torch, hyperlevel
        >>> o = {"lam": torch.tensor(1.0, dtype=torch.float64)}
        >>> w = {"w": torch.tensor(2.0 / 2.0, dtype=torch.float64)}  # argmin (lam + 1) w^2 / 2 - 2 w
        >>> inner = lambda o, i: (o["lam"] + 1) * i["w"] ** 2 / 2 - 2 * i["w"]
        >>> outer = lambda o, i: (i["w"] - 3) ** 2 / 2
        >>> g = hyperlevel.hypergradient(outer, inner, o, w)  # dF/dlam = (w-3) * (-2/(lam+1)^2)
        >>> round(g["lam"].item(), 6)
        1.0
    """
    return _hypergradient(outer_loss, inner_loss, outer_params, inner_params, solver, return_info=return_info,
                          differentiable=differentiable)


def _hypergradient(
    outer_loss, inner_loss, outer_params, inner_params, solver, *, return_info: bool = False, reduce=None,
    differentiable: bool = False,
):
    """``hypergradient`` plus the data-parallel ``reduce`` hook the engine passes."""
    if solver is None:
        solver = ConjugateGradient(iterations=50)
    if not isinstance(solver, Solver):
        raise InvalidProblemError(
            f"solver must be a hyperlevel.solvers.Solver (e.g. ConjugateGradient(iterations=50)), got {solver!r}"
        )
    for fn, what in ((outer_loss, "outer_loss"), (inner_loss, "inner_loss")):
        if not callable(fn):
            raise InvalidProblemError(f"{what} must be callable(outer_params, inner_params) -> scalar tensor")
    check_params(outer_params, "outer_params", finite=False)
    check_params(inner_params, "inner_params", finite=False)
    dtype = check_same_dtype([("outer_params", outer_params), ("inner_params", inner_params)])
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if compiling is not None and compiling():
        raise InvalidProblemError(
            "hyperlevel.hypergradient cannot be traced by torch.compile: it differentiates twice "
            "(torch.autograd.grad with create_graph=True), which compiled graphs do not support. Call it outside "
            "the compiled function (e.g. wrap it with torch.compiler.disable), or batch with torch.func.vmap"
        )
    if differentiable or inside_transform():
        if reduce is not None:
            raise InvalidProblemError("differentiable hypergradients do not take a data-parallel reduce")
        return _differentiable(outer_loss, inner_loss, outer_params, inner_params, solver, dtype, return_info)
    outer = leaves(outer_params)
    inner = leaves(inner_params)
    try:
        with torch.enable_grad():
            flat, info = solver.solve(outer_loss, inner_loss, outer, inner, reduce)
    except SolverDivergedError:
        _check_inputs_finite(outer_loss, inner_loss, outer_params, inner_params)  # a more precise culprit?
        raise
    # One finiteness test (one host synchronisation) for the whole result; only when it fails do we find out
    # which input, loss or iteration was to blame.
    if not bool(torch.isfinite(flatten([g.detach().reshape(-1) for g in flat])).all()):
        _diagnose_nonfinite(outer_loss, inner_loss, outer_params, inner_params, flat, info)
    result = {name: g.detach().to(dtype).reshape(ref.shape) for (name, ref), g in zip(outer_params.items(), flat)}
    report_convergence(info, getattr(solver, "on_nonconvergence", "warn"))
    _report_stationarity(info, solver)
    result = _guard_detached(result, outer_params, inner_params)
    return (result, info) if return_info else result


def _report_stationarity(info: SolverInfo, solver: Solver) -> None:
    report_stationarity(
        info.stationarity, info.inner_gradient_norm, solver=info.solver,
        policy=getattr(solver, "on_nonstationary", "warn"), tol=getattr(solver, "stationarity_tol", STATIONARITY_TOL),
        where="the given inner point", stacklevel=5,
    )


class _NotDifferentiable(torch.autograd.Function):
    """Passes a detached hypergradient through, and raises when something differentiates through it: without
    this node, ``torch.autograd.functional.jacobian`` of a detached result silently returns zeros."""

    @staticmethod
    def forward(ctx, value: Tensor, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        return value.clone()

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        raise InvalidProblemError(
            "hyperlevel.hypergradient(...) returned a detached result, and something differentiated through it; "
            "pass differentiable=True to keep the autograd graph (or call it inside torch.func.grad / jacrev / "
            "jacfwd / vmap, where that path is taken automatically)"
        )


def _guard_detached(result: dict[str, Tensor], *param_sets: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Attach :class:`_NotDifferentiable` when the inputs are tracked by autograd (else return ``result``)."""
    if not torch.is_grad_enabled():
        return result
    tracked = [t for ps in param_sets for t in ps.values() if t.requires_grad]
    if not tracked:
        return result
    return {k: _NotDifferentiable.apply(v, *tracked) for k, v in result.items()}


def _differentiable(outer_loss, inner_loss, outer_params, inner_params, solver, dtype, return_info):
    """The transform-friendly path (:mod:`hyperlevel.composable`): traced, batchable, differentiable."""
    transformed = inside_transform()
    if return_info and transformed:
        raise InvalidProblemError(
            "return_info is not available inside torch.func transforms: the diagnostics are host values, which a "
            "vmapped or differentiated function cannot produce; call hyperlevel.hypergradient once outside the "
            "transform to inspect them"
        )
    result, diag = composable_hypergradient(outer_loss, inner_loss, outer_params, inner_params, solver)
    result = {name: result[name].to(dtype).reshape(ref.shape) for name, ref in outer_params.items()}
    if transformed:
        return result
    info = SolverInfo(solver=type(solver).__name__, message="differentiable path (torch.func)")
    if "residual" in diag:
        info.iterations = solver.iterations  # type: ignore[attr-defined]
        info.residual = float(diag["residual"])
        info.converged = info.residual <= solver.resolved_tol(diag["residual"])  # type: ignore[attr-defined]
        info.inner_gradient_norm, info.stationarity = relative_stationarity(
            diag["inner_gradient"].detach(), diag["hessian_times_point"].detach()
        )
    elif isinstance(solver, Unrolled):
        info.iterations = solver.steps
    flat = flatten([g.detach().reshape(-1) for g in result.values()])
    if not bool(torch.isfinite(flat).all()):
        _diagnose_nonfinite(outer_loss, inner_loss, outer_params, inner_params, list(result.values()), info)
    report_convergence(info, getattr(solver, "on_nonconvergence", "warn"))
    _report_stationarity(info, solver)
    return (result, info) if return_info else result


def _check_inputs_finite(outer_loss, inner_loss, outer_params, inner_params) -> None:
    """Raise :class:`NonFiniteError` naming a non-finite parameter or loss at the given point."""
    check_params(outer_params, "outer_params")
    check_params(inner_params, "inner_params")
    with torch.enable_grad():
        o, i = leaves(outer_params), leaves(inner_params)
        check_loss(outer_loss(o, i), getattr(outer_loss, "hyperlevel_name", "outer_loss"))
        check_loss(inner_loss(o, i), getattr(inner_loss, "hyperlevel_name", "inner_loss"))


def _diagnose_nonfinite(outer_loss, inner_loss, outer_params, inner_params, flat, info: SolverInfo) -> None:
    """Raise the error that names why a hypergradient came out NaN/Inf: a non-finite parameter, a non-finite
    loss at the given point, or (both finite) the solver's own iterations."""
    _check_inputs_finite(outer_loss, inner_loss, outer_params, inner_params)
    bad = [n for n, g in zip(outer_params, flat) if not bool(torch.isfinite(g).all())]
    hint = (" (for Unrolled and FiniteDifference: inner_lr is likely too large for this inner loss; for Neumann: "
            "alpha exceeds 2 / lambda_max)")
    raise SolverDivergedError(
        f"{info.solver}: the hypergradient for {bad} contains NaN or Inf although both losses are finite at the "
        f"given point: the solver's iterations diverged{hint}"
    )


__all__ = ["hypergradient", "OnNonconvergence"]
