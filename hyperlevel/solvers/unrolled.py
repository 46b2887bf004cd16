"""Reverse-mode differentiation through unrolled inner gradient steps."""

from __future__ import annotations

import torch
from torch import Tensor

from .._flat import flatten
from ..errors import InvalidProblemError
from ..functional import check_outer_used, evaluate, grads, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from .base import Solver, SolverInfo, blow_up, reduce_list
from .target import Declaration, UnrolledTarget


def divergence_message(solver: str, option: str, lr: float, g0: float, gk: float, step_norms, inner_loss,
                       outer: Params, inner: Params, reduce: Reduce | None) -> str:
    """What grew, and a step size that would not diverge (from the Hessian's largest eigenvalue at the start)."""
    steps = ""
    if len(step_norms) == 2:
        steps = f", step length {float(step_norms[0]):.3e} -> {float(step_norms[1]):.3e}"
    text = (
        f"{solver}: the inner gradient steps diverged (inner loss {g0:.3e} -> {gk:.3e}{steps}); the result is the "
        f"gradient through blown-up iterates, not a hypergradient. Lower {option}"
    )
    if reduce is None:
        from ..spectral import hessian_largest_eigenvalue

        try:
            lam = hessian_largest_eigenvalue(inner_loss, outer, inner, iterations=20).value
        except Exception:  # noqa: BLE001 - advice only; the warning must still be issued
            lam = float("nan")
        if lam > 0:
            return f"{text} below 2 / lambda_max = {2 / lam:.3e} (lambda_max of the inner Hessian is about {lam:.3e})"
    return f"{text} below 2 / lambda_max of the inner Hessian (hyperlevel.spectral.hessian_largest_eigenvalue)"


