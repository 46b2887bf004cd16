"""The engine: runs a schedule of phases over a nested problem, with callbacks and exact resumption."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from . import checkpoint as ckpt
from ._flat import flatten, unflatten
from .errors import (
    HyperlevelError,
    InvalidProblemError,
    NonFiniteError,
    SkippedStepsWarning,
    SolverDivergedError,
)
from .hypergradient import _hypergradient
from .level import Level, adam
from .problem import Problem
from .runfolder import RunFolderInUseError, RunLock
from .schedule import Phase, Schedule
from .signals import StopSignals, exit_status
from .solvers import SolverInfo
from .solvers.base import Reduce, reduce_list
from .validation import check_loss
from .weighting import LossWeights

#: nested paths (``Declaration.nested``) that take the data-parallel reduce: the joint method and first order
DATA_PARALLEL_NESTED = ("joint", "partial")

CHECKPOINT_FORMAT = "hyperlevel-engine-v1"


@dataclass
class StepRecord:
    """What one engine step did; callbacks receive it and :meth:`scalars` flattens it for loggers."""

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


class Engine:
    """Runs a :class:`~hyperlevel.Schedule` over a :class:`~hyperlevel.Problem`.

    Each step of a bilevel phase (TriCo's Alg. 1): draw a batch for the outer and the inner objective, compute
    the outer levels' hypergradient with the phase's solver and step their optimizers, then take
    ``inner_steps`` plain gradient steps on the inner levels (the first on the same inner batch).

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
        overwrite: start a new run into a folder holding an earlier run's checkpoints (they are deleted).
        lock: lock ``checkpoint_dir`` while running (on by default; off only for folders that another
            mechanism already protects).
    """

    def __init__(
        self,
        problem: Problem,
        schedule: Schedule | Sequence[Phase],
        *,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        keep_checkpoints: int = 2,
        on_nonfinite: Literal["raise", "skip"] = "raise",
        reduce: Reduce | None = None,
        is_main_process: bool = True,
        checkpoint_extra: Callable[[], Mapping[str, Any]] | None = None,
        check_objectives: bool = True,
        overwrite: bool = False,
        lock: bool = True,
    ):
        if not isinstance(schedule, Schedule):
            schedule = Schedule(list(schedule))
        schedule.validate(problem.names)
        if on_nonfinite not in ("raise", "skip"):
            raise InvalidProblemError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
        if reduce is not None:
            for p in schedule.phases:
                if p.nested and p.solver.declaration.nested not in DATA_PARALLEL_NESTED:
                    raise InvalidProblemError(
                        f"phase {p.name!r}: nested phases take a data-parallel reduce with the joint method only "
                        f"(solvers.MinimalResidual or solvers.Dense), got {type(p.solver).__name__}; run it in "
                        "one process or switch its solver"
                    )
        if checkpoint_every and checkpoint_dir is None:
            raise InvalidProblemError("checkpoint_every needs a checkpoint_dir")
        for what, value in (("checkpoint_every", checkpoint_every), ("keep_checkpoints", keep_checkpoints)):
            if not isinstance(value, int) or value < 0:
                raise InvalidProblemError(f"{what} must be an integer >= 0, got {value!r}")
        self.problem = problem
        self.schedule = schedule
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = int(checkpoint_every)
        self.keep_checkpoints = int(keep_checkpoints)
        self.on_nonfinite = on_nonfinite
        self.reduce = reduce
        self.is_main_process = is_main_process
        self.checkpoint_extra = checkpoint_extra
        self.check_objectives_first = check_objectives
        self.overwrite = overwrite
        self.lock = lock
        self.global_step = 0
        self.phase_index = 0
        self.phase_step = 0
        self.skipped_steps = 0
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._schedulers: dict[str, Any] = {}
        self._pending_optimizer_state: dict[str, Any] | None = None
        self._signals = StopSignals()
        self._saved_step: int | None = None
        self.resumed_from: Path | None = None
        #: the last phase's state when it ended by its step budget, so that a finished run resumed with a larger
        #: ``max_steps`` continues exactly (as if the budget had been larger from the start)
        self._final_phase: dict[str, Any] | None = None
        self._first_skip: str | None = None

    @property
    def _stop_requested(self) -> bool:
        return self._signals.requested

    @_stop_requested.setter
    def _stop_requested(self, value: bool) -> None:
        if value:
            self._signals.request()
        else:
            self._signals.requested, self._signals.signum = False, None

    # ------------------------------------------------------------------ state
    @property
    def phase(self) -> Phase | None:
        return self.schedule[self.phase_index] if self.phase_index < len(self.schedule) else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "global_step": self.global_step,
            "phase_index": self.phase_index,
            "phase_step": self.phase_step,
            "phase_name": self.phase.name if self.phase else None,
            "skipped_steps": self.skipped_steps,
            "levels": self.problem.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self._optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self._schedulers.items()},
            "trackers": {
                p.name: p.until.state_dict() for p in self.schedule.phases if p.until is not None
            },
            "data": {lv.name: lv.data_state() for lv in self.problem.levels},
            "solvers": {p.name: p.solver.state_dict() for p in self.schedule.phases},
            "methods": {p.name: p.method.state_dict() for p in self.schedule.phases if p.method is not None},
            "rng": ckpt.rng_state(),
            "final_phase": self._final_phase,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InvalidProblemError(
                f"not a hyperlevel engine checkpoint (format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
            )
        names = [p.name for p in self.schedule.phases]
        if state["phase_name"] is not None and (
            state["phase_index"] >= len(names) or names[state["phase_index"]] != state["phase_name"]
        ):
            raise InvalidProblemError(
                f"the checkpoint is in phase {state['phase_name']!r} (#{state['phase_index']}), which this "
                f"schedule ({names}) does not have at that position"
            )
        try:
            self.problem.load_state_dict(state["levels"])
        except (RuntimeError, KeyError, InvalidProblemError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ckpt.CheckpointError(f"the checkpoint does not fit this problem (another model or levels): "
                                       f"{first.rstrip(':.')}") from None
        self.global_step = int(state["global_step"])
        self.phase_index = int(state["phase_index"])
        self.phase_step = int(state["phase_step"])
        self.skipped_steps = int(state["skipped_steps"])
        for p in self.schedule.phases:
            if p.until is not None and p.name in state["trackers"]:
                p.until.load_state_dict(state["trackers"][p.name])
        for lv in self.problem.levels:
            lv.load_data_state(state["data"].get(lv.name))
        for p in self.schedule.phases:
            p.solver.load_state_dict(state.get("solvers", {}).get(p.name, {}))
            if p.method is not None:
                p.method.load_state_dict(state.get("methods", {}).get(p.name, {}))
        ckpt.set_rng_state(state["rng"])
        self._optimizers, self._schedulers = {}, {}
        self._pending_optimizer_state = {"optimizers": state["optimizers"], "schedulers": state["schedulers"]}
        self._final_phase = state.get("final_phase")
        self._continue_finished_run()

    def _continue_finished_run(self) -> None:
        """A finished run whose last phase ended at its step budget continues when that budget grew."""
        final = self._final_phase
        if self.phase is not None or final is None:
            return
        last = self.schedule.phases[-1]
        if final["phase_name"] != last.name or final["phase_step"] >= last.max_steps:
            return
        self.phase_index, self.phase_step = len(self.schedule) - 1, int(final["phase_step"])
        self._pending_optimizer_state = {"optimizers": final["optimizers"], "schedulers": final["schedulers"]}
        self._final_phase = None

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        if not self.is_main_process:
            return None
        if path is None:
            if self.checkpoint_dir is None:
                return None
            path = self.checkpoint_dir / "last.pt"
        state = self.state_dict()
        if self.checkpoint_extra is not None:
            state["extra"] = dict(self.checkpoint_extra())
        if self.keep_checkpoints and self.checkpoint_dir is not None and Path(path) == self.checkpoint_dir / "last.pt":
            numbered = ckpt.save_atomic(state, self.checkpoint_dir / f"step_{self.global_step:08d}.pt")
            path = ckpt.link_or_copy(numbered, path)
            ckpt.prune_numbered(self.checkpoint_dir, self.keep_checkpoints, self.global_step)
        else:
            path = ckpt.save_atomic(state, path)
        self._saved_step = self.global_step
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)
        return path

    # ------------------------------------------------------------------ run
    def run(self, resume: str | Path | None = None, *, stop_after: int | None = None) -> RunSummary:
        """Run (or resume) the schedule to its end.

        Args:
            resume: a checkpoint written by this engine; training continues exactly where it stopped. An
                unreadable ``last.pt`` falls back on the newest loadable numbered checkpoint (with a warning).
            stop_after: stop (and checkpoint) once this many global steps are done, as an interruption would.

        SIGINT and SIGTERM finish the current step, write the checkpoint and return a summary with status
        ``"interrupted"`` (see :attr:`RunSummary.exit_status`).
        """
        folder_lock = self._claim_folder(resume)
        try:
            return self._run(resume, stop_after)
        finally:
            if folder_lock is not None:
                folder_lock.release()

    def _claim_folder(self, resume: str | Path | None) -> RunLock | None:
        """Lock the run folder, apply the new-run rule, remove temporary files a killed writer left."""
        if not (self.is_main_process and self.checkpoint_dir is not None and self.lock):
            return None
        lock = RunLock(self.checkpoint_dir).acquire()
        try:
            if resume is None and self.global_step == 0 and ckpt.holds_checkpoints(self.checkpoint_dir):
                if not self.overwrite:
                    raise RunFolderInUseError(
                        f"{self.checkpoint_dir} holds the checkpoints of an earlier run; resume it "
                        f"(resume={str(self.checkpoint_dir / 'last.pt')!r}) or start over with overwrite=True")
                ckpt.remove_checkpoints(self.checkpoint_dir)
            ckpt.clean_temporary_files(self.checkpoint_dir)
        except BaseException:
            lock.release()
            raise
        return lock

    def _run(self, resume: str | Path | None, stop_after: int | None) -> RunSummary:
        self._signals = StopSignals()
        if resume is not None:
            state, used = ckpt.load_with_fallback(resume)
            try:
                self.load_state_dict(state)
            except ckpt.CheckpointError as err:
                raise ckpt.CheckpointError(f"cannot resume from {used}: {err}") from None
            self.resumed_from = used
        elif self.check_objectives_first:
            # Check on the first batches, then rewind resumable loaders so that step 1 trains on them too.
            positions = {lv.name: lv.data_state() for lv in self.problem.levels}
            self.problem.check_objectives({lv.name: lv.next_batch() for lv in self.problem.levels})
            for lv in self.problem.levels:
                if positions[lv.name] is not None:
                    lv.load_data_state(positions[lv.name])
        self._call("on_run_start")
        status: Literal["finished", "interrupted", "stopped"] = "finished"
        with self._signals:  # also during the final checkpoint: a signal there must not kill the write
            while self.phase is not None:
                phase = self.phase
                if not self._optimizers:
                    self._start_phase(phase)
                record = self._step(phase)
                if self.reduce is not None:
                    self._agree(record)
                self.phase_step += 1
                self.global_step += 1
                record.step, record.phase_step = self.global_step, self.phase_step
                done = self.phase_step >= phase.max_steps
                if phase.until is not None:
                    watched = flatten([t.detach().reshape(-1) for t in self.problem[phase.until.level]
                                       .named_parameters().values()])
                    if phase.until.update(watched):
                        done = record.converged = True
                self._call("on_step_end", record)
                if done:
                    self._call("on_phase_end", phase)
                    if self.phase_index == len(self.schedule) - 1 and not record.converged:
                        self._final_phase = {
                            "phase_name": phase.name, "phase_step": self.phase_step,
                            "optimizers": {k: o.state_dict() for k, o in self._optimizers.items()},
                            "schedulers": {k: sc.state_dict() for k, sc in self._schedulers.items()},
                        }
                    self.phase_index += 1
                    self.phase_step = 0
                    self._optimizers, self._schedulers = {}, {}
                if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
                    self.save_checkpoint()
                if self._stop_requested:
                    status = "interrupted"
                    break
                if stop_after is not None and self.global_step >= stop_after and self.phase is not None:
                    status = "stopped"
                    break
            path = self.save_checkpoint() if self._saved_step != self.global_step else self._last_path()
        summary = RunSummary(status, self.global_step, self.phase.name if self.phase else None,
                             self.skipped_steps, path, self._signals.signum if status == "interrupted" else None)
        if self.skipped_steps:
            warnings.warn(
                f"{self.skipped_steps} of {self.global_step} steps were skipped because of non-finite values "
                f"(on_nonfinite='skip'); the first: {self._first_skip or 'before this resume'}. A run that skips "
                "many steps trains on few: lower the learning rates or the solver's step (inner_lr, alpha)",
                SkippedStepsWarning, stacklevel=2,
            )
        self._call("on_run_end", summary)
        return summary

    def _agree(self, record: StepRecord) -> None:
        """Data-parallel runs: one small collective per step, so every rank stops at the same step when any was
        interrupted (a rank leaving alone would leave the others waiting in a collective), and the logged losses
        are the means over all ranks' data rather than rank 0's shard."""
        mean = self.reduce(torch.tensor([float(self._stop_requested), record.outer_loss, record.inner_loss],
                                        dtype=torch.float64))
        self._stop_requested = bool(mean[0] > 0)
        record.outer_loss, record.inner_loss = float(mean[1]), float(mean[2])

    def _call(self, hook: str, *args: Any) -> None:
        if self.is_main_process:
            for cb in self.callbacks:
                getattr(cb, hook)(self, *args)

    def _last_path(self) -> Path | None:
        if not self.is_main_process or self.checkpoint_dir is None:
            return None
        return self.checkpoint_dir / "last.pt"

    # ------------------------------------------------------------------ phases
    def _start_phase(self, phase: Phase) -> None:
        for name in phase.trained:
            level = self.problem[name]
            factory = phase.optimizers.get(name) or level.optimizer or adam(1e-3)
            opt = factory(list(level.named_parameters().values()))
            self._optimizers[name] = opt
            if name in phase.lr_schedulers:
                self._schedulers[name] = phase.lr_schedulers[name](opt)
        pending = self._pending_optimizer_state
        if pending is not None and self.phase_step > 0:
            for name, opt in self._optimizers.items():
                if name in pending["optimizers"]:
                    opt.load_state_dict(pending["optimizers"][name])
            for name, sched in self._schedulers.items():
                if name in pending["schedulers"]:
                    sched.load_state_dict(pending["schedulers"][name])
        self._pending_optimizer_state = None
        if self.phase_step == 0:
            if phase.until is not None:
                phase.until.reset()
            if phase.method is not None:
                phase.method.initialized = False  # auxiliary variables start from this phase's first point
            self._call("on_phase_start", phase)

    def _step(self, phase: Phase) -> StepRecord:
        start = time.perf_counter()
        record = StepRecord(step=self.global_step, phase=phase.name, phase_step=self.phase_step)
        try:
            if phase.method is not None:
                self._method_update(phase, record)
            elif phase.nested:
                self._nested_update(phase, record)
            elif phase.outer:
                self._bilevel_update(phase, record)
            else:
                self._inner_updates(phase, record, first_batch=None)
        except (NonFiniteError, SolverDivergedError) as err:
            if self.on_nonfinite == "raise":
                raise type(err)(f"step {self.global_step + 1} (phase {phase.name!r}): {err}") from err
            self.skipped_steps += 1
            record.skipped = True
            if self._first_skip is None:
                self._first_skip = f"step {self.global_step + 1} (phase {phase.name!r}): {err}"
        except Exception as err:
            note = getattr(err, "add_note", None)
            if note is not None:  # Python >= 3.11: keep the error's type, say where it happened
                note(f"(hyperlevel engine: step {self.global_step + 1}, phase {phase.name!r}, levels outer="
                     f"{list(phase.outer)} inner={list(phase.inner)})")
            raise
        for name, sched in self._schedulers.items():
            del name
            sched.step()
        record.lr = {name: float(opt.param_groups[0]["lr"]) for name, opt in self._optimizers.items()}
        for lv in self.problem.levels:
            if isinstance(lv.params, LossWeights):
                record.weights[lv.name] = lv.params.weights()
        record.seconds = time.perf_counter() - start
        return record

    def _loss_fn(self, level: Level, base: dict[str, dict[str, Tensor]], batch: Any, what: str):
        def loss(*flat_dicts: Mapping[str, Tensor]) -> Tensor:
            params = {k: dict(v) for k, v in base.items()}
            for flat in flat_dicts:
                for key, t in flat.items():
                    lv, name = key.split("/", 1)
                    params[lv][name] = t
            return check_loss(level.objective(params, batch), what, finite=False)

        loss.hyperlevel_name = what  # type: ignore[attr-defined]  # named in non-finite diagnoses
        return loss

    @staticmethod
    def _flat_params(base: Mapping[str, Mapping[str, Tensor]], levels: Sequence[str]) -> dict[str, Tensor]:
        return {f"{lv}/{n}": t for lv in levels for n, t in base[lv].items()}

    def _apply_gradients(self, levels: Sequence[str], grads: Mapping[str, Tensor], record: StepRecord,
                         what: str) -> None:
        for lv in levels:
            live = self.problem[lv].named_parameters()
            gs = [grads[f"{lv}/{n}"] for n in live]
            norm = float(torch.linalg.vector_norm(flatten([g.reshape(-1) for g in gs])))
            if not math.isfinite(norm):
                raise NonFiniteError(f"non-finite {what} for level {lv!r}")
            record.hypergradient_norm[lv] = norm
            for p, g in zip(live.values(), gs, strict=True):
                p.grad = g.to(p.dtype).reshape(p.shape)
        for lv in levels:
            self._optimizers[lv].step()
            self._optimizers[lv].zero_grad(set_to_none=True)

    def _bilevel_update(self, phase: Phase, record: StepRecord) -> None:
        outer_level = self.problem[phase.outer_objective or phase.outer[0]]
        inner_level = self.problem[phase.inner_objective or phase.inner[-1]]
        outer_batch = outer_level.next_batch()
        inner_batch = inner_level.next_batch()
        base = self.problem.detached()
        outer_loss = self._loss_fn(outer_level, base, outer_batch, f"objective of level {outer_level.name!r}")
        inner_loss = self._loss_fn(inner_level, base, inner_batch, f"objective of level {inner_level.name!r}")
        grads, info = _hypergradient(
            outer_loss, inner_loss,
            self._flat_params(base, phase.outer), self._flat_params(base, phase.inner),
            phase.solver, return_info=True, reduce=self.reduce,
            outer_precision=outer_level.precision, inner_precision=inner_level.precision,
        )
        record.solver_info = info
        record.outer_loss = info.outer_loss
        self._apply_gradients(phase.outer, grads, record, "hypergradient")
        reused = info.inner_gradient if phase.reuse_inner_gradient else None
        self._inner_updates(phase, record, first_batch=inner_batch, first_gradient=reused)

    def _inner_updates(self, phase: Phase, record: StepRecord, first_batch: Any,
                       first_gradient: tuple[float, Tensor] | None = None) -> None:
        inner_level = self.problem[phase.inner_objective or phase.inner[-1]]
        steps = max(phase.inner_steps, 1 if not phase.outer else 0)
        for k in range(steps):
            if k == 0 and first_gradient is not None:
                value, flat = first_gradient
                live = [t for lv in phase.inner for t in self.problem[lv].named_parameters().values()]
                keys = [f"{lv}/{n}" for lv in phase.inner for n in self.problem[lv].named_parameters()]
                self._apply_gradients(phase.inner, dict(zip(keys, unflatten(flat, live), strict=True)), record,
                                      "gradient")
                record.inner_loss = value
                continue
            batch = first_batch if (k == 0 and first_batch is not None) else inner_level.next_batch()
            params = self.problem.detached()
            for lv in phase.inner:
                params[lv] = self.problem[lv].named_parameters()
            objective, scale = inner_level.objective, 1.0
            if inner_level.precision is not None:  # autocast forward, scaled loss (float16), float32 gradient
                scale = inner_level.precision.scale
                objective = inner_level.precision.wrap(objective, scale)
            with torch.enable_grad():
                value = check_loss(objective(params, batch), f"objective of level {inner_level.name!r}")
                live = [t for lv in phase.inner for t in params[lv].values()]
                gs = torch.autograd.grad(value, live, allow_unused=True)
            gs = [torch.zeros_like(t) if g is None else g / scale if scale != 1.0 else g
                  for g, t in zip(gs, live, strict=True)]
            value = value / scale if scale != 1.0 else value
            gs = reduce_list(self.reduce, gs)
            keys = [f"{lv}/{n}" for lv in phase.inner for n in params[lv]]
            self._apply_gradients(phase.inner, dict(zip(keys, gs, strict=True)), record, "gradient")
            record.inner_loss = float(value.detach())

    def _method_update(self, phase: Phase, record: StepRecord) -> None:
        """One iteration of the phase's bilevel algorithm, which moves outer and inner levels itself."""
        from .algorithms import Oracle

        outer_level = self.problem[phase.outer_objective or phase.outer[0]]
        inner_level = self.problem[phase.inner_objective or phase.inner[-1]]
        base = self.problem.detached()
        oracle = Oracle(
            self._loss_fn(outer_level, base, outer_level.next_batch(), f"objective of level {outer_level.name!r}"),
            self._loss_fn(inner_level, base, inner_level.next_batch(), f"objective of level {inner_level.name!r}"),
        )
        x, y = self._flat_params(base, phase.outer), self._flat_params(base, phase.inner)
        record.outer_loss = oracle.value("outer", x, y)
        new_x, new_y = phase.method.step(oracle, x, y)
        for key, t in {**new_x, **new_y}.items():
            if not bool(torch.isfinite(t).all()):
                raise NonFiniteError(f"{phase.method.name}: non-finite update of {key!r}")
        with torch.no_grad():
            for key, t in {**new_x, **new_y}.items():
                lv, name = key.split("/", 1)
                self.problem[lv].named_parameters()[name].copy_(t)

    def _nested_update(self, phase: Phase, record: StepRecord) -> None:
        from .nested import _nested_hypergradient

        chain = phase.outer + phase.inner
        levels = [self.problem[n] for n in chain]
        batches = {lv.name: lv.next_batch() for lv in levels}
        base = self.problem.detached()
        grads: dict[str, Tensor] = {}
        for k in range(len(chain) - 1):
            sub = chain[k:]
            losses = [self._loss_fn(self.problem[n], base, batches[n], f"objective of level {n!r}") for n in sub]
            # nested solves: autocast only (no loss scaling: the nested products are not rescaled)
            losses = [lv.precision.wrap(fn, 1.0) if lv.precision is not None else fn
                      for lv, fn in zip((self.problem[n] for n in sub), losses, strict=True)]
            params = [self._flat_params(base, [n]) for n in sub]
            g = _nested_hypergradient(losses, params, solver=phase.solver, reduce=self.reduce)
            grads.update(g)
        with torch.no_grad():
            record.outer_loss = float(levels[0].objective(base, batches[chain[0]]))
        self._apply_gradients(chain[:-1], grads, record, "nested hypergradient")
        inner_only = Phase(name=phase.name, outer=[], inner=[chain[-1]], inner_steps=max(phase.inner_steps, 1))
        self._inner_updates(inner_only, record, first_batch=batches[chain[-1]])


__all__ = ["Callback", "Engine", "RunSummary", "StepRecord", "HyperlevelError"]
