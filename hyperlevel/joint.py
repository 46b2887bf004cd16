"""The joint (Lagrangian) nested hypergradient: one saddle-point solve instead of nested solves (docs/nesting.md).

Levels ``0..N-1``, outermost first. Innermost first, every lower level ``k >= 1`` gets a Lagrangian

    Lag_{N-1} = L_{N-1},        Lag_k = L_k - lam_k . grad_{W_{k+1}} Lag_{k+1}    (k = N-2 .. 1),

over the variables ``W_{N-1} = (p_{N-1})`` and ``W_k = (p_k, W_{k+1}, lam_k)``, where the adjoint ``lam_k`` (one
entry per variable of ``W_{k+1}``) solves ``Hess(Lag_{k+1}) lam_k = grad_{W_{k+1}} L_k``. The stationarity
conditions ``grad_{W_k} Lag_k = 0`` are exactly the nested optimality conditions of levels ``k..N-1`` (with the
adjoint equations), so ``W_1(p_0)`` follows the nested responses and the implicit function theorem on them gives

    d h_0 / d p_0 = d_0 L_0 - (d_0 grad_{W_1} Lag_1) u,     Hess(Lag_1) u = grad_{W_1} L_0,

one solve with the symmetric indefinite Hessian of ``Lag_1`` (MINRES, or a dense factorisation when small). Each
adjoint needs one solve of the level below (smaller systems, innermost first): ``N - 1`` solves in all, none
nested in another, so the cost grows with the sizes of the systems, not as a product of iteration counts.

Inner stationarity. Everything above assumes that ``params[k]`` (``k >= 1``) are the nested best responses. The
``p_k`` block of ``grad_{W_k} Lag_k`` at the solved adjoints is the level's *total* gradient ``Gamma_k = d h_k /
d p_k`` (for the bottom level: its plain gradient), so it is measured from the gradients built anyway, with no
extra solve, and reported as in :mod:`hyperlevel.optimality`:

    stationarity_k = ||Gamma_k|| / ||A_k p_k - Gamma_k||,     A_k = d^2 Lag_k / d p_k^2 (adjoints, lower levels held),

one Hessian-vector product per level on the graph of ``Gamma_k``. It is 0 at the solution and invariant to
rescaling any loss or any level's parameters; for the bottom level ``A_k`` is its Hessian, so the figure equals
the chord method's. For a middle level ``A_k`` leaves out the curvature that reaches ``p_k`` through the levels
below (that part needs a solve per level), so the scale is the gradient at ``p_k = 0`` with the lower variables
and adjoints held, not along their responses; a level whose loss has no curvature of its own in ``p_k`` reads
about 1 away from the exact solution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ._flat import as_dict, flatten, unflatten
from .errors import InvalidProblemError, SolverDivergedError
from .functional import backward_products, total_derivative, zeros_for_none
from .optimality import relative_stationarity
from .solvers.base import Solver
from .solvers.dense import Dense, dense_jacobian, saddle_solve, spd_solve
from .solvers.implicit import ImplicitSolver
from .solvers.linear import LinearSolveInfo
from .typing import Loss, Reduce
from .validation import check_loss

if TYPE_CHECKING:
    from .nested import LevelInfo


class LagrangianHessian:
    """``v -> Hess(Lag_k) v`` by one backward pass over ``grad_{W_k} Lag_k`` (built once with a graph).

    Gradient entries without a graph are constant (their rows of the Hessian are zero) and are left out of the
    backward pass; ``reduce`` averages every product over data-parallel processes.
    """

    def __init__(self, grad: Sequence[Tensor | None], inputs: Sequence[Tensor], reduce: Reduce | None):
        self.inputs = list(inputs)
        self.grad = list(grad)
        self.live = [i for i, g in enumerate(self.grad) if g is not None and g.requires_grad]
        self.outputs = [self.grad[i] for i in self.live]
        self.reduce = reduce
        self.calls = 0

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        parts = unflatten(v, self.inputs)
        hv = backward_products(self.outputs, [parts[i] for i in self.live], self.inputs)
        out = flatten(zeros_for_none(hv, self.inputs))
        return out if self.reduce is None else self.reduce(out)


def _gradient(value: Tensor, inputs: Sequence[Tensor], create_graph: bool) -> list[Tensor | None]:
    return list(torch.autograd.grad(value, list(inputs), create_graph=create_graph, retain_graph=True,
                                    allow_unused=True))


def _measure_stationarity(
    grad: Sequence[Tensor | None], point: Sequence[Tensor], info: LevelInfo, reduce: Reduce | None
) -> None:
    """Fill ``info`` with ``||Gamma_k||`` and its relative stationarity (module docstring): ``grad`` is the ``p_k``
    block of ``grad_{W_k} Lag_k`` (built with a graph), ``point`` the leaves ``p_k``; one backward pass."""
    g = zeros_for_none([None if x is None else x.detach() for x in grad], point)
    live = [i for i, x in enumerate(grad) if x is not None and x.requires_grad]
    hp: list[Tensor | None] = [None] * len(point)
    if live:
        hp = list(backward_products([grad[i] for i in live], [point[i].detach() for i in live], list(point)))
    g_flat, hp_flat = flatten(g), flatten(zeros_for_none([None if h is None else h.detach() for h in hp], point))
    if reduce is not None:
        g_flat, hp_flat = reduce(g_flat), reduce(hp_flat)
    info.inner_gradient_norm, info.stationarity = relative_stationarity(g_flat, hp_flat)


def joint_hypergradient(
    losses: Sequence[Loss],
    params: Sequence[Mapping[str, Tensor]],
    solver: Solver,
    levels: list[LevelInfo],
    reduce: Reduce | None = None,
) -> list[Tensor]:
    """The nested hypergradient of ``losses[0]`` w.r.t. ``params[0]`` by the joint Lagrangian system.

    ``params`` are fresh autograd leaves (never the user's tensors); ``solver`` is :class:`Dense` (dense
    factorisations with inertia checks) or an :class:`ImplicitSolver` whose ``linear_solve`` handles symmetric
    indefinite systems (:class:`~hyperlevel.solvers.MinimalResidual`); ``levels[k]`` (``k >= 1``) receives the
    figures of the solve with ``Hess(Lag_k)`` and the level's stationarity at the given point (module docstring).
    Returns one gradient tensor per entry of ``params[0]``.
    """
    n = len(losses)
    names = [list(p) for p in params]
    P = [list(p.values()) for p in params]

    def loss(k: int) -> Tensor:
        levels[k].loss_evals += 1
        return check_loss(losses[k](*[as_dict(names[j], P[j]) for j in range(n)]), f"losses[{k}]")

    def solve(k: int, op: LagrangianHessian, b: Tensor, negatives: int) -> Tensor:
        """``Hess(Lag_k)^{-1} b``, recorded in ``levels[k]``."""
        info = levels[k]
        info.solves += 1
        info.size = b.numel()
        if isinstance(solver, Dense):
            matrix = dense_jacobian(op.grad, op.inputs)
            if reduce is not None:
                matrix = reduce(matrix)
            what = f"level {k}: the Hessian of its reduced objective" if negatives == 0 else (
                f"level {k}: the joint saddle-point Hessian of levels {k}..{n - 1}")
            x = spd_solve(matrix, b, what) if negatives == 0 else saddle_solve(matrix, b, negatives, what)
            b_norm = float(torch.linalg.vector_norm(b))
            residual = float(torch.linalg.vector_norm(matrix @ x - b)) / b_norm if b_norm else 0.0
            info.hvp_evals += b.numel()
            lin = LinearSolveInfo(0, residual, True, 0)
        else:
            assert isinstance(solver, ImplicitSolver)
            before = op.calls
            x, lin = solver.linear_solve(op, b, warm=False)
            info.hvp_evals += op.calls - before
        info.iterations += lin.iterations
        info.max_iterations = max(info.max_iterations, lin.iterations)
        info.residual = max(info.residual, lin.residual)
        if not lin.converged:
            info.converged = False
            info.message = info.message or lin.message or f"{type(solver).__name__} stopped at its iteration cap"
        if not bool(torch.isfinite(x).all()):
            raise SolverDivergedError(f"{type(solver).__name__}: the level-{k} solve returned NaN or Inf")
        return x.detach()

    # innermost level: its Lagrangian is its loss
    W: list[list[Tensor]] = [[] for _ in range(n)]
    G: list[list[Tensor | None]] = [[] for _ in range(n)]
    W[n - 1] = list(P[n - 1])
    G[n - 1] = _gradient(loss(n - 1), W[n - 1], create_graph=True)
    _measure_stationarity(G[n - 1], P[n - 1], levels[n - 1], reduce)
    negatives = [0] * n
    for k in range(n - 2, 0, -1):
        value = loss(k)
        rhs = flatten(zeros_for_none(_gradient(value, W[k + 1], create_graph=False), W[k + 1]))
        if reduce is not None:  # before any decision on it, so that every process takes the same branch
            rhs = reduce(rhs)
        op = LagrangianHessian(G[k + 1], W[k + 1], reduce)
        lam = solve(k + 1, op, rhs, negatives[k + 1]) if bool(torch.any(rhs != 0)) else torch.zeros_like(rhs)
        lam_leaves = [t.detach().requires_grad_() for t in unflatten(lam, W[k + 1])]
        coupling = sum(
            (torch.sum(lam_i * g_i) for lam_i, g_i in zip(lam_leaves, G[k + 1], strict=True) if g_i is not None),
            start=torch.zeros((), dtype=value.dtype, device=value.device),
        )
        W[k] = [*P[k], *W[k + 1], *lam_leaves]
        G[k] = _gradient(value - coupling, W[k], create_graph=True)
        _measure_stationarity(G[k][: len(P[k])], P[k], levels[k], reduce)  # the p_k block: Gamma_k
        negatives[k] = sum(t.numel() for t in W[k + 1])
    top = loss(0)
    both = _gradient(top, [*P[0], *W[1]], create_graph=False)
    direct, b_parts = both[: len(P[0])], both[len(P[0]):]
    b = flatten(zeros_for_none(b_parts, W[1]))
    if reduce is not None:
        b = reduce(b)
    op = LagrangianHessian(G[1], W[1], reduce)
    if not op.live:
        raise InvalidProblemError(
            "losses[1] is linear in params[1] (also through the levels below): its Hessian is zero, so level 1 has "
            "no minimiser to differentiate; add a curvature term (e.g. L2 regularisation)"
        )
    if bool(torch.any(b != 0)):
        u = solve(1, op, b, negatives[1])
        parts = unflatten(u, W[1])
        mixed = torch.autograd.grad(op.outputs, P[0], grad_outputs=[parts[i] for i in op.live], allow_unused=True)
    else:  # the top loss does not see the lower levels: the hypergradient is the partial derivative
        levels[1].size = b.numel()
        mixed = [None] * len(P[0])
    result = total_derivative(direct, mixed, P[0])
    if reduce is not None:
        flat = reduce(flatten(result))
        result = unflatten(flat, result)
    return result


def joint_size(params: Sequence[Mapping[str, Tensor]]) -> int:
    """Size of the joint system ``Hess(Lag_1)``: ``sum_k 2^(k-1) dim(p_k)`` over the lower levels ``k >= 1``."""
    return sum(2 ** (k - 1) * sum(t.numel() for t in p.values()) for k, p in enumerate(params) if k >= 1)


__all__ = ["LagrangianHessian", "joint_hypergradient", "joint_size"]
