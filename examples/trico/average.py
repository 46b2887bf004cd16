"""``python -m examples.trico average --run DIR [--from-step A] [--to-step B]``: average a run's late checkpoints.

The weights of every numbered checkpoint ``DIR/checkpoints/step_*.pt`` with ``A <= step <= B`` are averaged
(:mod:`examples.restoration.weight_average`, stochastic weight averaging after training) and written as one model
checkpoint, ``DIR/checkpoints/swa.pt`` by default, which ``evaluate``, ``enhance`` and ``export`` take like any
other; it carries the run's training config and loss weights (from the last averaged checkpoint) and the averaged
steps. When the run holds photos out of training (``data.holdout``) the averaged model is also measured on them,
as ``select`` measures each checkpoint; ``swa.json`` (beside the output) records steps and scores.

Why: with a 2-core budget's large learning rates, neighbouring checkpoints of one run differ by 1-3 dB on
held-out photos, and ``select`` picks the one the small validation set happens to favour; the average of the
second half of the run does not depend on that draw (docs/trico.md, "Weight averaging").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "checkpoints_between", "average_run"]

#: the default first step: the second half of the shipped schedule (S1 300 + S2 1,100 steps)
DEFAULT_FROM_STEP = 700


def checkpoints_between(run_dir: Path, first: int, last: int | None = None) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of the run's numbered checkpoints with ``first <= step <= last`` (``None``: no end)."""
    from hyperlevel.checkpoint import numbered_checkpoints

    from .cli_errors import UsageError

    found = numbered_checkpoints(run_dir / "checkpoints")
    if not found:
        raise UsageError(f"{run_dir / 'checkpoints'} holds no step_*.pt checkpoint (train with "
                         "log.keep_checkpoints: 0 to keep them all)")
    chosen = [(s, p) for s, p in found if s >= first and (last is None or s <= last)]
    if not chosen:
        steps = [s for s, _ in found]
        raise UsageError(f"no checkpoint of {run_dir} between steps {first} and {last if last is not None else 'the end'} "
                         f"(it holds steps {steps[0]}..{steps[-1]}): change --from-step / --to-step")
    return chosen


def average_run(run_dir: Path, first: int = DEFAULT_FROM_STEP, last: int | None = None,
                out: Path | None = None) -> tuple[Path, list[int]]:
    """Average the run's checkpoints between ``first`` and ``last`` into ``out``; return ``(out, steps)``."""
    from examples.restoration.weight_average import average_checkpoints

    from .checkpoint import TRICO_BUILDER, save_model, training_record

    chosen = checkpoints_between(run_dir, first, last)
    steps = [s for s, _ in chosen]
    model, _ = average_checkpoints([p for _, p in chosen], TRICO_BUILDER)
    out = out or run_dir / "checkpoints" / "swa.pt"
    record = {k: v for k, v in training_record(chosen[-1][1]).items() if k not in ("global_step", "phase_name")}
    record["weight_average"] = {"steps": steps, "run": str(run_dir)}
    save_model(out, model, record)
    return out, steps


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--run", required=True, help="training run folder (holds config.yaml and checkpoints/)")
    parser.add_argument("--from-step", type=int, default=DEFAULT_FROM_STEP,
                        help=f"first step averaged (default {DEFAULT_FROM_STEP}: the second half of the shipped "
                             "schedule)")
    parser.add_argument("--to-step", type=int, default=None, help="last step averaged (default: the last one)")
    parser.add_argument("--out", default=None, help="output checkpoint (default RUN/checkpoints/swa.pt)")
    parser.add_argument("--no-validate", action="store_true",
                        help="do not measure the averaged model on the run's held-out photos")
    return parser


def run(args: argparse.Namespace) -> int:
    import yaml

    from .checkpoint import load_model
    from .cli_errors import UsageError
    from .evaluate import evaluate_model
    from .select import validation_dataset

    run_dir = Path(args.run)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UsageError(f"{run_dir} is not a training run (no config.yaml)")
    if args.to_step is not None and args.to_step < args.from_step:
        raise UsageError(f"--to-step {args.to_step} is before --from-step {args.from_step}")
    config = yaml.safe_load(config_path.read_text())
    out, steps = average_run(run_dir, args.from_step, args.to_step, Path(args.out) if args.out else None)
    print(f"averaged {len(steps)} checkpoints (steps {steps[0]}..{steps[-1]}) -> {out}")
    record: dict[str, Any] = {"checkpoint": str(out), "steps": steps}
    if not args.no_validate and (config.get("data") or {}).get("holdout"):
        model, _ = load_model(out)
        report = evaluate_model(model, validation_dataset(config, int(config["model"]["scale"])),
                                metric_names=["psnr", "ssim"], progress=False)
        record["validation"] = {m: float(report["metrics"][m]["mean"]) for m in ("psnr", "ssim")}
        print(f"validation (held-out photos, seen degradation): PSNR {record['validation']['psnr']:.2f}  "
              f"SSIM {record['validation']['ssim']:.4f}")
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return 0
