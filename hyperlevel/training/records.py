"""What a run reports: one :class:`StepRecord` per step, a :class:`RunSummary` at the end, and the
:class:`Callback` hooks that receive them (progress bars, loggers).

Levels choose what the records carry about them: a level whose ``params`` has a ``logged_values()`` method
(:class:`LoggedValues`; :class:`~hyperlevel.LossWeights` reports its weights) appears under
``weights/LEVEL/NAME`` in :meth:`StepRecord.scalars`; the engine does not know the classes of the levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from ..signals import exit_status
from ..solvers import SolverInfo

if TYPE_CHECKING:
    from ..engine import Engine
    from ..problem import Problem
    from ..schedule import Phase

__all__ = ["Callback", "LoggedValues", "RunSummary", "StepRecord", "logged_values"]


@runtime_checkable
class LoggedValues(Protocol):
    """A level's ``params`` that reports named scalars for the logs each step (e.g. learned loss weights)."""

    def logged_values(self) -> Mapping[str, float]: ...


def logged_values(problem: Problem) -> dict[str, dict[str, float]]:
    """The scalars each level's parameters report (:class:`LoggedValues`), by level name."""
    return {lv.name: dict(lv.params.logged_values()) for lv in problem.levels
            if isinstance(lv.params, LoggedValues)}


@dataclass
class StepRecord:
    """What one engine step did; callbacks receive it and :meth:`scalars` flattens it for loggers.

    ``weights`` holds what the levels report through :class:`LoggedValues` (for :class:`~hyperlevel.LossWeights`:
    the weights ``s``), by level name.
    """

    step: int
    phase: str
    phase_step: int
    outer_loss: float = math.nan
    inner_loss: float = math.nan
    hypergradient_norm: dict[str, float] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    solver_info: SolverInfo | None = None
    seconds: float = 0.0
    skipped: bool = False
    converged: bool = False

    def scalars(self) -> dict[str, float]:
        out = {"loss/outer": self.outer_loss, "loss/inner": self.inner_loss, "time/step_s": self.seconds}
        out.update({f"hypergradient_norm/{k}": v for k, v in self.hypergradient_norm.items()})
        out.update({f"lr/{k}": v for k, v in self.lr.items()})
        for level, ws in self.weights.items():
            out.update({f"weights/{level}/{k}": v for k, v in ws.items()})
        if self.solver_info is not None:
            out["solver/iterations"] = float(self.solver_info.iterations)
            out["solver/residual"] = self.solver_info.residual
        out["skipped"] = float(self.skipped)
        return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}


@dataclass
class RunSummary:
    """How a run ended. ``signal``: the number of the signal (SIGINT, SIGTERM) that interrupted it, if any."""

    status: Literal["finished", "interrupted", "stopped"]
    steps: int
    phase: str | None
    skipped_steps: int
    checkpoint: Path | None
    signal: int | None = None

    @property
    def exit_status(self) -> int:
        """The process exit status for this outcome: 0, or 128 + the signal's number when a signal stopped the
        run (130 SIGINT, 143 SIGTERM; 130 for an interruption agreed with other data-parallel ranks)."""
        if self.status != "interrupted":
            return 0
        return exit_status(self.signal) if self.signal is not None else 130


class Callback:
    """Hooks the engine calls on the main process. Override what you need."""

    def on_run_start(self, engine: Engine) -> None: ...
    def on_phase_start(self, engine: Engine, phase: Phase) -> None: ...
    def on_step_end(self, engine: Engine, record: StepRecord) -> None: ...
    def on_phase_end(self, engine: Engine, phase: Phase) -> None: ...
    def on_checkpoint(self, engine: Engine, path: Path) -> None: ...
    def on_run_end(self, engine: Engine, summary: RunSummary) -> None: ...
