"""Exact dense hypergradients for small problems: the Hessian built by batched products, then factorised.

Below a few hundred parameters a Krylov solve spends its time in per-product overhead (one autograd backward
pass per iteration, a host synchronisation per inner product). Building the whole Hessian in *one* batched
backward pass (``torch.autograd.grad(..., is_grads_batched=True)``, which vmaps the backward graph over the
columns of the identity) and factorising it costs a handful of kernel launches instead; the crossover measured on
this machine is in docs/benchmarks.md (``DENSE_MAX_SIZE``, ``DENSE_JOINT_MAX_SIZE``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._flat import flatten, unflatten
from ..errors import InvalidProblemError, SolverDivergedError
from ..functional import check_outer_used, inner_gradient, outer_partials, total_derivative, zeros_for_none
from ..optimality import relative_stationarity
from ..typing import PairLoss, Params, Reduce
from .base import Solver, SolverInfo, reduce_list
from .target import Declaration, ImplicitTarget

#: Most inner parameters for which two-level ``solver=None`` solves densely: measured crossover against CG
#: (50 iterations, tol 1e-10) on this machine, between 50 (dense 1.4-1.6x faster) and 100 (CG 1.2-1.5x faster);
#: docs/benchmarks.md, "Dense path".
DENSE_MAX_SIZE = 64
#: Most unknowns of the joint nested system (``sum_k 2^(k-1) dim p_k``) for which ``nested_hypergradient`` with
#: ``solver=None`` solves densely instead of by MINRES: its Hessian-vector products are dearer than a plain HVP,
#: so dense pays longer (1.75x faster still at 180 unknowns); docs/benchmarks.md, "Dense path".
DENSE_JOINT_MAX_SIZE = 200


def dense_jacobian(outputs: Sequence[Tensor | None], inputs: Sequence[Tensor]) -> Tensor:
    """The square matrix ``d flatten(outputs) / d flatten(inputs)`` (outputs: gradients w.r.t. ``inputs``, so a
    Hessian), built by one batched backward pass over the columns of the identity.

    ``None`` outputs (and outputs without a graph) are constant: their rows are zero.
    """
    n = sum(t.numel() for t in inputs)
    like = inputs[0]
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    live, grad_outputs, offset = [], [], 0
    for g, x in zip(outputs, inputs, strict=True):
        size = x.numel()
        if g is not None and g.requires_grad:
            live.append(g)
            grad_outputs.append(eye[:, offset : offset + size].reshape(n, *g.shape))
        offset += size
    if not live:
        return torch.zeros(n, n, dtype=like.dtype, device=like.device)
    cols = torch.autograd.grad(
        live, list(inputs), grad_outputs=grad_outputs, is_grads_batched=True, retain_graph=True, allow_unused=True
    )
    matrix = torch.cat(
        [torch.zeros(n, x.numel(), dtype=like.dtype, device=like.device) if c is None else c.reshape(n, -1)
         for c, x in zip(cols, inputs, strict=True)],
        dim=1,
    )
    return (matrix + matrix.T) / 2  # exact symmetry (the products are symmetric up to rounding)


def _check_finite(matrix: Tensor, b: Tensor, what: str) -> None:
    """NaN/Inf in the system is a divergence (the caller then names the non-finite input), not an indefiniteness."""
    if not bool(torch.isfinite(matrix).all() and torch.isfinite(b).all()):
        raise SolverDivergedError(f"Dense: {what} or its right-hand side contains NaN or Inf")


def spd_solve(matrix: Tensor, b: Tensor, what: str) -> Tensor:
    """``matrix^{-1} b`` by Cholesky; :class:`InvalidProblemError` when ``matrix`` is not positive definite."""
    _check_finite(matrix, b, what)
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) != 0:
        smallest = float(torch.linalg.eigvalsh(matrix)[0])
        raise InvalidProblemError(
            f"{what} is not positive definite (Cholesky failed at leading minor {int(info)}, smallest eigenvalue "
            f"{smallest:.3e}): the inner point is not a strict local minimum. Converge the inner problem further, "
            "add curvature (regularisation), or use Neumann/Unrolled"
        )
    return torch.cholesky_solve(b.reshape(-1, 1), factor).reshape(-1)


def saddle_solve(matrix: Tensor, b: Tensor, negatives: int, what: str) -> Tensor:
    """``matrix^{-1} b`` for a symmetric matrix that must have exactly ``negatives`` negative eigenvalues.

    The joint system of a nested problem is a saddle point whose inertia is fixed by the second-order conditions
    of every level (docs/nesting.md); any other inertia means some level is not at a strict local minimum of its
    reduced objective, and the nested hypergradient is then not defined, so this raises
    :class:`InvalidProblemError` instead of returning a number.
    """
    _check_finite(matrix, b, what)
    values, vectors = torch.linalg.eigh(matrix)
    found = int((values < 0).sum())
    scale = float(values.abs().max()) if values.numel() else 0.0
    smallest = float(values.abs().min()) if values.numel() else 0.0
    if found != negatives or smallest <= scale * matrix.shape[0] * torch.finfo(matrix.dtype).eps:
        raise InvalidProblemError(
            f"{what} has {found} negative eigenvalue(s) (smallest |eigenvalue| {smallest:.3e}), a strict nested "
            f"minimum has exactly {negatives}: some level is not at a strict local minimum of its reduced objective "
            "(with the levels below responding). Converge the levels further or add curvature (regularisation)"
        )
    return vectors @ ((vectors.T @ b) / values)


class Dense(Solver):
    """Exact implicit hypergradient with the inner Hessian built densely and factorised by Cholesky.

    The same quantity as :class:`~hyperlevel.solvers.ConjugateGradient` solved exactly: the ``n x n`` inner
    Hessian comes from one batched backward pass (``n`` Hessian-vector products vectorised), the system is solved
    by Cholesky, and one mixed product gives the hypergradient. Raises :class:`InvalidProblemError` when the inner
    Hessian is not positive definite. Memory and time grow like ``n^2`` and ``n^3``: for small inner problems only
    (``hypergradient`` / ``nested_hypergradient`` with ``solver=None`` pick it up to ``DENSE_MAX_SIZE`` /
    ``DENSE_JOINT_MAX_SIZE`` unknowns). For more
    than two levels, ``nested_hypergradient`` builds and solves the joint saddle-point system densely instead
    (docs/nesting.md) and checks its inertia.
    """

    method = "dense"

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(), exact=True, how="dense Hessian by batched products, Cholesky",
                           nested="joint")

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        f_value, direct, d_inner = outer_partials(outer_loss, outer, inner)
        grad_w = inner_gradient(inner_loss, outer, inner, create_graph=True)
        b = flatten(zeros_for_none(d_inner, inner))
        hessian = dense_jacobian(grad_w, list(inner.values()))
        if reduce is not None:
            b, hessian = reduce(b), reduce(hessian)
        x = spd_solve(hessian, b, "Dense: the inner Hessian")
        residual = float(torch.linalg.vector_norm(hessian @ x - b) / torch.linalg.vector_norm(b)) if bool(
            torch.any(b != 0)) else 0.0
        live = [(g, v) for g, v in zip(grad_w, unflatten(x, grad_w), strict=True) if g.requires_grad]
        mixed = torch.autograd.grad([g for g, _ in live], list(outer.values()), grad_outputs=[v for _, v in live],
                                    allow_unused=True)
        check_outer_used(outer, direct, list(mixed))
        result = total_derivative(direct, mixed, outer)
        n = x.numel()
        # issue 13: how stationary the given inner point is, from the Hessian already built (no extra product)
        g_flat = flatten([g.detach().reshape(-1) for g in grad_w])
        if reduce is not None:
            g_flat = reduce(g_flat)
        w_flat = flatten([p.detach().reshape(-1) for p in inner.values()]).to(hessian.dtype)
        g_norm, stationarity = relative_stationarity(g_flat, (hessian.detach() @ w_flat))
        info = SolverInfo(
            solver=type(self).__name__, iterations=0, residual=residual, converged=True, gradient_evals=2,
            hvp_evals=n + 1, outer_loss=float(f_value.detach()), extra={"size": float(n)},
            inner_gradient_norm=g_norm, stationarity=stationarity,
        )
        return reduce_list(reduce, result), info


__all__ = ["DENSE_JOINT_MAX_SIZE", "DENSE_MAX_SIZE", "Dense", "dense_jacobian", "saddle_solve", "spd_solve"]
