"""``python -m examples.trico select --run DIR``: pick a run's checkpoint on its validation photos.

A run whose config holds embedded training photos out of training (``data.holdout``) can be judged without the
test split: every checkpoint in ``DIR/checkpoints`` is evaluated on the held-out photos (the ``"val"`` split of
:func:`examples.trico.data.embedded_dataset`: full images at the test exposures under the training ("seen")
degradation, with seeds of their own), and the best one by ``--metric`` is copied to ``DIR/checkpoints/best.pt``.

Writes ``DIR/selection.json`` (every checkpoint's step and metrics, the chosen one) and ``DIR/selection.png``
(validation metric against the step). Why: intermediate checkpoints of one run differ by several dB on held-out
images (large learning rates on a 2-core budget); choosing on the test split would report a tuned number.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "validation_dataset", "score_checkpoints", "select_checkpoint"]


def validation_dataset(config: dict[str, Any], scale: int):
    """The held-out photos of a run's config (plain dict as stored in ``config.yaml``)."""
    from .cli_errors import UsageError
    from .data import embedded_dataset

    data = config.get("data") or {}
    holdout = list(data.get("holdout") or [])
    if not holdout:
        raise UsageError("the run holds no photo out of training (data.holdout is empty): there is no "
                         "validation split to select on; train with e.g. `data: {holdout: [motorcycle_right]}`")
    return embedded_dataset("val", scale=scale, seed=int(data.get("seed", 0)), degradation="seen",
                            holdout=tuple(holdout), more=tuple(data.get("more_photos") or []))


def score_checkpoints(run_dir: Path, metrics: tuple[str, ...] = ("psnr", "ssim"), progress: bool = True
                      ) -> list[dict[str, Any]]:
    """``[{"step", "path", metric: value, ...}]`` for every numbered checkpoint of the run, in step order."""
    import yaml
    from tqdm import tqdm

    from hyperlevel.checkpoint import numbered_checkpoints

    from .checkpoint import load_model
    from .cli_errors import UsageError
    from .evaluate import evaluate_model

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UsageError(f"{run_dir} is not a training run (no config.yaml)")
    config = yaml.safe_load(config_path.read_text())
    found = numbered_checkpoints(run_dir / "checkpoints")
    if not found:
        raise UsageError(f"{run_dir / 'checkpoints'} holds no step_*.pt checkpoint (train with "
                         "log.keep_checkpoints: 0 to keep them all)")
    dataset = validation_dataset(config, int(config["model"]["scale"]))
    rows = []
    for step, path in tqdm(found, desc="validation", disable=not progress):
        model, _ = load_model(path)
        report = evaluate_model(model, dataset, metric_names=list(metrics), progress=False)
        rows.append({"step": step, "path": str(path), **{m: float(report["metrics"][m]["mean"]) for m in metrics}})
    return rows


def select_checkpoint(rows: list[dict[str, Any]], metric: str = "psnr") -> dict[str, Any]:
    """The best row by ``metric`` (higher is better for PSNR and SSIM); the later step wins a tie."""
    if not rows:
        raise ValueError("no checkpoint to select from")
    return max(rows, key=lambda r: (r[metric], r["step"]))


def _plot(rows: list[dict[str, Any]], chosen: dict[str, Any], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="o", ms=3)
    ax.scatter([chosen["step"]], [chosen[metric]], color="C3", zorder=3, label=f"chosen: step {chosen['step']}")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric.upper()}")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--run", required=True, help="training run folder (holds config.yaml and checkpoints/)")
    parser.add_argument("--metric", choices=("psnr", "ssim"), default="psnr", help="selection metric")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    rows = score_checkpoints(run_dir, progress=not args.no_progress)
    chosen = select_checkpoint(rows, args.metric)
    best = run_dir / "checkpoints" / "best.pt"
    shutil.copyfile(chosen["path"], best)
    record = {"metric": args.metric, "chosen": chosen, "best": str(best), "checkpoints": rows}
    (run_dir / "selection.json").write_text(json.dumps(record, indent=2))
    _plot(rows, chosen, args.metric, run_dir / "selection.png")
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        print(f"step {r['step']:>6}  PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.4f}{mark}")
    print(f"best by validation {args.metric}: step {chosen['step']} -> {best}")
    return 0
