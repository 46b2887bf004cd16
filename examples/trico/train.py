"""Training TriCo with hyperlevel's engine: ``python -m examples.trico train --config FILE``.

``train(config, out_dir)`` builds the tri-level problem (``problem.py``), runs its schedule with
:class:`hyperlevel.Engine` and writes into ``out_dir``:

- ``config.yaml``: the validated configuration (of the latest start or resume),
- ``config_history.yaml``: the settings a ``--resume`` changed, with the step they took effect at,
- ``checkpoints/last.pt``: the engine checkpoint (every ``log.checkpoint_every`` steps, at the end and on
  SIGINT/SIGTERM), the newest of the last ``log.keep_checkpoints`` numbered ones (``step_00001000.pt``); its
  ``extra`` entry holds ``model_config`` and ``model`` (trainable state dict without the frozen semantic
  encoder), so ``enhance --checkpoint .../last.pt`` and ``evaluate`` load it as is,
- ``logs/train.csv`` (long form: step, phase, name, value) and ``logs/tb/`` (TensorBoard).

The folder belongs to one run (``docs/trico.md``, "Run folders"): it is locked while training
(:class:`hyperlevel.runfolder.RunLock`), a new run into a folder that holds one needs ``overwrite=True``, and a
resume with another model is refused before any work.

Data parallelism: a launcher passes ``reduce`` (averages a tensor over processes), ``rank``/``world_size`` (shard
the loaders) and ``is_main_process`` (only it logs and writes checkpoints) straight into the engine.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

import hyperlevel
from hyperlevel import Callback, CSVLogger, Engine, ProgressBar, RunSummary, TensorBoardLogger
from hyperlevel import checkpoint as ckpt
from hyperlevel.runfolder import RunFolderInUseError, RunLock

from .config import TrainConfig, config_to_dict
from .problem import TriCoSetup, build_schedule, build_setup

__all__ = ["train", "TrainResult", "PhaseSteps", "checkpoint_extra", "config_changes", "resolve_resume"]

log = logging.getLogger(__name__)


class PhaseSteps(Callback):
    """Counts the steps done in each phase (the demo gives the naive baseline the same budget)."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def on_step_end(self, engine: Engine, record: hyperlevel.StepRecord) -> None:
        self.steps[record.phase] = record.phase_step


@dataclass
class TrainResult:
    summary: RunSummary
    setup: TriCoSetup
    out_dir: Path
    checkpoint: Path | None
    phase_steps: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    vgg_source: str = ""


def checkpoint_extra(setup: TriCoSetup, config: TrainConfig) -> Callable[[], dict[str, Any]]:
    """What every engine checkpoint carries besides the engine state: the model in ``load_model``'s format."""

    def extra() -> dict[str, Any]:
        model = setup.model
        return {
            "model_builder": "trico",  # the restoration toolkit's loader finds TriCo's builder by this name
            "model_config": dict(model.config),
            "model": {k: v.detach().cpu().clone() for k, v in model.trainable_state_dict().items()},
            "loss_weights": setup.loss_weights.weights(),
            "train_config": config_to_dict(config),
        }

    return extra


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two plain config dicts: ``{key: (before, after)}``."""
    a, b = _flat(before), _flat(after)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _holds_run(out: Path) -> bool:
    return ((out / "config.yaml").exists() or (out / "logs" / "train.csv").exists()
            or ckpt.holds_checkpoints(out / "checkpoints"))


def _claim_run_folder(out: Path, resume: Path | None, overwrite: bool) -> None:
    """A new run into a folder holding one needs ``overwrite`` (which deletes that run's files)."""
    if resume is not None or not _holds_run(out):
        return
    if not overwrite:
        steps = [s for s, _ in ckpt.numbered_checkpoints(out / "checkpoints")]
        what = f"checkpoints up to step {steps[-1]}" if steps else "an earlier run's files"
        raise RunFolderInUseError(f"{out} holds a run ({what}); pass --resume to continue it or --overwrite to "
                                  "start over (deletes its checkpoints, logs and config.yaml)")
    ckpt.remove_checkpoints(out / "checkpoints")
    shutil.rmtree(out / "logs", ignore_errors=True)
    for name in ("config.yaml", "config_history.yaml"):
        (out / name).unlink(missing_ok=True)


def _check_resume(out: Path, resume: Path, config: TrainConfig) -> Path:
    """Load the checkpoint to resume (falling back on an earlier one if ``last.pt`` is unreadable), refuse
    another model in one line, and record changed settings in ``config_history.yaml``. Returns the file to
    resume from."""
    state, used = ckpt.load_with_fallback(resume)
    extra = state.get("extra") if isinstance(state, dict) else None
    saved = extra.get("train_config") if isinstance(extra, dict) else None
    if not isinstance(saved, dict):
        return used  # not written by this trainer: the engine checks that the parameters fit
    current = config_to_dict(config)
    changes = config_changes(saved, current)
    known = _flat(saved)  # keys added to the config since the checkpoint was written are recorded, not refused
    model = {k: v for k, v in changes.items() if k.startswith("model.") and k in known}
    if model:
        shown = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} now" for k, (a, b) in model.items())
        raise ckpt.CheckpointError(f"cannot resume from {used}: it was trained with another model ({shown}); "
                                   "resume with the run's config.yaml, or start a new run (--overwrite or "
                                   "another --out)")
    if changes:
        step = int(state.get("global_step", 0))
        entry = {"resumed_at_step": step, "from": str(used),
                 "changed": {k: {"before": a, "after": b} for k, (a, b) in changes.items()}}
        history = out / "config_history.yaml"
        previous = yaml.safe_load(history.read_text()) if history.exists() else None
        entries = (previous if isinstance(previous, list) else []) + [entry]
        history.write_text(yaml.safe_dump(entries, sort_keys=False))
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
        warnings.warn(f"resuming at step {step} with changed settings: {shown} (recorded in {history})",
                      stacklevel=3)
    return used


