"""Data-parallel runs: what the ranks must agree on, beyond the solvers' own averaged quantities."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InvalidProblemError
from ..schedule import Phase
from ..signals import StopSignals
from ..solvers.base import Reduce
from .records import StepRecord

__all__ = ["DATA_PARALLEL_NESTED", "agree_on_step", "check_data_parallel"]

#: nested paths (``Declaration.nested``) that take the data-parallel reduce: the joint method and first order
DATA_PARALLEL_NESTED = ("joint", "partial")


def check_data_parallel(phases: Sequence[Phase]) -> None:
    """Refuse, before training, a nested phase whose solver cannot average its products over ranks."""
    for p in phases:
        if p.nested and p.solver.declaration.nested not in DATA_PARALLEL_NESTED:
            raise InvalidProblemError(
                f"phase {p.name!r}: nested phases take a data-parallel reduce with the joint method only "
                f"(solvers.MinimalResidual or solvers.Dense), got {type(p.solver).__name__}; run it in "
                "one process or switch its solver"
            )


def agree_on_step(reduce: Reduce, signals: StopSignals, record: StepRecord) -> None:
    """One small collective per step, so that every rank stops at the same step when any was interrupted (a
    rank leaving alone would leave the others waiting in a collective), and the logged losses are the means over
    all ranks' data rather than rank 0's shard."""
    mean = reduce(torch.tensor([float(signals.requested), record.outer_loss, record.inner_loss],
                               dtype=torch.float64))
    if bool(mean[0] > 0):
        signals.request()
    record.outer_loss, record.inner_loss = float(mean[1]), float(mean[2])
