"""What every step kind shares: the :class:`StepContext` it works in, the :class:`StepKind` interface, and three
helpers (a level's objective as a loss over flat parameter dicts, those flat dicts, applying gradients)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from .._flat import flatten
from ..errors import NonFiniteError
from ..level import Level
from ..problem import Problem
from ..solvers.base import Reduce
from ..validation import check_loss

if TYPE_CHECKING:
    from ..schedule import Phase
    from ..training.records import StepRecord

__all__ = ["StepContext", "StepKind", "apply_gradients", "flat_params", "level_loss"]

#: ``{level name: {parameter name: tensor}}``, as objectives receive them
LevelParams = dict[str, dict[str, Tensor]]


@dataclass
class StepContext:
    """What a step works on: the problem, the phase's optimizers (one per trained level, built by the engine)
    and the data-parallel ``reduce`` (``None`` in one process)."""

    problem: Problem
    optimizers: Mapping[str, torch.optim.Optimizer]
    reduce: Reduce | None = None


class StepKind(Protocol):
    """One kind of phase step, bound to its phase: ``step(context, record)`` moves the phase's levels once and
    fills ``record`` (losses, hypergradient norms, solver info). It raises :class:`~hyperlevel.NonFiniteError`
    or :class:`~hyperlevel.SolverDivergedError` for non-finite values; the engine decides to stop or skip."""

    phase: Phase

    def __call__(self, context: StepContext, record: StepRecord) -> None: ...


def level_loss(level: Level, base: LevelParams, batch: Any, what: str | None = None):
    """``level``'s objective on ``batch`` as a function of flat dicts ``{"level/name": tensor}`` that replace
    entries of ``base`` (the solvers' ``loss(outer, inner)`` form)."""
    what = what or f"objective of level {level.name!r}"

    def loss(*flat_dicts: Mapping[str, Tensor]) -> Tensor:
        params = {k: dict(v) for k, v in base.items()}
        for flat in flat_dicts:
            for key, t in flat.items():
                lv, name = key.split("/", 1)
                params[lv][name] = t
        return check_loss(level.objective(params, batch), what, finite=False)

    loss.hyperlevel_name = what  # type: ignore[attr-defined]  # named in non-finite diagnoses
    return loss


def flat_params(base: Mapping[str, Mapping[str, Tensor]], levels: Sequence[str]) -> dict[str, Tensor]:
    """The parameters of ``levels`` as one flat dict keyed ``"level/name"``."""
    return {f"{lv}/{n}": t for lv in levels for n, t in base[lv].items()}


def apply_gradients(context: StepContext, levels: Sequence[str], grads: Mapping[str, Tensor],
                    record: StepRecord, what: str) -> None:
    """Set ``.grad`` of each level's live parameters from ``grads`` (keyed ``"level/name"``), record each level's
    gradient norm, then step and clear the levels' optimizers. A non-finite gradient raises before any step."""
    for lv in levels:
        live = context.problem[lv].named_parameters()
        gs = [grads[f"{lv}/{n}"] for n in live]
        norm = float(torch.linalg.vector_norm(flatten([g.reshape(-1) for g in gs])))
        if not math.isfinite(norm):
            raise NonFiniteError(f"non-finite {what} for level {lv!r}")
        record.hypergradient_norm[lv] = norm
        for p, g in zip(live.values(), gs, strict=True):
            p.grad = g.to(p.dtype).reshape(p.shape)
    for lv in levels:
        context.optimizers[lv].step()
        context.optimizers[lv].zero_grad(set_to_none=True)
