"""The engine: runs a schedule of phases over a nested problem, with callbacks and exact resumption.

It only sequences the parts: the step kind of each phase (:mod:`hyperlevel.steps`), its optimizers, the
checkpoint format and folder, the non-finite policy and data-parallel agreement (:mod:`hyperlevel.training`),
and Ctrl-C / SIGTERM handling (:mod:`hyperlevel.signals`). docs/nesting.md, "The engine", maps them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ._flat import flatten
from .checkpoint import CheckpointError
from .errors import HyperlevelError
from .problem import Problem
from .schedule import Phase, Schedule
from .signals import StopSignals
from .solvers.base import Reduce
from .steps import StepContext, StepKind, for_phase
from .training.agreement import DATA_PARALLEL_NESTED, agree_on_step, check_data_parallel
from .training.checkpoints import RunCheckpoints
from .training.nonfinite import NonFinitePolicy
from .training.optimizers import PhaseOptimizers
from .training.records import Callback, RunSummary, StepRecord, logged_values
from .training.state import (
    CHECKPOINT_FORMAT,
    check_objectives_on_first_batches,
    engine_state,
    load_engine_state,
    remember_final_phase,
)


class Engine:
    """Runs a :class:`~hyperlevel.Schedule` over a :class:`~hyperlevel.Problem`.

    Each step runs the step kind of its phase (:mod:`hyperlevel.steps`: bilevel, nested, inner-only or an
    algorithm of the registry) and then the bookkeeping: schedulers, logs, checkpoints, phase changes.

    Args:
        problem: the levels.
        schedule: the phases.
        callbacks: progress, logging, ... (called on the main process only).
        checkpoint_dir: the run folder: ``last.pt`` is written there (atomically, with a checksum record)
            every ``checkpoint_every`` steps, at the end, and on SIGINT (Ctrl-C) or SIGTERM. While :meth:`run`
            runs, the folder is locked (:class:`~hyperlevel.runfolder.RunLock`): a second run into it fails at
            once. A new run (no ``resume``) into a folder that holds checkpoints raises
            :class:`~hyperlevel.runfolder.RunFolderInUseError` unless ``overwrite=True``.
        keep_checkpoints: keep the last that many checkpoints as ``step_00001000.pt`` (``last.pt`` is the newest
            of them, a hard link where possible); resuming from an unreadable ``last.pt`` falls back on the
            newest loadable one. 0 keeps ``last.pt`` only (no fallback).
        on_nonfinite: ``"raise"`` stops with an error naming level, step and phase; ``"skip"`` skips the
            update and counts it (``RunSummary.skipped_steps``).
        reduce: averages a tensor over data-parallel processes (see :mod:`hyperlevel.distributed`).
        is_main_process: only the main process writes checkpoints and runs callbacks.
        checkpoint_extra: returns extra entries for each checkpoint (e.g. a model configuration).
        check_objectives: before a new run, check on the first batches that each level reaches its objective.
        overwrite: start a new run into a folder holding an earlier run's checkpoints (they are deleted).
        lock: lock ``checkpoint_dir`` while running (on by default; off only for folders that another
            mechanism already protects).
    """

    _kind: StepKind  # the current phase's step strategy, set when the phase starts

    def __init__(self, problem: Problem, schedule: Schedule | Sequence[Phase], *, callbacks: Sequence[Callback] = (),
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, keep_checkpoints: int = 2,
                 on_nonfinite: Literal["raise", "skip"] = "raise", reduce: Reduce | None = None,
                 is_main_process: bool = True, checkpoint_extra: Callable[[], Mapping[str, Any]] | None = None,
                 check_objectives: bool = True, overwrite: bool = False, lock: bool = True):
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule(list(schedule))
        self.schedule.validate(problem.names)
        self.nonfinite = NonFinitePolicy(on_nonfinite)
        if reduce is not None:
            check_data_parallel(self.schedule.phases)
        self.checkpoints = RunCheckpoints(checkpoint_dir, every=checkpoint_every, keep=keep_checkpoints,
                                          extra=checkpoint_extra, overwrite=overwrite, lock=lock,
                                          writer=is_main_process)
        self.problem, self.callbacks, self.reduce = problem, list(callbacks), reduce
        self.is_main_process, self.check_objectives_first = is_main_process, check_objectives
        self.global_step = self.phase_index = self.phase_step = 0
        self.optimizers = PhaseOptimizers()
        self.signals = StopSignals()
        self.resumed_from: Path | None = None
        self.final_phase: dict[str, Any] | None = None  # see training.state.remember_final_phase
        self._saved_step: int | None = None

    @property
    def phase(self) -> Phase | None:
        return self.schedule[self.phase_index] if self.phase_index < len(self.schedule) else None

    @property
    def skipped_steps(self) -> int:
        return self.nonfinite.skipped

    def state_dict(self) -> dict[str, Any]:
        return engine_state(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_engine_state(self, state)

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the training state to ``path`` (default ``checkpoint_dir/last.pt``); main process only."""
        written = self.checkpoints.write(self.state_dict, self.global_step, path)
        if written is not None:
            self._saved_step = self.global_step
            self._call("on_checkpoint", written)
        return written

    def run(self, resume: str | Path | None = None, *, stop_after: int | None = None) -> RunSummary:
        """Run (or resume) the schedule to its end.

        Args:
            resume: a checkpoint written by this engine; training continues exactly where it stopped. An
                unreadable ``last.pt`` falls back on the newest loadable numbered checkpoint (with a warning).
            stop_after: stop (and checkpoint) once this many global steps are done, as an interruption would.

        SIGINT and SIGTERM finish the current step, write the checkpoint and return a summary with status
        ``"interrupted"`` (see :attr:`RunSummary.exit_status`).
        """
        with self.checkpoints.claim(new_run=resume is None and self.global_step == 0):
            self._begin(resume)
            status: Literal["finished", "interrupted", "stopped"] = "finished"
            with self.signals:  # also during the final checkpoint: a signal there must not kill the write
                while self.phase is not None and status == "finished":
                    self._step(self.phase)
                    if self.signals.requested:
                        status = "interrupted"
                    elif stop_after is not None and self.global_step >= stop_after and self.phase is not None:
                        status = "stopped"
                path = self.save_checkpoint() if self._saved_step != self.global_step else self.checkpoints.last
            summary = RunSummary(status, self.global_step, self.phase.name if self.phase else None,
                                 self.skipped_steps, path, self.signals.signum if status == "interrupted" else None)
            self.nonfinite.warn_if_skipped(self.global_step)
            self._call("on_run_end", summary)
            return summary

    def _begin(self, resume: str | Path | None) -> None:
        """Resume from a checkpoint, or check the objectives on the first batches and rewind the loaders."""
        self.signals = StopSignals()
        if resume is not None:
            state, used = self.checkpoints.read(resume)
            try:
                self.load_state_dict(state)
            except CheckpointError as err:
                raise CheckpointError(f"cannot resume from {used}: {err}") from None
            self.resumed_from = used
        elif self.check_objectives_first:
            check_objectives_on_first_batches(self.problem)
        self._call("on_run_start")

    def _step(self, phase: Phase) -> None:
        """One step of ``phase``, then the bookkeeping: schedulers, logs, agreement, phase end, checkpoint."""
        if not self.optimizers.active:
            self._start_phase(phase)
        start = time.perf_counter()
        record = StepRecord(step=self.global_step, phase=phase.name, phase_step=self.phase_step)
        with self.nonfinite.guard(self.global_step + 1, phase, record):
            self._kind(StepContext(self.problem, self.optimizers.optimizers, self.reduce), record)
        self.optimizers.step_schedulers()
        record.lr, record.weights = self.optimizers.learning_rates(), logged_values(self.problem)
        record.seconds = time.perf_counter() - start
        if self.reduce is not None:
            agree_on_step(self.reduce, self.signals, record)
        self.phase_step, self.global_step = self.phase_step + 1, self.global_step + 1
        record.step, record.phase_step = self.global_step, self.phase_step
        record.converged = phase.until is not None and phase.until.update(
            flatten([t.detach().reshape(-1) for t in self.problem[phase.until.level].named_parameters().values()]))
        self._call("on_step_end", record)
        if record.converged or self.phase_step >= phase.max_steps:
            self._call("on_phase_end", phase)
            remember_final_phase(self, phase, record.converged)
            self.phase_index, self.phase_step = self.phase_index + 1, 0
            self.optimizers.clear()
        if self.checkpoints.due(self.global_step):
            self.save_checkpoint()

    def _start_phase(self, phase: Phase) -> None:
        self.optimizers.start(self.problem, phase, part_way=self.phase_step > 0)
        self._kind = for_phase(phase)
        if self.phase_step == 0:
            if phase.until is not None:
                phase.until.reset()
            if phase.method is not None:
                phase.method.initialized = False  # auxiliary variables start from this phase's first point
            self._call("on_phase_start", phase)

    def _call(self, hook: str, *args: Any) -> None:
        if self.is_main_process:
            for cb in self.callbacks:
                getattr(cb, hook)(self, *args)


__all__ = ["CHECKPOINT_FORMAT", "DATA_PARALLEL_NESTED", "Callback", "Engine", "HyperlevelError", "RunSummary",
           "StepRecord"]