class Unrolled(Solver):
    """Gradient through ``steps`` plain gradient-descent steps on the inner loss, from the given inner point.

    Computes exactly ``d/do F(o, w_K(o))`` with ``w_{t+1} = w_t - inner_lr * d_w G(o, w_t)`` and ``w_0`` the given
    inner point (held constant). With ``truncate=T`` only the last ``T`` steps are differentiated (truncated
    back-propagation): the first ``K - T`` steps run without a graph, which saves memory and time and drops their
    contribution. Cost: ``K`` gradient evaluations forward and ``T`` Hessian-vector products backward; memory
    grows linearly in ``T``.

    In a data-parallel run each differentiated step's averaged gradient is itself differentiated, so the average
    must be autograd-aware: when the ``reduce`` given to :meth:`solve` has a ``differentiable`` attribute
    (:class:`hyperlevel.distributed.MeanReduce`, built on ``torch.distributed.nn.functional.all_reduce``) those
    steps use it; otherwise ``reduce`` itself must be differentiable.

    Args:
        steps: number of inner steps ``K``.
        inner_lr: inner step size.
        truncate: number of final steps to differentiate through (``None``: all).
        checkpoint_every: keep only every ``C``-th inner point and recompute the others segment by segment in the
            backward pass (:mod:`hyperlevel.solvers.checkpointed_unroll`): same hypergradient, peak memory
            ``O(steps / C + C)`` instead of ``O(steps)``, about one extra forward pass of the inner gradient.
            ``None`` (default) stores the whole trajectory's graph. (The registry's separate
            ``unrolled_recompute`` solver, ``UnrolledRecompute``, runs the same kind of reverse pass as its own solver;
            see docs/large_networks.md.)
    """

    method = "unrolled"

    def __init__(self, steps: int = 10, inner_lr: float = 1e-2, truncate: int | None = None,
                 checkpoint_every: int | None = None):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if truncate is not None and not 1 <= truncate <= steps:
            raise ValueError(f"truncate must be in [1, steps={steps}], got {truncate}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 or None, got {checkpoint_every}")
        self.steps = int(steps)
        self.inner_lr = float(inner_lr)
        self.truncate = truncate
        self.checkpoint_every = checkpoint_every

    @property
    def declaration(self) -> Declaration:
        frozen = 0 if self.truncate is None else self.steps - self.truncate
        return Declaration(UnrolledTarget(self.steps, self.inner_lr, frozen_steps=frozen), exact=True,
                           how="reverse mode through the stored trajectory",
                           nested="unrolled" if self.truncate is None else None)

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        differentiated = self.steps if self.truncate is None else self.truncate
        if self.checkpoint_every is not None:
            return self._solve_checkpointed(outer_loss, inner_loss, outer, inner, reduce, differentiated)
        names = list(inner)
        w = dict(inner)
        first_loss, step_norms = None, []
        for t in range(self.steps):
            track = t >= self.steps - differentiated
            value = evaluate(inner_loss, outer, w, "inner_loss")
            if first_loss is None:
                first_loss = value.detach()
            gs = grads(value, w, create_graph=track)
            if reduce is not None and all(g is not None for g in gs):
                # a differentiated step needs an autograd-aware average (MeanReduce.differentiable)
                step_reduce = getattr(reduce, "differentiable", reduce) if track else reduce
                gs = reduce_list(step_reduce, gs)  # type: ignore[arg-type]
            missing = [n for n, g in zip(names, gs, strict=True) if g is None]
            if missing:
                raise InvalidProblemError(f"inner parameters {missing} do not influence inner_loss")
            if t in (0, self.steps - 1):
                step_norms.append(self.inner_lr * flatten([g.detach().reshape(-1) for g in gs]).norm())
            if track:
                w = {n: p - self.inner_lr * g for n, p, g in zip(names, w.values(), gs, strict=True)}
            else:
                with torch.no_grad():
                    w = {n: (p - self.inner_lr * g).requires_grad_() for n, p, g in zip(names, w.values(), gs)}
        value = evaluate(outer_loss, outer, w, "outer_loss")
        result = grads(value, outer)
        if self.truncate is None:  # unused in both losses: no path from it to F(o, w_K)
            check_outer_used(outer, result, None)
        out = zeros_for_none(result, outer)
        out = reduce_list(reduce, out)
        info = SolverInfo(
            solver=type(self).__name__, iterations=self.steps, gradient_evals=self.steps + 1, hvp_evals=differentiated,
            outer_loss=float(value.detach()),
        )
        last_loss = evaluate(inner_loss, outer, {n: p.detach().requires_grad_() for n, p in w.items()}, "inner_loss")
        self._check_divergence(info, first_loss, last_loss, step_norms[0], step_norms[-1], inner_loss, outer,
                               inner, reduce)
        return out, info

    def _solve_checkpointed(self, outer_loss, inner_loss, outer, inner, reduce, differentiated):
        from .checkpointed_unroll import checkpointed_unroll

        first_loss = evaluate(inner_loss, outer, {n: p.detach().requires_grad_() for n, p in inner.items()},
                              "inner_loss").detach()
        result, value, extra, final = checkpointed_unroll(
            outer_loss, inner_loss, outer, inner, steps=self.steps, inner_lr=self.inner_lr,
            differentiated=differentiated, checkpoint_every=int(self.checkpoint_every), reduce=reduce,
        )
        if self.truncate is None:
            check_outer_used(outer, result, None)
        out = reduce_list(reduce, zeros_for_none(result, outer))
        info = SolverInfo(
            solver=type(self).__name__, iterations=self.steps,
            gradient_evals=self.steps + 1 + int(extra["recomputed_steps"]) + differentiated,
            hvp_evals=differentiated, outer_loss=float(value.detach()), extra=extra,
        )
        self._check_divergence(info, first_loss, evaluate(inner_loss, outer, final, "inner_loss"), None, None,
                               inner_loss, outer, inner, reduce)
        return out, info

    def _check_divergence(self, info: SolverInfo, first_loss, last_loss, first_step, last_step, inner_loss,
                          outer: Params, inner: Params, reduce: Reduce | None) -> None:
        """Mark ``info`` diverged (with advice) when the inner loss or step length grew (:func:`blow_up`)."""
        diverged, g0, gk = blow_up(first_loss, last_loss, first_step, last_step, reduce)
        if diverged:
            step_norms = [] if first_step is None else [first_step, last_step]
            info.converged, info.diverged = False, True
            info.message = divergence_message(
                f"Unrolled(steps={self.steps}, inner_lr={self.inner_lr})", "inner_lr", self.inner_lr, g0, gk,
                step_norms, inner_loss, outer, inner, reduce,
            )
