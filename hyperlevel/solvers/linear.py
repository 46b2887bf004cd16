"""Matrix-free linear solvers for the implicit hypergradient's system ``H x = b``.

Both work on flat vectors and a callable ``matvec``; they know nothing about hypergradients, so the two-level and
the nested (N-level) solvers share them, and users can reuse them for their own operators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import SolverDivergedError
from ..typing import MatVec


@dataclass
class LinearSolveInfo:
    iterations: int
    residual: float
    converged: bool
    matvecs: int
    message: str = ""
    indefinite: bool = False


def _finite(x: Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def _start(matvec: MatVec, b: Tensor, x0: Tensor | None) -> tuple[Tensor, Tensor, int]:
    """The first iterate, its residual ``b - A x`` and the products that cost (a warm start costs one)."""
    if x0 is None:
        return torch.zeros_like(b), b.clone(), 0
    x = x0.clone()
    return x, b - matvec(x), 1


def _curvature(p: Tensor, hp: Tensor, k: int, solver_name: str) -> tuple[float, str]:
    """``p^T H p`` of a CG search direction, and a stop message when it is not positive (``H`` is not positive
    definite along ``p``); raises :class:`SolverDivergedError` when the product is not finite."""
    curvature = float(torch.dot(p, hp))
    if not math.isfinite(curvature):
        raise SolverDivergedError(
            f"{solver_name}: the Hessian-vector product became NaN/Inf at iteration {k}; "
            "the inner loss is not twice differentiable at the given point or overflows"
        )
    if curvature <= 0:
        return curvature, (f"stopped at iteration {k}: non-positive curvature p^T H p = {curvature:.3e}; "
                           "the inner Hessian is not positive definite (is the inner point a minimum?)")
    return curvature, ""


def conjugate_gradient(
    matvec: MatVec,
    b: Tensor,
    *,
    iterations: int,
    tol: float,
    x0: Tensor | None = None,
    solver_name: str = "ConjugateGradient",
    preconditioner: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, LinearSolveInfo]:
    """Solve ``H x = b`` for symmetric positive-definite ``H`` by conjugate gradients.

    Stops when ``||r|| <= tol * ||b||`` or after ``iterations`` matvecs. Costs one matvec per iteration (plus one
    when ``x0`` is given). Raises :class:`SolverDivergedError` when an iterate becomes non-finite, and stops with a
    message when it meets non-positive curvature (``H`` is not positive definite along a search direction: the
    inner point is then not a strict local minimum).

    ``preconditioner`` (``r -> M^{-1} r`` for a symmetric positive-definite ``M ~ H``) runs preconditioned CG: the
    same solution, in fewer iterations when ``M^{-1} H`` has a smaller condition number or more clustered
    eigenvalues than ``H``. The stopping test stays on the true residual ``||b - H x||``.
    """
    b_norm = torch.linalg.vector_norm(b)
    if b_norm == 0:
        return torch.zeros_like(b), LinearSolveInfo(0, 0.0, True, 0, "right-hand side is zero")
    x, r, matvecs = _start(matvec, b, x0)
    # Scalars live on the host as Python floats: one synchronisation per inner product, and the vector updates
    # are in-place axpys, which on small problems is where the time goes (per-call overhead, not arithmetic).
    # Without a preconditioner z = r and r . z = r . r: no extra product or inner product per iteration.
    rs = float(torch.dot(r, r))
    z = r if preconditioner is None else preconditioner(r)
    rz = rs if preconditioner is None else float(torch.dot(r, z))
    p = z.clone()
    threshold = (tol * float(b_norm)) ** 2
    message = ""
    k = 0
    for k in range(1, iterations + 1):  # noqa: B007 - k is reported after the loop
        if rs <= threshold:
            k -= 1
            break
        hp = matvec(p)
        matvecs += 1
        curvature, message = _curvature(p, hp, k, solver_name)
        if message:
            break
        alpha = rz / curvature
        x.add_(p, alpha=alpha)
        r.add_(hp, alpha=-alpha)
        rs = float(torch.dot(r, r))
        z = r if preconditioner is None else preconditioner(r)
        rz_new = rs if preconditioner is None else float(torch.dot(r, z))
        p.mul_(rz_new / rz).add_(z)
        rz = rz_new
    if not _finite(x):
        raise SolverDivergedError(f"{solver_name}: the solution iterate became NaN/Inf")
    residual = math.sqrt(max(rs, 0.0)) / float(b_norm)
    converged = residual <= tol and not message
    return x, LinearSolveInfo(k, residual, converged, matvecs, message, indefinite=bool(message))


def _divergence_cause(matvec: MatVec, term: Tensor, alpha: float) -> str:
    """Why a Neumann series diverged, from the curvature along its (dominant) diverging term.

    The term grows along the eigenvector with the largest ``|1 - alpha lambda|``: a negative curvature there means
    an indefinite Hessian, which no step fixes; a positive one is ``lambda_max``, which gives a safe step.
    """
    if not _finite(term):
        return f"alpha={alpha} exceeds 2 / lambda_max of the inner Hessian: lower alpha (or pass alpha='auto')"
    unit = term / torch.linalg.vector_norm(term)
    curvature = float(torch.dot(unit, matvec(unit)))
    if curvature < 0:
        return (
            f"the inner Hessian has negative curvature {curvature:.3e} along the diverging direction: the inner "
            "point is not a minimum, and no alpha makes the series converge (lowering it does not help). Solve "
            "the inner problem to a minimum (e.g. hyperlevel.solve_inner), or use Unrolled / FiniteDifference, "
            "whose targets are defined at any inner point"
        )
    return (
        f"alpha={alpha} exceeds 2 / lambda_max of the inner Hessian (lambda_max is about {curvature:.3e}): lower "
        f"alpha below {2 / curvature:.3e}, e.g. alpha={1 / curvature:.3e}, or pass alpha='auto'"
    )


def neumann_series(
    matvec: MatVec,
    b: Tensor,
    *,
    iterations: int,
    alpha: float,
    tol: float,
    solver_name: str = "Neumann",
    check_every: int = 10,
) -> tuple[Tensor, LinearSolveInfo]:
    """Approximate ``H^{-1} b`` by the truncated Neumann series ``alpha * sum_j (I - alpha H)^j b``.

    Converges when ``0 < alpha < 2 / lambda_max(H)`` for positive-definite ``H``. Stops early when a term falls
    below ``tol * ||b||`` (checked every ``check_every`` terms, where divergence is detected too). Costs
    ``iterations`` matvecs plus one to measure the true residual.
    """
    b_norm = torch.linalg.vector_norm(b)
    if b_norm == 0:
        return torch.zeros_like(b), LinearSolveInfo(0, 0.0, True, 0, "right-hand side is zero")
    term = b.clone()
    total = b.clone()
    matvecs = 0
    k = 0
    for k in range(1, iterations + 1):  # noqa: B007
        term.add_(matvec(term), alpha=-alpha)  # term is a private buffer: in place saves two allocations
        matvecs += 1
        total.add_(term)
        # Norms force a host round trip: check convergence and divergence every few terms, not every term.
        if k % check_every and k != iterations:
            continue
        term_norm = torch.linalg.vector_norm(term)
        if not _finite(term_norm) or term_norm > 1e8 * b_norm:
            raise SolverDivergedError(
                f"{solver_name}: the series term grew to {term_norm.item():.3e} (from {b_norm.item():.3e}) at "
                f"iteration {k}; {_divergence_cause(matvec, term, alpha)}"
            )
        if term_norm <= tol * b_norm:
            break
    x = alpha * total
    residual = (torch.linalg.vector_norm(matvec(x) - b) / b_norm).item()
    matvecs += 1
    if not math.isfinite(residual):
        raise SolverDivergedError(f"{solver_name}: the residual of the final iterate is NaN/Inf")
    return x, LinearSolveInfo(k, residual, residual <= tol, matvecs)


def minres(
    matvec: MatVec,
    b: Tensor,
    *,
    iterations: int,
    tol: float,
    x0: Tensor | None = None,
    solver_name: str = "MINRES",
) -> tuple[Tensor, LinearSolveInfo]:
    """Solve ``A x = b`` for symmetric (possibly indefinite) ``A`` by MINRES (Paige and Saunders, 1975).

    MINRES runs the Lanczos process on ``A`` and minimises ``||b - A x||`` over the Krylov space at every step,
    updating the minimiser by short recurrences (three vectors). It needs only symmetry, not definiteness, which is
    what the joint system of a nested problem (a saddle-point Hessian of a Lagrangian, docs/nesting.md) has; on a
    positive-definite ``A`` it takes about as many iterations as CG. Stops when the residual norm (tracked exactly
    by the recurrence, no extra product) falls to ``tol * ||b||`` or after ``iterations`` matvecs (one per
    iteration, plus one when ``x0`` is given).
    """
    b_norm_t = torch.linalg.vector_norm(b)
    b_norm = float(b_norm_t)
    if b_norm == 0:
        return torch.zeros_like(b), LinearSolveInfo(0, 0.0, True, 0, "right-hand side is zero")
    x, r1, matvecs = _start(matvec, b, x0)
    beta1 = float(torch.linalg.vector_norm(r1))
    if beta1 <= tol * b_norm:
        return x, LinearSolveInfo(0, beta1 / b_norm, True, matvecs)
    # Scalars on the host (one synchronisation per inner product), vectors updated in place, as in CG.
    y = r1.clone()
    r2 = r1.clone()
    w = torch.zeros_like(b)
    w2 = torch.zeros_like(b)
    old_beta, beta = 0.0, beta1
    dbar, epsilon, phibar, cs, sn = 0.0, 0.0, beta1, -1.0, 0.0
    threshold = tol * b_norm
    k = 0
    for k in range(1, iterations + 1):  # noqa: B007 - k is reported after the loop
        v = y / beta
        y = matvec(v)
        matvecs += 1
        if k >= 2:
            y.add_(r1, alpha=-beta / old_beta)
        alpha = float(torch.dot(v, y))
        if not math.isfinite(alpha):
            raise SolverDivergedError(
                f"{solver_name}: the Hessian-vector product became NaN/Inf at iteration {k}; "
                "the loss is not twice differentiable at the given point or overflows"
            )
        y.add_(r2, alpha=-alpha / beta)
        r1, r2 = r2, y.clone()
        old_beta, beta = beta, float(torch.linalg.vector_norm(y))
        # apply the previous Givens rotation to the new Lanczos column, then compute the next one
        old_epsilon = epsilon
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsilon = sn * beta
        dbar = -cs * beta
        gamma = max(math.hypot(gbar, beta), 1e-300)
        cs, sn = gbar / gamma, beta / gamma
        phi = cs * phibar
        phibar = sn * phibar
        # w_k = (v - old_epsilon w_{k-2} - delta w_{k-1}) / gamma; x += phi w_k
        w1, w2 = w2, w
        w = v.sub_(w1, alpha=old_epsilon).sub_(w2, alpha=delta).div_(gamma)
        x.add_(w, alpha=phi)
        if phibar <= threshold or beta == 0.0:  # beta = 0: the Krylov space is invariant, x is exact
            break
    if not _finite(x):
        raise SolverDivergedError(f"{solver_name}: the solution iterate became NaN/Inf")
    residual = phibar / b_norm
    return x, LinearSolveInfo(k, residual, residual <= tol, matvecs)
