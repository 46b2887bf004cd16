"""Zero-order (evolution-strategy) hypergradient with antithetic sampling (TorchOpt's zero-order gradients)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._flat import flatten, unflatten
from ..functional import evaluate
from ..typing import PairLoss, Params, Reduce
from ._trajectory import descend, detached, loss_gradients
from .base import Solver, SolverInfo
from .target import Declaration, PartialTarget, UnrolledTarget


class ZeroOrder(Solver):
    """Evolution-strategy estimate of the gradient of ``f(o) = F(o, w_K(o))``, with no derivative through ``w_K``.

    ``w_K(o)`` is ``K`` plain gradient steps on the inner loss from the given inner point (a black box: only
    values of ``f`` are used), and the estimate is the antithetic Gaussian-smoothing gradient

        g = 1/N sum_i (f(o + sigma u_i) - f(o - sigma u_i)) / (2 sigma) u_i,    u_i ~ N(0, I),

    unbiased for the gradient of the smoothed ``E f(o + sigma u)``, which tends to ``d f / d o`` as ``sigma``
    shrinks. No Hessian-vector product and no graph through the inner loop: it works with non-differentiable inner
    procedures, at a variance of about ``(d + 1) / N`` (relative, for ``d`` outer parameters). ``orthogonal=True``
    draws the directions in orthogonal blocks of ``d`` (scaled to norm ``sqrt(d)``), which removes that variance
    for quadratic ``f`` when ``N`` is a multiple of ``d`` (Choromanski et al. 2018). Cost: ``2 N (K + 1)``
    evaluations (``K`` inner gradients and one outer loss per sample side); no HVP. The generator state is saved
    with the solver.

    Args:
        samples: number of antithetic pairs ``N``.
        sigma: smoothing radius.
        steps: inner gradient steps ``K`` per evaluation (0: ``f(o) = F(o, w)``, the partial objective).
        inner_lr: inner step size.
        orthogonal: orthogonal direction blocks instead of independent Gaussians.
        seed: seed of the directions.
    """

    method = "zero_order"

    def __init__(self, samples: int = 32, sigma: float = 1e-3, steps: int = 10, inner_lr: float = 1e-2,
                 orthogonal: bool = False, seed: int = 0):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.steps = int(steps)
        self.inner_lr = float(inner_lr)
        self.orthogonal = bool(orthogonal)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    @property
    def declaration(self) -> Declaration:
        target = UnrolledTarget(self.steps, self.inner_lr) if self.steps else PartialTarget()
        return Declaration(target, exact=False,
                           how=f"antithetic {'orthogonal' if self.orthogonal else 'Gaussian'} ES, "
                               f"{self.samples} pairs, sigma {self.sigma}")

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self._generator.set_state(state["generator"])

    def directions(self, dim: int, dtype: torch.dtype) -> Tensor:
        """``samples x dim`` directions (Gaussian, or orthogonal blocks of norm ``sqrt(dim)``)."""
        g = torch.randn(self.samples, dim, generator=self._generator, dtype=torch.float64)
        if self.orthogonal:
            blocks = []
            for start in range(0, self.samples, dim):
                q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=self._generator, dtype=torch.float64))
                blocks.append(q.T[: self.samples - start] * dim**0.5)
            g = torch.cat(blocks)
        return g.to(dtype)

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        names, like = list(outer), [p.detach() for p in outer.values()]
        o0 = flatten(like)

        def f(flat: Tensor) -> Tensor:
            o = dict(zip(names, unflatten(flat, like), strict=True))
            w = detached(inner)
            for _ in range(self.steps):
                w = descend(w, loss_gradients(inner_loss, o, w, create_graph=False, reduce=reduce)[1],
                            self.inner_lr, track=False)
            with torch.no_grad():  # values only: no graph (a loss value, not checked for a graph)
                value = outer_loss(o, w).detach().reshape(())
            return value if reduce is None else reduce(value)

        u = self.directions(o0.numel(), o0.dtype).to(o0.device)
        diffs = torch.stack([f(o0 + self.sigma * ui) - f(o0 - self.sigma * ui) for ui in u])
        estimate = (diffs / (2 * self.sigma)) @ u / self.samples
        value = float(evaluate(outer_loss, outer, inner, "outer_loss").detach())
        info = SolverInfo(solver=type(self).__name__, iterations=self.samples,
                          gradient_evals=2 * self.samples * self.steps, outer_loss=value,
                          extra={"function_evals": float(2 * self.samples)})
        return [t.clone() for t in unflatten(estimate, like)], info
