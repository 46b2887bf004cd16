"""Training TriCo with hyperlevel's engine: ``python -m examples.trico train --config FILE``.

``train(config, out_dir)`` builds the tri-level problem (``problem.py``), runs its schedule with
:class:`hyperlevel.Engine` and writes into ``out_dir``:

- ``config.yaml``: the validated configuration,
- ``checkpoints/last.pt``: the engine checkpoint (every ``log.checkpoint_every`` steps, at the end and on
  Ctrl-C); its ``extra`` entry holds ``model_config`` and ``model`` (trainable state dict without the frozen
  semantic encoder), so ``enhance --checkpoint .../last.pt`` and ``evaluate`` load it as is,
- ``logs/train.csv`` (long form: step, phase, name, value) and ``logs/tb/`` (TensorBoard).

Data parallelism: a launcher passes ``reduce`` (averages a tensor over processes), ``rank``/``world_size`` (shard
the loaders) and ``is_main_process`` (only it logs and writes checkpoints) straight into the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

import hyperlevel
from hyperlevel import Callback, CSVLogger, Engine, ProgressBar, RunSummary, TensorBoardLogger

from .config import TrainConfig, config_to_dict
from .problem import TriCoSetup, build_schedule, build_setup

__all__ = ["train", "TrainResult", "PhaseSteps", "checkpoint_extra"]

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
            "model_config": dict(model.config),
            "model": {k: v.detach().cpu().clone() for k, v in model.trainable_state_dict().items()},
            "loss_weights": setup.loss_weights.weights(),
            "train_config": config_to_dict(config),
        }

    return extra


def train(config: TrainConfig, out_dir: str | Path, resume: str | Path | None = None, *,
          reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, rank: int = 0, world_size: int = 1,
          is_main_process: bool | None = None, stop_after: int | None = None,
          callbacks: Sequence[Callback] = (), device: str | torch.device = "cpu") -> TrainResult:
    """Train (or resume, ``resume=PATH``) and return the run's summary and objects.

    ``stop_after``: stop (and checkpoint) after that many global steps, as Ctrl-C would (tests, chunked runs).
    """
    out = Path(out_dir)
    main = (rank == 0) if is_main_process is None else is_main_process
    if config.threads:
        torch.set_num_threads(config.threads)
    setup = build_setup(config, rank=rank, world_size=world_size, device=device)
    if world_size > 1:  # data parallelism (docs/distributed.md): every replica starts from rank 0's weights
        from hyperlevel.distributed import broadcast_parameters

        broadcast_parameters(setup.problem, device=device)
    vgg_source = setup.losses.vgg_source
    if vgg_source == "random-init":
        log.warning("the perceptual loss uses a RANDOMLY initialised VGG19 (losses.allow_random_init: true); "
                    "results are not comparable with the paper")
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
                    checkpoint_extra=checkpoint_extra(setup, config))
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
