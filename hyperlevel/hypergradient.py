"""The two-level functional entry point ``hyperlevel.hypergradient``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from ._flat import flatten, leaves
from .composable import composable_hypergradient, inside_transform
from .errors import InvalidProblemError, SolverDivergedError
from .optimality import STATIONARITY_TOL, relative_stationarity, report_stationarity
from .precision import Precision, as_precision, check_float32, rescaled_solver
from .solvers.base import OnNonconvergence, Solver, SolverInfo, report_convergence
from .solvers.dense import DENSE_MAX_SIZE, Dense
from .solvers.implicit import ConjugateGradient
from .solvers.registry import solver_type_message
from .solvers.unrolled import Unrolled
from .typing import PairLoss
from .validation import check_loss, check_params, check_same_dtype


def hypergradient(
    outer_loss: PairLoss,
    inner_loss: PairLoss,
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    solver: Solver | None = None,
    *,
    return_info: bool = False,
    differentiable: bool = False,
    precision: Precision | str | None = None,
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
        solver: default: :class:`~hyperlevel.solvers.Dense` when the inner parameters have at most
            ``hyperlevel.solvers.DENSE_MAX_SIZE`` entries (the measured crossover, docs/benchmarks.md), else
            ``ConjugateGradient(iterations=50)``; both compute the exact implicit hypergradient.
            ``hyperlevel.solvers.get(name, **options)`` builds one by name.
        return_info: also return a :class:`~hyperlevel.solvers.SolverInfo` (iterations, final residual, ...).
            Not available inside ``torch.func`` transforms (diagnostics need host values).
        differentiable: keep the autograd graph, so that the result can be differentiated again with respect to
            the outer and the inner parameters (hyper-Hessians, meta-meta-learning). Inside ``torch.func``
            transforms (``vmap``, ``grad``, ``jacrev``, ``jacfwd``) this path is taken without the flag.
        precision: run both losses' forward passes under autocast (``"bfloat16"``, ``"float16"`` or a
            :class:`~hyperlevel.precision.Precision`); parameters must be float32, and the solver's vectors, the
            result and the optimizer state stay float32. float16 uses loss scaling (:mod:`hyperlevel.precision`).
            Not supported with ``differentiable=True`` or inside ``torch.func`` transforms (raises).

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
                          differentiable=differentiable, outer_precision=precision, inner_precision=precision)


def _hypergradient(
    outer_loss, inner_loss, outer_params, inner_params, solver, *, return_info: bool = False, reduce=None,
    differentiable: bool = False, outer_precision=None, inner_precision=None,
):
    """``hypergradient`` plus the data-parallel ``reduce`` hook and a precision per loss (the engine's levels)."""
    if solver is None:  # the differentiable path needs a transform-friendly solver (Dense is not one)
        transformable = differentiable or inside_transform()
        solver = ConjugateGradient(iterations=50) if transformable else default_solver(inner_params)
    if not isinstance(solver, Solver):
        raise InvalidProblemError(solver_type_message(solver))
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
    outer_precision, inner_precision = as_precision(outer_precision), as_precision(inner_precision)
    if differentiable or inside_transform():
        if reduce is not None:
            raise InvalidProblemError("differentiable hypergradients do not take a data-parallel reduce")
        if outer_precision is not None or inner_precision is not None:
            raise InvalidProblemError(
                "precision= is not supported by the differentiable path (differentiable=True or inside torch.func "
                "transforms): its loss scaling and retries need host decisions, and autocast products are not "
                "differentiated again reliably; drop precision, or call without differentiable for a mixed-precision "
                "hypergradient"
            )
        return _differentiable(outer_loss, inner_loss, outer_params, inner_params, solver, dtype, return_info)
    check_float32(outer_precision, outer_params, "outer_params")
    check_float32(inner_precision, inner_params, "inner_params")
    outer = leaves(outer_params)
    inner = leaves(inner_params)
    try:
        with torch.enable_grad():
            if outer_precision is None and inner_precision is None:
                flat, info = solver.solve(outer_loss, inner_loss, outer, inner, reduce)
            else:
                flat, info = _solve_mixed(solver, outer_loss, inner_loss, outer, inner, reduce, outer_precision,
                                          inner_precision)
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


def default_solver(inner_params: Mapping[str, Tensor] | None = None) -> Solver:
    """The library's default two-level solver: the fastest exact one for this inner size, dense Cholesky up to
    ``DENSE_MAX_SIZE`` inner entries, else ``ConjugateGradient(iterations=50)``; CG as well when the size is not
    known yet (``None``: a :class:`~hyperlevel.Phase` is built before its levels are bound)."""
    size = sum(t.numel() for t in inner_params.values()) if isinstance(inner_params, Mapping) else DENSE_MAX_SIZE + 1
    return Dense() if size <= DENSE_MAX_SIZE else ConjugateGradient(iterations=50)


def _solve_mixed(solver, outer_loss, inner_loss, outer, inner, reduce, outer_precision, inner_precision):
    """Solve with the losses under autocast and scaled; undo the scales. In float16 the scales are first lowered
    until both losses' gradients are finite, and halved again whenever the solve overflows (a non-finite result,
    a diverged or non-finite linear solve): dynamic loss scaling, as ``torch.amp.GradScaler`` does for a step."""
    scale_f = outer_precision.scale if outer_precision is not None else 1.0
    scale_g = inner_precision.scale if inner_precision is not None else 1.0
    float16 = any(p is not None and p.dtype == "float16" for p in (outer_precision, inner_precision))
    retries = max(p.max_retries for p in (outer_precision, inner_precision) if p is not None) if float16 else 0

    def wrapped(scale_f, scale_g):
        o_loss = outer_precision.wrap(outer_loss, scale_f) if outer_precision is not None else outer_loss
        i_loss = inner_precision.wrap(inner_loss, scale_g) if inner_precision is not None else inner_loss
        return o_loss, i_loss

    for attempt in range(retries + 1):
        o_loss, i_loss = wrapped(scale_f, scale_g)
        last = attempt == retries
        if float16 and not last and not _gradients_finite((o_loss, i_loss), outer, inner):
            scale_f, scale_g = scale_f / 2, scale_g / 2
            continue
        try:
            flat, info = rescaled_solver(solver, scale_g).solve(o_loss, i_loss, outer, inner, reduce)
        except SolverDivergedError:
            if not float16 or last:
                raise
            scale_f, scale_g = scale_f / 2, scale_g / 2
            continue
        finite = bool(torch.isfinite(flatten([g.detach().reshape(-1) for g in flat])).all())
        overflow = not finite or (not info.converged and not math.isfinite(info.residual))
        if not float16 or not overflow or last:
            break
        scale_f, scale_g = scale_f / 2, scale_g / 2
    flat = [g / scale_f for g in flat] if scale_f != 1.0 else flat
    info.outer_loss /= scale_f
    if info.inner_gradient is not None and scale_g != 1.0:
        value, g = info.inner_gradient
        info.inner_gradient = (value / scale_g, g / scale_g)
    info.inner_gradient_norm /= scale_g  # the relative stationarity is scale-free; the norm is not
    info.extra["loss_scale"] = scale_f
    return flat, info


def _gradients_finite(losses, outer, inner) -> bool:
    """Whether each scaled loss's gradient with respect to both levels is finite at the given point."""
    params = [*outer.values(), *inner.values()]
    for loss in losses:
        gs = torch.autograd.grad(loss(outer, inner), params, allow_unused=True)
        if not all(bool(torch.isfinite(g).all()) for g in gs if g is not None):
            return False
    return True


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
