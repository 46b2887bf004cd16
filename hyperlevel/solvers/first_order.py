"""First-order hypergradient: the direct partial derivative only (a baseline)."""

from __future__ import annotations

from torch import Tensor

from ..functional import evaluate, grads, zeros_for_none
from ..typing import PairLoss, Params, Reduce
from .base import Solver, SolverInfo, reduce_list
from .target import Declaration, PartialTarget


class FirstOrder(Solver):
    """The partial derivative ``d_o F(o, w)`` at the given inner point, ignoring how ``w*`` moves with ``o``.

    Exact when the outer parameters do not enter the inner problem; otherwise a biased baseline (it is zero for
    pure hyper-parameters such as a regularisation weight that appears only in the inner loss). Cost: 1 gradient
    evaluation.
    """

    method = "first_order"

    @property
    def declaration(self) -> Declaration:
        return Declaration(PartialTarget(), exact=True, how="one backward pass", nested="partial")

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        value = evaluate(outer_loss, outer, inner, "outer_loss")
        gs = grads(value, outer)
        out = zeros_for_none(gs, outer)
        return reduce_list(reduce, out), SolverInfo(
            solver=type(self).__name__, gradient_evals=1, outer_loss=float(value.detach())
        )