def train(config: TrainConfig, out_dir: str | Path, resume: str | Path | None = None, *,
          reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, rank: int = 0, world_size: int = 1,
          is_main_process: bool | None = None, stop_after: int | None = None,
          callbacks: Sequence[Callback] = (), device: str | torch.device = "cpu",
          overwrite: bool = False) -> TrainResult:
    """Train (or resume, ``resume=PATH``) and return the run's summary and objects.

    ``stop_after``: stop (and checkpoint) after that many global steps, as Ctrl-C would (tests, chunked runs).
    ``overwrite``: start a new run into ``out_dir`` although it holds one (that run's files are deleted).
    Raises :class:`hyperlevel.runfolder.RunFolderError` when another process trains into ``out_dir`` or it
    holds a run (without ``resume``/``overwrite``), and :class:`hyperlevel.checkpoint.CheckpointError` when
    the checkpoint cannot be read or holds another model.
    """
    out = Path(out_dir)
    main = (rank == 0) if is_main_process is None else is_main_process
    lock = RunLock(out).acquire() if main else None
    try:
        return _train(config, out, Path(resume) if resume is not None else None, reduce=reduce, rank=rank,
                      world_size=world_size, main=main, stop_after=stop_after, callbacks=callbacks,
                      device=device, overwrite=overwrite)
    finally:
        if lock is not None:
            lock.release()


def _train(config: TrainConfig, out: Path, resume: Path | None, *, reduce, rank: int, world_size: int,
           main: bool, stop_after: int | None, callbacks: Sequence[Callback], device: str | torch.device,
           overwrite: bool) -> TrainResult:
    if main:
        _claim_run_folder(out, resume, overwrite)
    if resume is not None:
        resume = _check_resume(out, resume, config) if main else resume
    if config.threads:
        torch.set_num_threads(config.threads)
    setup = build_setup(config, rank=rank, world_size=world_size, device=device)
    if world_size > 1:  # data parallelism (docs/distributed.md): every replica starts from rank 0's weights
        from hyperlevel.distributed import broadcast_parameters

        broadcast_parameters(setup.problem, device=device)
    vgg_source = setup.losses.vgg_source  # a random VGG19 is warned about once, where it is built (losses.py)
    schedule = build_schedule(config)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    counter = PhaseSteps()
    cbs: list[Callback] = [counter]
    if main:
        if config.log.progress:
            cbs.append(ProgressBar())
        cbs.append(CSVLogger(out / "logs" / "train.csv", every=config.log.log_every))
        if config.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401

                cbs.append(TensorBoardLogger(out / "logs" / "tb", every=config.log.log_every))
            except ImportError:
                log.warning("tensorboard is not installed: no TensorBoard logs (the CSV log is written)")
    cbs.extend(callbacks)
    engine = Engine(setup.problem, schedule, callbacks=cbs, checkpoint_dir=out / "checkpoints",
                    checkpoint_every=config.log.checkpoint_every, keep_checkpoints=config.log.keep_checkpoints,
                    on_nonfinite=config.algorithm.on_nonfinite, reduce=reduce, is_main_process=main,
                    checkpoint_extra=checkpoint_extra(setup, config), overwrite=overwrite)
    setup.model.train()
    start = time.perf_counter()
    summary = engine.run(resume=resume, stop_after=stop_after)
    seconds = time.perf_counter() - start
    return TrainResult(summary, setup, out, summary.checkpoint, dict(counter.steps), seconds, vgg_source)


def resolve_resume(out_dir: str | Path, resume: str | bool | None) -> Path | None:
    """``--resume`` without a path means ``OUT/checkpoints/last.pt``."""
    if resume is None or resume is False:
        return None
    if resume is True or resume == "":
        return Path(out_dir) / "checkpoints" / "last.pt"
    return Path(resume)
