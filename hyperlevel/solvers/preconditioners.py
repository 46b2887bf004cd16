"""Preconditioners for conjugate gradients on the inner Hessian, built from Hessian-vector products.

A preconditioner ``M ~ H`` (symmetric positive definite) turns CG on ``H x = b`` into CG on ``M^{-1} H``: the same
solution, in fewer iterations when ``M^{-1} H`` is better conditioned. Building ``M`` costs products too, so a
preconditioner pays only when it saves more iterations than its set-up costs; ``docs/benchmarks.md`` ("CG levers")
has the measurements on the benchmark problems. Each builder is called once per solve with the product operator
and the right-hand side and returns ``(apply, products)``: ``apply(r) = M^{-1} r`` and the Hessian-vector products
it spent. Set-up products are batched (``torch.autograd.grad(..., is_grads_batched=True)``) when the operator offers
``batched`` (the default double-backward path), one by one otherwise.

* :class:`Jacobi`: ``M = diag(H)``, exact (``probes=None``: ``n`` unit-vector products) or estimated by
  Hutchinson's estimator ``diag(H) ~ mean_z z * (H z)`` over Rademacher probes ``z``.
* :class:`NystromPreconditioner`: the randomised Nystrom preconditioner of Frangella, Tropp and Udell (2023,
  "Randomized Nystrom preconditioning", SIMAX): a rank-``r`` sketch ``H Q`` gives ``H ~ U diag(lam) U^T`` and
  ``M^{-1} = (lam_r) U diag(1 / lam) U^T + (I - U U^T)``, which maps the ``r`` largest eigenvalues to about
  ``lam_r``: it pays when a few large eigenvalues dominate the spectrum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

Apply = Callable[[Tensor], Tensor]


class Preconditioner(Protocol):
    """Builds ``M^{-1}`` for one solve: ``build(matvec, b) -> (apply, products)``."""

    def build(self, matvec, b: Tensor) -> tuple[Apply, int]: ...


def batched_products(matvec, V: Tensor, chunk: int = 256) -> Tensor:
    """``H V^T`` as a ``(k, n)`` block: vectorised through ``matvec.batched`` in chunks when the operator has it
    (one backward pass per chunk), else one product per row."""
    batched = getattr(matvec, "batched", None)
    if batched is None:
        return torch.stack([matvec(v) for v in V])
    return torch.cat([batched(V[i:i + chunk]) for i in range(0, V.shape[0], chunk)])


def _rademacher(k: int, n: int, like: Tensor, generator: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, (k, n), generator=generator).to(like.device, like.dtype)
    return 2 * signs - 1


class Jacobi:
    """``M = diag(H)``: the exact diagonal (``probes=None``, ``n`` products) or Hutchinson's estimate from
    ``probes`` Rademacher vectors (``probes`` products). Estimated entries are floored at ``floor`` times their mean
    absolute value, so a noisy (even negative) estimate keeps ``M`` positive definite.

    Args:
        probes: ``None`` for the exact diagonal, else the number of random probes.
        floor: the relative floor of the diagonal entries.
        seed: seed of the probes.
    """

    def __init__(self, probes: int | None = None, floor: float = 1e-2, seed: int = 0):
        if probes is not None and probes < 1:
            raise ValueError(f"probes must be >= 1 or None, got {probes}")
        if not floor > 0:
            raise ValueError(f"floor must be positive, got {floor}")
        self.probes, self.floor = probes, float(floor)
        self._generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return f"Jacobi(probes={self.probes})"

    def diagonal(self, matvec, b: Tensor) -> tuple[Tensor, int]:
        """The (estimated) diagonal of ``H`` and the products it took."""
        n = b.numel()
        if self.probes is None:
            d = torch.cat([batched_products(matvec, torch.eye(n, dtype=b.dtype, device=b.device)[i:i + 256])
                           .diagonal(offset=i) for i in range(0, n, 256)])
            return d, n
        Z = _rademacher(self.probes, n, b, self._generator)
        return (Z * batched_products(matvec, Z)).mean(0), self.probes

    def build(self, matvec, b: Tensor) -> tuple[Apply, int]:
        d, products = self.diagonal(matvec, b)
        inverse = 1.0 / d.clamp_min(self.floor * float(d.abs().mean()))
        return (lambda r: r * inverse), products


class NystromPreconditioner:
    """Randomised Nystrom preconditioner of rank ``rank`` (Frangella, Tropp and Udell, 2023): ``rank`` products
    with an orthonormalised Gaussian sketch ``Q`` give ``H ~ U diag(lam) U^T``; ``M^{-1} r = lam_r U diag(1/lam)
    U^T r + (r - U U^T r)``. Worth its ``rank`` products when a few large eigenvalues set the condition number.

    Args:
        rank: sketch size (capped at the dimension).
        seed: seed of the sketch.
    """

    def __init__(self, rank: int = 50, seed: int = 0):
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.rank = int(rank)
        self._generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return f"NystromPreconditioner(rank={self.rank})"

    def build(self, matvec, b: Tensor) -> tuple[Apply, int]:
        n = b.numel()
        r = min(self.rank, n)
        omega = torch.randn(n, r, generator=self._generator, dtype=b.dtype).to(b.device)
        Q, _ = torch.linalg.qr(omega)
        Y = batched_products(matvec, Q.T.contiguous()).T  # n x r: H Q
        shift = torch.finfo(b.dtype).eps * float(torch.linalg.matrix_norm(Y))
        Y = Y + shift * Q
        C = torch.linalg.cholesky(0.5 * (Q.T @ Y + Y.T @ Q))
        B = torch.linalg.solve_triangular(C, Y.T, upper=False).T  # Y C^{-T}
        U, S, _ = torch.linalg.svd(B, full_matrices=False)
        lam = (S * S - shift).clamp_min(0)
        lam_r = float(lam[-1])
        if not lam_r > 0:
            return (lambda v: v), r  # the sketch found no curvature: no preconditioning
        scale = lam_r / lam - 1.0

        def apply(v: Tensor) -> Tensor:
            return v + U @ (scale * (U.T @ v))

        return apply, r


def resolve(preconditioner) -> Preconditioner | None:
    """``None``, a builder, or a name: ``"jacobi"`` (exact diagonal), ``"hutchinson"`` (Jacobi, 10 probes),
    ``"nystrom"`` (rank 50)."""
    if preconditioner is None or hasattr(preconditioner, "build"):
        return preconditioner
    named = {"jacobi": lambda: Jacobi(), "hutchinson": lambda: Jacobi(probes=10),
             "nystrom": lambda: NystromPreconditioner()}
    if preconditioner not in named:
        raise ValueError(f"preconditioner must be None, a builder with .build or one of {sorted(named)}, "
                         f"got {preconditioner!r}")
    return named[preconditioner]()


__all__ = ["Jacobi", "NystromPreconditioner", "Preconditioner", "batched_products", "resolve"]
