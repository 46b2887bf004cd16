"""Hypergradients as differentiable, batchable functions: the path used inside ``torch.func`` transforms.

The default path (:mod:`hyperlevel.solvers`) is tuned for one hypergradient at a time: fresh autograd leaves,
double backward on a kept graph, host-side scalars and early stopping. None of that survives a ``torch.func``
transform: ``requires_grad_()`` is forbidden on transformed tensors, and a Python ``if`` on a tensor's value has no
meaning for a batch of 64 values under ``vmap``. This module computes the same quantities with transform-friendly
operations only:

* derivatives by ``torch.func.grad`` and ``torch.func.vjp`` (Hessian-vector products are vector-Jacobian products
  of the inner gradient, reusing one linearisation for every product);
* conjugate gradients for a fixed number of iterations with a convergence *mask* instead of a ``break``
  (iterations after convergence leave the iterate unchanged), so every element of a batch runs the same ops;
* no host synchronisation: diagnostics stay tensors, turned into a :class:`SolverInfo` only outside transforms.

Everything is traced, so the result is differentiable in the outer *and* the inner parameters: when the inner
point is itself a function of the outer parameters (a closed-form or unrolled solve inside the transformed
function), ``jacrev``/``jacfwd`` give the hyper-Hessian by the chain rule. Derivatives of the linear solve are
derivatives of the CG iterations; once CG has converged (in at most ``n`` iterations for ``n`` inner parameters in
exact arithmetic) they are those of the exact solution.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .errors import InvalidProblemError
from .solvers.base import Solver
from .solvers.finite_difference import FiniteDifference
from .solvers.first_order import FirstOrder
from .solvers.implicit import ConjugateGradient, ImplicitSolver, Neumann
from .solvers.unrolled import Unrolled
from .spectral import start_vector
from .typing import MatVec, PairLoss


def inside_transform() -> bool:
    """Whether the caller runs inside a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ``jacfwd``...)."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _flat(tensors) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split(vector: Tensor, names: list[str], like: list[Tensor]) -> dict[str, Tensor]:
    out, offset = {}, 0
    for name, t in zip(names, like, strict=True):
        out[name] = vector[offset : offset + t.numel()].reshape(t.shape)
        offset += t.numel()
    return out


def _masked_cg(matvec: MatVec, b: Tensor, iterations: int, tol: float) -> Tensor:
    """CG for exactly ``iterations`` steps; a step whose residual is already below ``tol * ||b||`` (or whose
    curvature is not positive) changes nothing. Denominators are guarded so masked steps stay finite (a NaN in an
    unused branch of ``where`` would still poison the derivative)."""
    x = torch.zeros_like(b)
    r = b
    p = b
    rs = (r * r).sum()
    threshold = (tol * torch.linalg.vector_norm(b)) ** 2
    one = torch.ones_like(rs)
    zero = torch.zeros_like(rs)
    for _ in range(iterations):
        hp = matvec(p)
        curvature = (p * hp).sum()
        active = (rs > threshold) & (curvature > 0)
        alpha = torch.where(active, rs, zero) / torch.where(active, curvature, one)
        x = x + alpha * p
        r = r - alpha * hp
        rs_new = (r * r).sum()  # equals rs when the step was masked (r did not move)
        p = r + (torch.where(active, rs_new, zero) / torch.where(active, rs, one)) * p
        rs = rs_new
    return x


def _power_alpha(matvec: MatVec, like: Tensor, iterations: int) -> Tensor:
    """``1 / lambda_max`` by a fixed number of power iterations (the same rule as ``Neumann(alpha="auto")``)."""
    v = start_vector(like)
    value = torch.dot(v, matvec(v))
    for _ in range(iterations):
        hv = matvec(v)
        value = torch.dot(v, hv)
        v = hv / torch.linalg.vector_norm(hv)
    return 1.0 / value


def _neumann(matvec: MatVec, b: Tensor, iterations: int, alpha) -> Tensor:
    term, total = b, b
    for _ in range(iterations):
        term = term - alpha * matvec(term)
        total = total + term
    return alpha * total


def composable_hypergradient(
    outer_loss: PairLoss,
    inner_loss: PairLoss,
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    solver: Solver,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The solver's hypergradient computed with transform-friendly ops, and its diagnostics as tensors
    (``residual``, ``inner_gradient_norm``, ``stationarity`` where the solver has them)."""
    o = dict(outer_params)
    w = dict(inner_params)
    names_w = list(w)
    like_w = list(w.values())
    w_flat = _flat(like_w)

    def as_inner(v: Tensor) -> dict[str, Tensor]:
        return _split(v, names_w, like_w)

    if isinstance(solver, FirstOrder):
        return torch.func.grad(lambda oo: outer_loss(oo, w))(o), {}
    if isinstance(solver, Unrolled):
        if solver.truncate is not None:
            raise InvalidProblemError(
                "Unrolled(truncate=...) is not available inside torch.func transforms or with differentiable=True "
                "(truncation detaches the first steps); use Unrolled(steps=...) without truncate there"
            )

        def unrolled_target(oo: dict[str, Tensor]) -> Tensor:
            v = w_flat
            for _ in range(solver.steps):
                g = torch.func.grad(inner_loss, argnums=1)(oo, as_inner(v))
                v = v - solver.inner_lr * _flat([g[n] for n in names_w])
            return outer_loss(oo, as_inner(v))

        return torch.func.grad(unrolled_target)(o), {}
    if isinstance(solver, FiniteDifference):
        raise InvalidProblemError(
            "FiniteDifference is not available inside torch.func transforms or with differentiable=True (its "
            "probe length depends on a norm it reads on the host); Unrolled(steps=1, "
            f"inner_lr={solver.inner_lr}) computes exactly the one-step quantity it approximates"
        )
    if not isinstance(solver, ImplicitSolver):
        raise InvalidProblemError(
            f"{type(solver).__name__} has no transform-friendly path; inside torch.func (and with "
            "differentiable=True) use ConjugateGradient, Neumann, Unrolled or FirstOrder"
        )

    def inner_grad(oo: dict[str, Tensor], v: Tensor) -> Tensor:
        g = torch.func.grad(inner_loss, argnums=1)(oo, as_inner(v))
        return _flat([g[n] for n in names_w])

    g_o, g_w = torch.func.grad(outer_loss, argnums=(0, 1))(o, w)
    b = _flat([g_w[n] for n in names_w])
    gradient, hvp_fn = torch.func.vjp(lambda v: inner_grad(o, v), w_flat)

    def matvec(v: Tensor) -> Tensor:
        return hvp_fn(v)[0]

    if isinstance(solver, ConjugateGradient):
        x = _masked_cg(matvec, b, solver.iterations, solver.resolved_tol(b))
    else:
        assert isinstance(solver, Neumann)
        alpha = _power_alpha(matvec, b, solver.power_iterations) if solver.alpha == "auto" else solver.alpha
        x = _neumann(matvec, b, solver.iterations, alpha)
    _, mixed_fn = torch.func.vjp(lambda oo: inner_grad(oo, w_flat), o)
    mixed = mixed_fn(x)[0]
    result = {n: g_o[n] - mixed[n] for n in o}
    b_norm = torch.linalg.vector_norm(b)
    residual = torch.linalg.vector_norm(matvec(x) - b) / torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))
    diagnostics = {"residual": residual, "inner_gradient": gradient, "hessian_times_point": matvec(w_flat)}
    return result, diagnostics


__all__ = ["composable_hypergradient", "inside_transform"]
