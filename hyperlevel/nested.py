"""The N-level functional entry point ``hyperlevel.nested_hypergradient`` (derivation: docs/nesting.md).

Level ``k`` minimises its *reduced* objective ``h_k(p_0..p_k) = L_k(p_0..p_k, R_{k+1}, ..., R_{N-1})``, where
``R_j`` are the best responses of the levels below, so its stationarity map ``Gamma_k = d h_k / d p_k`` is a
*total* derivative that contains the first derivatives of the lower responses; differentiating it once more (for
the level above) needs their second derivatives, and so on down the hierarchy.

The implicit solvers represent every response by chord steps with a frozen inverse Hessian,

    r_0 = p_hat_k,     r_{j+1} = r_j - S_k (Gamma_k(upper, r_j) - Gamma_k(upper_hat, p_hat_k)),

where ``S_k`` applies ``(d Gamma_k / d p_k)^{-1}`` at the given point by the solver's matrix-free linear solve (CG
or Neumann on Hessian-vector products of ``h_k``), wrapped as a linear autograd function with frozen coefficients
(its backward is the same solve, so it is differentiable to any order). Each chord step multiplies the error by
``O(|delta|)``, so ``m`` steps give a function of the upper levels whose derivatives up to order ``m`` are those of
the exact response (up to the linear-solve tolerance). At the given point every right-hand side of a forward solve
is exactly zero: the values never move, and all the work is in the backward passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._flat import as_dict, flatten, leaves, unflatten
from .composable import inside_transform
from .errors import InvalidProblemError, SolverDivergedError
from .functional import HessianOperator, zeros_for_none
from .hypergradient import _hypergradient
from .joint import joint_hypergradient, joint_size
from .optimality import STATIONARITY_TOL, relative_stationarity, report_stationarity
from .solvers.base import Solver, SolverInfo, reduce_list, report_convergence
from .solvers.dense import DENSE_JOINT_MAX_SIZE, Dense
from .solvers.implicit import MinimalResidual
from .solvers.registry import solver_type_message
from .typing import Loss, MatVec, Reduce
from .validation import (
    check_finite_grads,
    check_loss,
    check_params,
    check_reach,
    check_same_dtype,
    gradients_by_group,
    used_names,
)


@dataclass
class LevelInfo:
    """What the nested solver did at one lower level ``k >= 1``.

    Attributes:
        level: the level index (1 = just below the top).
        loss_evals: evaluations of ``losses[level]`` (each is differentiated at least once).
        solves: linear solves with ``S_level`` on a non-zero right-hand side (the forward solves of the chord
            steps have a zero right-hand side at the given point and cost nothing).
        iterations: CG / Neumann iterations summed over those solves; ``max_iterations`` the largest.
        hvp_evals: Hessian-vector products of the reduced objective ``h_level`` (each one back-propagates through
            the responses of the levels below, so it costs solves at those levels).
        residual: worst final relative residual of the solves (``0.0`` when none was needed).
        converged: whether every solve reached the tolerance.
        size: for the joint method, the size of this level's system ``Hess(Lag_level)`` (level 1: the joint
            solve; deeper levels: the adjoint of the level above); 0 for the chord-step method.
    """

    level: int
    loss_evals: int = 0
    solves: int = 0
    iterations: int = 0
    max_iterations: int = 0
    hvp_evals: int = 0
    residual: float = 0.0
    converged: bool = True
    message: str = ""
    #: ``||Gamma_level||`` (the total gradient of the level's reduced objective) at the given point
    inner_gradient_norm: float = math.nan
    #: its relative stationarity ``||Gamma|| / ||H p - Gamma||`` (:mod:`hyperlevel.optimality`); chord method:
    #: ``H`` the reduced Hessian, joint method: the Lagrangian's ``p``-block (:mod:`hyperlevel.joint`)
    stationarity: float = math.nan
    size: int = 0


@dataclass
class NestedSolverInfo(SolverInfo):
    """:class:`SolverInfo` of a nested hypergradient, with one :class:`LevelInfo` per lower level in ``levels``.

    ``iterations`` sums the linear-solver iterations of every level (for ``Unrolled``: the steps per level),
    ``residual`` is the worst residual of any level, ``converged`` is true only when every level converged,
    ``gradient_evals`` counts loss evaluations of every level and ``hvp_evals`` Hessian-vector products.
    ``method`` says how: ``"joint"`` (one saddle-point solve, ``MinimalResidual`` / ``Dense``; ``joint_iterations``,
    ``joint_residual`` and ``joint_size`` describe that solve, the level-1 entry of ``levels``), ``"chord"``
    (chord-step recursion, ``ConjugateGradient`` / ``Neumann``), ``"unrolled"`` or ``"first_order"``.
    """

    levels: list[LevelInfo] = field(default_factory=list)
    method: str = ""
    joint_iterations: int = 0
    joint_residual: float = math.nan
    joint_size: int = 0


class _FrozenInverse(torch.autograd.Function):
    """``b -> S b`` for a fixed symmetric linear operator ``S``; its backward is ``S`` applied by itself."""

    @staticmethod
    def forward(ctx, apply: MatVec, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.solve = apply
        return apply(b)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, _FrozenInverse.apply(ctx.solve, grad)


def _validate(losses: object, params: object, solver: object) -> tuple[list[Loss], list[Mapping[str, Tensor]]]:
    if not isinstance(losses, Sequence) or isinstance(losses, str):
        raise InvalidProblemError(
            f"losses must be a list of callables (outermost first), got {type(losses).__name__}"
        )
    if not isinstance(params, Sequence) or isinstance(params, str | Mapping):
        raise InvalidProblemError(
            f"params must be a list of dicts of name -> tensor (outermost first), got {type(params).__name__}"
        )
    if len(losses) < 2:
        raise InvalidProblemError(
            f"a nested problem needs at least 2 levels, got {len(losses)} loss(es); for a single level use "
            "torch.autograd.grad directly"
        )
    if len(losses) != len(params):
        raise InvalidProblemError(
            f"got {len(losses)} losses but {len(params)} parameter dicts: level k needs losses[k] and params[k]"
        )
    for k, fn in enumerate(losses):
        if not callable(fn):
            raise InvalidProblemError(f"losses[{k}] must be callable(*params) -> scalar tensor")
    transformed = inside_transform()
    for k, p in enumerate(params):
        check_params(p, f"params[{k}]", finite=not transformed)  # no host values inside torch.func
    check_same_dtype([(f"params[{k}]", p) for k, p in enumerate(params)])
    if not isinstance(solver, Solver):
        raise InvalidProblemError(solver_type_message(solver))
    return list(losses), list(params)


def _check_usage(losses: list[Loss], params: list[Mapping[str, Tensor]]) -> None:
    """Evaluate every loss once at the given point: finite scalars with finite gradients, and every parameter used
    where :func:`~hyperlevel.validation.check_reach` requires (``losses[k]`` or a lower level's loss)."""
    sets = [leaves(p) for p in params]
    used: list[list[set[str]]] = []  # used[k][j]: names of params[j] that losses[k] depends on
    for k, fn in enumerate(losses):
        value = check_loss(fn(*sets), f"losses[{k}]")
        grads = gradients_by_group(value, sets)
        own = [(name, g) for name, g in zip(sets[k], grads[k], strict=True) if g is not None]
        check_finite_grads([name for name, _ in own], [g for _, g in own], f"losses[{k}]")
        used.append(used_names(sets, grads))
    check_reach(used, [list(s) for s in sets], _unreached_message)


def _unreached_message(k: int, names: list[str]) -> str:
    if k == 0:
        return (f"params[0] entries {names} influence none of the losses: their hypergradient is undefined; "
                "remove them or check that the losses use them")
    return (f"params[{k}] entries {names} do not influence losses[{k}] (neither directly nor through a lower "
            f"level): the Hessian of level {k} is singular and their best response is undefined; remove them "
            f"or make losses[{k}] depend on them")


class _Nested:
    """Shared state of one nested hypergradient: the given point as flat vectors, per-level operators and counts."""

    def __init__(self, losses: list[Loss], params: list[Mapping[str, Tensor]], solver: Solver):
        self.losses = losses
        self.solver = solver
        self.n = len(losses)
        self.names = [list(p) for p in params]
        self.like = [[t.detach() for t in p.values()] for p in params]
        self.base = [flatten(like).detach() for like in self.like]
        self.levels = [LevelInfo(level=k) for k in range(self.n)]
        self.operators: list[HessianOperator | None] = [None] * self.n

    # -- evaluation ------------------------------------------------------------------------------------------------
    def loss(self, k: int, flats: Sequence[Tensor]) -> Tensor:
        dicts = [as_dict(self.names[j], unflatten(f, self.like[j])) for j, f in enumerate(flats)]
        self.levels[k].loss_evals += 1
        return check_loss(self.losses[k](*dicts), f"losses[{k}]")

    def own_gradient(self, k: int, upper: list[Tensor], x: Tensor, lower: list[Tensor], create_graph: bool) -> Tensor:
        """``d losses[k] / d p_k`` at ``(upper, x, lower)``; with ``lower`` a function of ``x`` it is the total one."""
        value = self.loss(k, [*upper, x, *lower])
        (g,) = zeros_for_none(torch.autograd.grad(value, x, create_graph=create_graph, allow_unused=True), [x])
        if not torch.isfinite(g).all():
            raise SolverDivergedError(f"the gradient of losses[{k}] with respect to params[{k}] contains NaN or Inf")
        return g

    @staticmethod
    def _input(r: Tensor) -> Tensor:
        """A tensor to differentiate with respect to: ``r`` itself if it carries a graph, else a fresh leaf."""
        return r if r.requires_grad else r.detach().requires_grad_()

    # -- implicit (chord) responses --------------------------------------------------------------------------------
    def stationarity(self, k: int, upper: list[Tensor], r: Tensor, order: int) -> Tensor:
        """``Gamma_k(upper, r)`` with the lower responses exact to ``order`` (so its own derivatives to ``order-1``)."""
        x = self._input(r)
        lower = self.respond(k + 1, [*upper, x], order)
        return self.own_gradient(k, upper, x, lower, create_graph=True)

    def respond(self, k: int, upper: list[Tensor], order: int) -> list[Tensor]:
        """``[R_k, ..., R_{N-1}]`` as functions of ``upper`` whose derivatives up to ``order`` are exact."""
        if k == self.n:
            return []
        r = self.base[k]
        if order > 0:
            shift = None
            for _ in range(order):
                gamma = self.stationarity(k, upper, r, order + 1)
                if shift is None:  # Gamma_k at the given point: the level solves Gamma_k = shift (0 when converged)
                    shift = gamma.detach()
                r = r - _FrozenInverse.apply(lambda b, k=k: self.inverse(k, b), gamma - shift)
        return [r, *self.respond(k + 1, [*upper, r], order)]

    def operator(self, k: int) -> HessianOperator:
        """Hessian-vector products of the reduced objective ``h_k`` at the given point (built once, lazily)."""
        op = self.operators[k]
        if op is None:
            with torch.enable_grad():
                x = self.base[k].detach().requires_grad_()
                upper = list(self.base[:k])
                lower = self.respond(k + 1, [*upper, x], 2)
                gamma = self.own_gradient(k, upper, x, lower, create_graph=True)
            if not gamma.requires_grad:
                raise InvalidProblemError(
                    f"losses[{k}] is linear in params[{k}] (also through the levels below): its Hessian is zero, "
                    f"so level {k} has no minimiser to differentiate; add a curvature term (e.g. L2 regularisation)"
                )
            op = self.operators[k] = HessianOperator(gamma, {"x": x})
        return op

    def inverse(self, k: int, b: Tensor) -> Tensor:
        """``(d Gamma_k / d p_k)^{-1} b`` at the given point by the solver's linear solve."""
        if not bool(torch.any(b != 0)):
            return torch.zeros_like(b)
        op = self.operator(k)
        before = op.calls
        # the solver's symmetric linear solve (declaration.nested == "implicit"); no warm start: every solve here
        # has its own system
        x, lin = self.solver.linear_solve(op, b, warm=False)  # type: ignore[attr-defined]
        info = self.levels[k]
        info.solves += 1
        info.iterations += lin.iterations
        info.max_iterations = max(info.max_iterations, lin.iterations)
        info.hvp_evals += op.calls - before
        info.residual = max(info.residual, lin.residual)
        if not lin.converged:
            info.converged = False
            info.message = info.message or lin.message
        return x.detach()

    def measure_stationarity(self) -> None:
        """Each lower level's total stationarity at the given point, from the Hessian operator of its reduced
        objective (built at the given point, so ``Gamma_k`` is its gradient; one more product per level)."""
        for k in range(1, self.n):
            op = self.operator(k)
            with torch.enable_grad():
                hp = op(self.base[k])
            info = self.levels[k]
            info.inner_gradient_norm, info.stationarity = relative_stationarity(op.grad[0].detach(), hp.detach())

    # -- unrolled responses ----------------------------------------------------------------------------------------
    def unrolled(self, k: int, upper: list[Tensor], steps: int, lr: float) -> list[Tensor]:
        """``steps`` gradient steps on ``h_k`` (through the unrolled lower levels) from the given point."""
        if k == self.n:
            return []
        w = self.base[k]
        for t in range(steps):
            x = self._input(w)
            lower = self.unrolled(k + 1, [*upper, x], steps, lr)
            try:
                g = self.own_gradient(k, upper, x, lower, create_graph=True)
            except SolverDivergedError as err:
                raise SolverDivergedError(
                    f"Unrolled: {err} at step {t}; inner_lr={lr} is likely too large for level {k}"
                ) from err
            w = x - lr * g
        return [w, *self.unrolled(k + 1, [*upper, w], steps, lr)]

    # -- top -------------------------------------------------------------------------------------------------------
    def top_gradient(self, responses: Callable[[list[Tensor]], list[Tensor]], top: dict[str, Tensor]) -> list[Tensor]:
        x0 = flatten(list(top.values()))
        value = self.loss(0, [x0, *responses([x0])])
        gs = torch.autograd.grad(value, list(top.values()), allow_unused=True)
        return zeros_for_none(gs, top)

    def info(self, name: str, **kwargs) -> NestedSolverInfo:
        lower = self.levels[1:]
        residuals = [lv.residual for lv in lower if lv.solves]
        bad = [lv for lv in lower if not lv.converged]
        message = "; ".join(f"level {lv.level}: {lv.message or 'tolerance not reached'}" for lv in bad)
        defaults = dict(
            solver=name,
            iterations=sum(lv.iterations for lv in lower),
            residual=max(residuals) if residuals else math.nan,
            converged=not bad,
            gradient_evals=sum(lv.loss_evals for lv in self.levels),
            hvp_evals=sum(lv.hvp_evals for lv in lower),
            message=message,
            levels=lower,
        )
        defaults.update(kwargs)
        return NestedSolverInfo(**defaults)  # type: ignore[arg-type]


def nested_hypergradient(
    losses: Sequence[Loss],
    params: Sequence[Mapping[str, Tensor]],
    solver: Solver | None = None,
    *,
    return_info: bool = False,
    differentiable: bool = False,
) -> dict[str, Tensor] | tuple[dict[str, Tensor], SolverInfo]:
    r"""Total derivative of the top loss through the nested best responses of ``N >= 2`` levels.

    Innermost first, ``p_{N-1}^*(p_0..p_{N-2}) = argmin losses[N-1]`` and, for ``k >= 1``,
    ``p_k^*(p_0..p_{k-1}) = argmin_{p_k} losses[k](p_0..p_k, p_{k+1}^*(...), ...)``: each level minimises its
    objective knowing that the levels below respond to it. The result is

    .. math:: \frac{d}{d p_0} L_0(p_0, p_1^*(p_0), p_2^*(p_0, p_1^*), \ldots)

    at the given point (``params[k]``, ``k >= 1``, at or near the nested best responses). For ``N = 2`` this is
    exactly :func:`hyperlevel.hypergradient` with the same solver (it delegates).

    Solvers for ``N > 2``: ``MinimalResidual`` / ``Dense`` compute the exact implicit quantity by the *joint*
    method (docs/nesting.md): the nested optimality conditions with their adjoints form one symmetric indefinite
    system, solved once by MINRES on Hessian-vector products of the Lagrangian (or factorised densely, with an
    inertia check), after one smaller solve per deeper level for its adjoints. ``ConjugateGradient`` / ``Neumann``
    compute the same quantity by the independent chord-step recursion (cost multiplying with depth; kept as a
    cross-check; their ``iterations``/``tol``/``alpha`` govern every level's linear solves; CG's ``warm_start`` is
    ignored); ``Unrolled(steps, inner_lr)`` differentiates through ``steps`` gradient steps of every lower level on
    its reduced objective, each through the unrolled levels below (cost ``(steps + 1)^(N-2)`` times a two-level
    unroll; ``truncate`` is not supported); ``FirstOrder`` returns the partial derivative of ``losses[0]`` with
    respect to ``params[0]``. ``FiniteDifference`` is a bilevel approximation and raises
    :class:`InvalidProblemError` for ``N > 2``.

    Args:
        losses: ``N`` callables, outermost first; ``losses[k](*params) -> scalar tensor`` takes all ``N`` dicts.
        params: ``N`` dicts of name -> tensor, outermost first.
        solver: default: the fastest exact one (:func:`default_solver`): for ``N > 2`` the joint method, ``Dense``
            up to ``DENSE_JOINT_MAX_SIZE`` unknowns in the joint system, ``MinimalResidual`` above; for ``N = 2`` the
            default of :func:`hyperlevel.hypergradient`. ``hyperlevel.solvers.get(name, **options)`` builds one
            by name; its ``declaration.nested`` picks the N-level path.
        return_info: also return the solver info (a :class:`NestedSolverInfo` with per-level figures for
            ``N > 2``).
        differentiable: keep the autograd graph (``N = 2`` only, as :func:`hyperlevel.hypergradient`); two-level
            problems also run inside ``torch.func`` transforms, ``N > 2`` raises there.

    Returns:
        A dict with the keys, shapes and dtype of ``params[0]`` (detached), and the info when asked. The user's
        tensors are never modified.
    """
    return _nested_hypergradient(losses, params, solver, return_info=return_info, differentiable=differentiable)


def _nested_hypergradient(losses, params, solver=None, *, return_info: bool = False, reduce: Reduce | None = None,
                          differentiable: bool = False):
    """``nested_hypergradient`` plus the data-parallel ``reduce`` hook the engine passes (joint method and
    ``FirstOrder`` only for ``N > 2``: the chord-step and unrolled recursions do not take it)."""
    if solver is None:
        solver = default_solver(params) if len(losses) > 2 else None
    losses, params = _validate(losses, params, solver if solver is not None else Dense())
    dtype = next(iter(params[0].values())).dtype
    n = len(losses)
    transformed = inside_transform()
    if transformed and n > 2:
        raise InvalidProblemError(
            f"nested_hypergradient with {n} levels does not run inside torch.func transforms yet (its chord-step "
            "responses use autograd functions with host-side solves); two-level problems do. Outside transforms, "
            "loop over the batch"
        )
    if not transformed:
        with torch.enable_grad():
            _check_usage(losses, params)
    if n == 2:
        f, g = losses
        return _hypergradient(lambda o, i: f(o, i), lambda o, i: g(o, i), params[0], params[1], solver,
                              return_info=return_info, reduce=reduce, differentiable=differentiable)
    if differentiable:
        raise InvalidProblemError(
            f"differentiable=True is available for two-level problems only (got {n} levels); the nested solver's "
            "result is detached"
        )
    declaration = solver.declaration
    path = declaration.nested
    if path is None:
        raise InvalidProblemError(
            f"{type(solver).__name__} computes {declaration.describe()}: a two-level quantity with no nested "
            f"definition for {n} levels (FiniteDifference probes one unrolled inner step of a bilevel problem). Use "
            "hyperlevel.hypergradient on each pair of levels, Unrolled(steps=1, inner_lr=...) here for the nested "
            "one-step quantity, or ConjugateGradient for the exact nested hypergradient"
            + (" (Unrolled(truncate=...) is not supported for more than 2 levels)"
               if getattr(declaration.target, "frozen_steps", 0) else "")
        )
    state = _Nested(losses, params, solver)
    top = leaves(params[0])
    with torch.enable_grad():
        if path == "joint":
            flat = joint_hypergradient(losses, [top, *[leaves(p) for p in params[1:]]], solver, state.levels,
                                       reduce)
            level1 = state.levels[1]
            info = state.info(type(solver).__name__, method="joint", joint_iterations=level1.iterations,
                              joint_residual=level1.residual, joint_size=level1.size)
            info.stationarity = max(lv.stationarity for lv in info.levels)
            info.inner_gradient_norm = info.levels[-1].inner_gradient_norm
        elif reduce is not None and path != "partial":
            raise InvalidProblemError(
                f"{type(solver).__name__} does not take a data-parallel reduce for {n} levels; use the joint method "
                "(MinimalResidual or Dense, or solver=None)"
            )
        elif path == "implicit":
            flat = state.top_gradient(lambda upper: state.respond(1, upper, 1), top)
            state.measure_stationarity()
            info = state.info(type(solver).__name__, method="chord")
            info.stationarity = max(lv.stationarity for lv in info.levels)
            info.inner_gradient_norm = info.levels[-1].inner_gradient_norm
        elif path == "unrolled":
            steps, lr = declaration.target.steps, declaration.target.inner_lr  # type: ignore[attr-defined]
            flat = state.top_gradient(lambda upper: state.unrolled(1, upper, steps, lr), top)
            info = state.info(type(solver).__name__, iterations=steps, residual=math.nan, method="unrolled")
        elif path == "partial":
            value = state.loss(0, [flatten(list(top.values()))] + state.base[1:])
            gs = torch.autograd.grad(value, list(top.values()), allow_unused=True)
            flat = zeros_for_none(gs, top)
            flat = reduce_list(reduce, flat)
            info = state.info(type(solver).__name__, method="first_order")
        else:
            raise InvalidProblemError(f"{type(solver).__name__} declares an unknown nested path {path!r}")
    result = {}
    for (name, ref), g in zip(params[0].items(), flat, strict=True):
        g = g.detach().to(dtype)
        if not torch.isfinite(g).all():
            raise SolverDivergedError(f"{info.solver}: the nested hypergradient for {name!r} contains NaN or Inf")
        result[name] = g.reshape(ref.shape)
    report_convergence(info, getattr(solver, "on_nonconvergence", "warn"))
    for lv in getattr(info, "levels", []):
        report_stationarity(
            lv.stationarity, lv.inner_gradient_norm, solver=f"nested {info.solver}",
            policy=getattr(solver, "on_nonstationary", "warn"),
            tol=getattr(solver, "stationarity_tol", STATIONARITY_TOL),
            where=f"level {lv.level} (params[{lv.level}], with its reduced objective's total gradient through the "
                  "levels below)",
        )
    return (result, info) if return_info else result


def default_solver(params: Sequence[Mapping[str, Tensor]]) -> Solver:
    """The fastest exact solver for ``N >= 3`` levels (measured, docs/nesting.md): the joint method, dense when
    its system has at most ``DENSE_JOINT_MAX_SIZE`` unknowns, else MINRES."""
    if joint_size(params) <= DENSE_JOINT_MAX_SIZE:
        return Dense()
    return MinimalResidual(iterations=500)


__all__ = ["LevelInfo", "NestedSolverInfo", "default_solver", "nested_hypergradient"]
