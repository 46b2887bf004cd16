"""Initialisation as an auxiliary variable (IAD; Liu et al. 2021, the "initialization auxiliary" of IAPTT-GM)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..functional import check_outer_used, evaluate, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from ._trajectory import descend, loss_gradients
from .base import Solver, SolverInfo, reduce_list
from .target import Declaration, UnrolledTarget


class InitialisationAuxiliary(Solver):
    """Unrolled hypergradient from a learned inner initialisation ``z``, which the solver itself trains.

    Each call unrolls ``K`` gradient steps from ``z`` (the given inner point at the first call, or whenever the
    inner shapes change), returns ``d/do F(o, w_K(o, z))`` and moves ``z`` by one gradient step
    ``z <- z - init_lr * d/dz F(o, w_K(o, z))`` from the same backward pass: the initialisation is an auxiliary
    outer variable. With a few steps this reaches inner solutions that a fixed initialisation cannot, and it makes
    the hypergradient well defined when the inner problem has many minimisers (Liu et al.). ``z`` is the solver's
    state (``state_dict``), so an engine checkpoint resumes it. The given inner point is used only to start ``z``.
    Cost: as ``Unrolled(K)``: ``K`` gradients forward, ``K`` HVPs backward; memory O(K) step graphs.

    Args:
        steps: number of inner steps ``K``.
        inner_lr: inner step size.
        init_lr: step of the initialisation's own update (0 keeps ``z`` fixed).
    """

    method = "iad"

    def __init__(self, steps: int = 10, inner_lr: float = 1e-2, init_lr: float = 1e-1):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if init_lr < 0:
            raise ValueError(f"init_lr must be >= 0, got {init_lr}")
        self.steps = int(steps)
        self.inner_lr = float(inner_lr)
        self.init_lr = float(init_lr)
        self._init: Params | None = None

    @property
    def declaration(self) -> Declaration:
        start = None if self._init is None else dict(self._init)
        return Declaration(UnrolledTarget(self.steps, self.inner_lr, start=start), exact=True,
                           how="reverse mode from the solver's learned initialisation z, then z takes a step")

    @property
    def initialisation(self) -> Params | None:
        """The current auxiliary initialisation ``z`` (``None`` before the first call)."""
        return self._init

    def state_dict(self) -> dict[str, Any]:
        return {} if self._init is None else {"init": dict(self._init)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._init = state.get("init")

    def _start(self, inner: Params) -> Params:
        z = self._init
        if z is None or set(z) != set(inner) or any(z[k].shape != inner[k].shape for k in inner):
            z = {k: v.detach().clone() for k, v in inner.items()}
        return {k: z[k].to(device=inner[k].device, dtype=inner[k].dtype).requires_grad_() for k in inner}

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        z = self._start(inner)
        w = z
        for _ in range(self.steps):
            w = descend(w, loss_gradients(inner_loss, outer, w, create_graph=True, reduce=reduce)[1],
                        self.inner_lr, track=True)
        value = evaluate(outer_loss, outer, w, "outer_loss")
        both = torch.autograd.grad(value, [*outer.values(), *z.values()], allow_unused=True)
        result, dz = list(both[: len(outer)]), list(both[len(outer):])
        check_outer_used(outer, result, None)
        out = reduce_list(reduce, zeros_for_none(result, outer))
        dz = reduce_list(reduce, zeros_for_none(dz, z))
        self._init = {k: (p - self.init_lr * g).detach() for (k, p), g in zip(z.items(), dz, strict=True)}
        info = SolverInfo(solver=type(self).__name__, iterations=self.steps, gradient_evals=self.steps + 1,
                          hvp_evals=self.steps, outer_loss=float(value.detach()),
                          extra={"init_gradient_norm": float(torch.linalg.vector_norm(
                              torch.cat([g.reshape(-1) for g in dz])))})
        return out, info
