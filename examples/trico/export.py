"""``python -m examples.trico export``: turn a training checkpoint into the shipped model and its measured card.

``export --checkpoint RUN/checkpoints/last.pt --out examples/trico/pretrained/trico_x2 [--compare naive=CKPT]
[--train-info INFO.json]`` writes

- ``OUT.safetensors``: the network (:func:`examples.trico.pretrained.save_safetensors`; at most 8 MB), and
- ``OUT.json``: the model card as data. ``training`` comes from the checkpoint itself (steps per phase, the
  training config: data, degradation, seed, schedule, learning rates; the learned loss weights) merged with
  ``--train-info`` (what a checkpoint cannot know: wall time, hardware, sessions). ``evaluation`` is measured
  here, never typed: the exported file is read back from disk and evaluated with ``evaluate``'s code on the
  embedded test split under the seen and the unseen degradation, next to every ``--compare`` checkpoint and
  every baseline. ``not_better_than`` lists, per degradation, each method the shipped model does not beat and on
  which metric. With the default (embedded) data the card holds a second measurement, ``evaluation_extra``, on
  the ``extra`` split (photos from other wheels), built the same way.

``tests/test_trico_pretrained.py`` re-measures the file and compares with ``OUT.json`` (0.05 dB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["add_arguments", "run", "export_model", "card_metrics", "training_info"]

CARD_METRICS = ("psnr", "ssim", "rmse")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (RUN/checkpoints/last.pt)")
    parser.add_argument("--out", required=True, help="output prefix, e.g. examples/trico/pretrained/trico_x2")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=CKPT",
                        help="another checkpoint measured in the same run, e.g. naive=runs/naive/checkpoints/last.pt")
    parser.add_argument("--train-info", help="JSON file with training details the checkpoint cannot know "
                                             "(wall_seconds, hardware, ...), merged into the card")
    parser.add_argument("--metrics", nargs="+", default=list(CARD_METRICS), help="metrics in the card")
    parser.add_argument("--data", default="embedded",
                        help="evaluation data spec (default embedded: the shipped card's; others for tests)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def training_info(checkpoint: str | Path) -> dict[str, Any]:
    """What a checkpoint records about its training (``{}`` entries for a plain model file), from
    :func:`examples.trico.checkpoint.training_record`."""
    from .checkpoint import training_record

    record = training_record(checkpoint)
    info: dict[str, Any] = {}
    if "global_step" in record:
        info["global_step"] = int(record["global_step"])
        info["last_phase"] = record.get("phase_name")
        info["finished"] = record.get("phase_name") is None
    cfg = record.get("train_config")
    if isinstance(cfg, dict):
        algo = cfg.get("algorithm", {})
        info["train_config"] = cfg
        info["seed"] = cfg.get("seed")
        info["data"] = cfg.get("data")
        info["schedule"] = {"variant": algo.get("variant"), "s1": algo.get("s1"), "s2": algo.get("s2"),
                            "lr": algo.get("lr")}
    if isinstance(record.get("loss_weights"), dict):
        info["loss_weights"] = {k: float(v) for k, v in record["loss_weights"].items()}
    return info


def card_metrics(results: Mapping[str, Mapping[str, dict]], labels: Mapping[str, str]) -> dict[str, Any]:
    """``{degradation: {method: {"label", "metrics": {m: mean}} | {"unavailable": why}}}``."""
    out: dict[str, Any] = {}
    for deg, reports in results.items():
        out[deg] = {}
        for name, rep in reports.items():
            if "metrics" not in rep:
                out[deg][name] = {"label": labels.get(name, name), "unavailable": rep["unavailable"]}
            else:
                out[deg][name] = {"label": labels.get(name, name), "num_images": rep["num_images"],
                                  "metrics": {m: s["mean"] for m, s in rep["metrics"].items()}}
    return out


def export_model(checkpoint: str | Path, out: str | Path, compare: Mapping[str, str | Path] | None = None,
                 train_info: Mapping[str, Any] | None = None, metrics: Sequence[str] = CARD_METRICS,
                 progress: bool = True, data: str = "embedded",
                 baselines: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``out.safetensors`` and ``out.json`` (see the module docstring); return the card. ``data`` (an
    ``evaluate`` data spec) and ``baselines`` (default: all) exist for tests; the shipped card uses the
    defaults."""
    from .baselines import BASELINE_LABELS, BASELINES
    from .checkpoint import load_model
    from .evaluate import (
        DEGRADATION_TITLES,
        build_eval_datasets,
        collect_methods,
        evaluate_methods,
        losses_against,
    )
    from .metrics import MetricConventions
    from .pretrained import MAX_SHIPPED_BYTES, save_safetensors

    out = Path(out)
    st_path = out.with_name(out.name + ".safetensors")
    json_path = out.with_name(out.name + ".json")
    model, config = load_model(checkpoint)
    scale = int(config["scale"])
    save_safetensors(st_path, model, {"card": json_path.name, "source": Path(checkpoint).name})
    size = st_path.stat().st_size
    if size > MAX_SHIPPED_BYTES:
        raise ValueError(f"{st_path} is {size / 2**20:.1f} MiB, over the 8 MiB limit for a shipped model")

    checkpoints = {"shipped": st_path, **dict(compare or {})}  # the file on disk, read back as users read it
    methods, info = collect_methods(checkpoints, list(BASELINES) if baselines is None else list(baselines), scale)
    labels = {**BASELINE_LABELS, "shipped": "TriCo (shipped)", **{n: n for n in (compare or {})}}
    conv = MetricConventions()

    def measured(split: str, description: str) -> dict[str, Any]:
        start = time.perf_counter()
        datasets = build_eval_datasets(data, scale=scale, split=split)
        results = evaluate_methods(methods, datasets, conv, list(metrics), progress=progress)
        not_better = {deg: {n: ms for n, ms in losses_against(reports, "shipped").items() if ms}
                      for deg, reports in results.items()}
        return {
            "data_spec": data, "split": split, "data": description,
            "scale": scale, "conventions": conv.to_dict(), "conventions_text": conv.describe(),
            "metrics": list(metrics), "titles": {d: DEGRADATION_TITLES[d] for d in results},
            "results": card_metrics(results, labels),
            "not_better_than": not_better,
            "seconds": round(time.perf_counter() - start, 1),
            "evaluated_on": {"platform": platform.platform(), "python": platform.python_version(),
                             "torch": torch.__version__, "threads": torch.get_num_threads()},
        }

    embedded = data == "embedded"
    evaluation = measured("test", "embedded test split (chelsea, rocket; 256 x 256 HR; -2.5, -3.5, -4.5 EV; "
                                  "fixed seeds)" if embedded else data)
    params = sum(v.numel() for v in model.trainable_state_dict().values() if v.is_floating_point())
    card = {
        "file": st_path.name,
        "bytes": size,
        "sha256": hashlib.sha256(st_path.read_bytes()).hexdigest(),
        "trainable_tensors_numel": params,
        "model_config": config,
        "training": {**training_info(checkpoint), "checkpoint": str(checkpoint), **dict(train_info or {})},
        "compared_checkpoints": {n: str(p) for n, p in (compare or {}).items()},
        "evaluation": evaluation,
        "methods": info,
    }
    if embedded:  # the second test set: photos from other wheels (examples.restoration.data.photos)
        card["evaluation_extra"] = measured("extra", "embedded extra split (china, flower from scikit-learn, "
                                                     "grace_hopper from matplotlib; 256 x 256 HR; -2.5, -3.5, "
                                                     "-4.5 EV; fixed seeds)")
    json_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    return card


def run(args: argparse.Namespace) -> int:
    from .evaluate import _parse_compare

    try:
        compare = _parse_compare(args.compare)
        extra = json.loads(Path(args.train_info).read_text()) if args.train_info else {}
        card = export_model(args.checkpoint, args.out, compare, extra, args.metrics, not args.no_progress,
                            data=args.data)
    except (OSError, ValueError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    for key in ("evaluation", "evaluation_extra"):
        if key in card:
            _print_evaluation(card[key])
    print(f"wrote {card['file']} ({card['bytes'] / 2**20:.2f} MiB) and its card")
    return 0


def _print_evaluation(evaluation: Mapping[str, Any]) -> None:
    print(f"{evaluation['data']}:")
    for deg, rows in evaluation["results"].items():
        print(f"{deg}:")
        for row in rows.values():
            vals = ", ".join(f"{m}={v:.4f}" for m, v in row.get("metrics", {}).items() if v is not None)
            print(f"  {row['label']:38s} {vals or row.get('unavailable', '')}")
        lost = evaluation["not_better_than"][deg]
        print("  shipped model NOT better than: " + ("; ".join(f"{n} on {', '.join(ms)}" for n, ms in lost.items())
                                                    if lost else "none"))
