"""``python -m examples.trico demo`` (``make demo``): train TriCo briefly on the embedded data, compare it with
baselines and write ``runs/demo/report.md``.

Steps: (1) TriCo with the full S1 + S2 schedule of ``configs/demo.yaml``; (2) the naive baseline (the same
network, fixed equal weights, one level) with the same number of network updates; (3) both checkpoints are
reloaded from disk with ``checkpoint.load_model`` (exactly what ``enhance`` does) and measured on the embedded
test split under the seen and the unseen degradation, together with every baseline of
:mod:`examples.trico.baselines` and, when ``examples/trico/pretrained/trico_x2.safetensors`` exists, the shipped
model; (4) figures (image crops, the loss weights and losses over the iterations, Fig. 7 of the paper) and the
report. The wall time of the whole demo is measured and written into the report, as is every result, whether or
not TriCo wins; the report lists every method and metric on which the demo model and the shipped model do NOT
beat another method.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from .config import CONFIG_DIR, TrainConfig

__all__ = ["add_arguments", "run", "run_demo"]

log = logging.getLogger(__name__)

METHOD_LABELS = {"naive": "naive (fixed equal weights, demo budget)", "trico": "TriCo (S1 + S2, demo budget)",
                 "shipped": "TriCo (shipped model)"}
CROP_COLUMNS = ("bicubic", "linear_gain_bicubic", "zero_dce_bicubic", "naive", "trico", "shipped")


def _label(name: str) -> str:
    from .baselines import BASELINE_LABELS

    return METHOD_LABELS.get(name) or BASELINE_LABELS.get(name, name)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", default=str(CONFIG_DIR / "demo.yaml"), help="config (default configs/demo.yaml)")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set algorithm.s1.max_steps=10")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _read_log(path: Path) -> dict[str, list[tuple[int, str, float]]]:
    series: dict[str, list[tuple[int, str, float]]] = {}
    if not path.is_file():
        return series
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            series.setdefault(row["name"], []).append((int(row["step"]), row["phase"], float(row["value"])))
    return series


def _plot_training(trico_log: dict, naive_log: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .losses import LOSS_NAMES, PAPER_WEIGHTS

    files = []
    fig, ax = plt.subplots(figsize=(7, 4))
    s1_end = max((s for s, ph, _ in trico_log.get("loss/outer", []) if ph == "S1"), default=None)
    for name, paper in zip(LOSS_NAMES, PAPER_WEIGHTS, strict=True):
        pts = trico_log.get(f"weights/upper/{name}", [])
        if pts:
            line, = ax.plot([p[0] for p in pts], [p[2] for p in pts], label=f"{name} (paper {paper})")
            ax.axhline(paper, color=line.get_color(), linestyle=":", linewidth=0.8)
    if s1_end is not None:
        ax.axvline(s1_end + 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.text(s1_end + 0.5, ax.get_ylim()[1], " S1 | S2", va="top", fontsize=8, color="grey")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss weight s_u")
    ax.set_title("Loss weights over the iterations (dotted: the paper's converged values)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "weights.png", dpi=110)
    plt.close(fig)
    files.append("weights.png")

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, key in (("upper objective Phi^ul (D_ul batches)", "loss/outer"),
                       ("lower objective Phi^ll (D_ll batches)", "loss/inner")):
        pts = trico_log.get(key, [])
        if pts:
            ax.plot([p[0] for p in pts], [p[2] for p in pts], label=label, linewidth=0.9)
    if s1_end is not None:
        ax.axvline(s1_end + 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("sum L_u / (2 s_u) + ln(1 + s_u^2)")
    ax.set_title("TriCo (the total depends on the learned s)", fontsize=9)
    ax.legend(fontsize=7)
    pts = naive_log.get("loss/inner", [])
    if pts:
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], color="tab:green", linewidth=0.9)
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("sum L_u / 2 + 5 ln 2")
    ax2.set_title("naive (s = 1, all of D)", fontsize=9)
    fig.suptitle("Total loss over the iterations (not comparable across the two panels)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=110)
    plt.close(fig)
    files.append("losses.png")
    return files


def _crops_figure(outputs: dict[str, dict[str, torch.Tensor]], targets: dict[str, torch.Tensor], out: Path,
                  crop: int = 96) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(targets)
    columns = [*[c for c in CROP_COLUMNS if c in outputs and outputs[c]], "ground truth"]
    fig, axes = plt.subplots(len(names), len(columns), figsize=(2.1 * len(columns), 2.2 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        t = targets[name]
        h, w = t.shape[-2:]
        top, left = (h - crop) // 2, (w - crop) // 2
        for c, method in enumerate(columns):
            img = t if method == "ground truth" else outputs[method][name]
            img = img[:, top : top + crop, left : left + crop].clamp(0, 1).permute(1, 2, 0).numpy()
            ax = axes[r][c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(_label(method) if method != "ground truth" else method, fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "crops.png", dpi=110)
    plt.close(fig)
    return "crops.png"


def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def run_demo(config: TrainConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Run the whole demo; return a summary dict (also written into ``report.md``)."""
    from .baselines import BASELINES
    from .evaluate import build_eval_datasets, collect_methods, evaluate_methods
    from .losses import LOSS_NAMES, PAPER_WEIGHTS
    from .metrics import MetricConventions
    from .pretrained import shipped_checkpoint
    from .train import train

    start = time.perf_counter()
    out = Path(out_dir)
    for stale in (out / "logs", out / "naive", out / "checkpoints"):
        shutil.rmtree(stale, ignore_errors=True)  # a fresh demo; TensorBoard would otherwise mix runs
    out.mkdir(parents=True, exist_ok=True)
    if not progress:
        config = dataclasses.replace(config, log=dataclasses.replace(config.log, progress=False))

    print(f"[demo] 1/4 training TriCo (S1 <= {config.algorithm.s1.max_steps} steps, S2 "
          f"{config.algorithm.s2.max_steps} steps) -> {out}", file=sys.stderr)
    trico = train(config, out, overwrite=True)  # a fresh demo: replaces an earlier demo run in OUT
    t_trico = trico.seconds
    budget = {"S1": trico.phase_steps.get("S1", 0), "S2": trico.phase_steps.get("S2", 0)}
    updates = budget["S1"] * config.algorithm.s1.inner_steps + budget["S2"] * config.algorithm.s2.inner_steps
    a = config.algorithm
    naive_cfg = dataclasses.replace(config, algorithm=dataclasses.replace(
        a, variant="naive", s1=dataclasses.replace(a.s1, max_steps=max(1, budget["S1"] * a.s1.inner_steps)),
        s2=dataclasses.replace(a.s2, max_steps=max(1, budget["S2"] * a.s2.inner_steps))))
    print(f"[demo] 2/4 training the naive baseline ({updates} network updates, as TriCo)", file=sys.stderr)
    naive = train(naive_cfg, out / "naive", overwrite=True)

    print("[demo] 3/4 evaluating on the embedded test split (seen and unseen degradation)", file=sys.stderr)
    scale = config.model.scale
    e = config.eval
    datasets = build_eval_datasets(e.data, scale=scale, split=e.split, seed=config.data.seed,
                                   centre_crop=e.centre_crop)
    conv = MetricConventions()
    metrics = list(config.eval.metrics)
    checkpoints = {"naive": naive.checkpoint, "trico": trico.checkpoint}  # the engine's last.pt, as enhance reads it
    shipped = shipped_checkpoint(scale)
    if shipped is not None:
        checkpoints["shipped"] = shipped
    methods, _ = collect_methods(checkpoints, list(BASELINES), scale)
    reports = evaluate_methods(methods, datasets, conv, metrics, progress=False)
    t_eval_end = time.perf_counter()

    print("[demo] 4/4 figures and report", file=sys.stderr)
    outputs: dict[str, dict[str, torch.Tensor]] = {m: {} for m in CROP_COLUMNS if m in methods}
    targets: dict[str, torch.Tensor] = {}
    first = next(iter(datasets.values()))
    shown = [i for i in range(len(first)) if first[i]["name"].endswith("-3.5")] or [0]
    from .zero_dce import ZeroDCEUnavailable

    with torch.no_grad():
        for i in shown:
            item = first[i]
            x = item["input"].unsqueeze(0)
            targets[item["name"]] = item["target"]
            for m in outputs:
                try:
                    outputs[m][item["name"]] = methods[m](x)[0].clamp(0, 1)
                except ZeroDCEUnavailable:
                    pass
    figures = [_crops_figure(outputs, targets, out)]
    trico_log = _read_log(out / "logs" / "train.csv")
    naive_log = _read_log(out / "naive" / "logs" / "train.csv")
    figures += _plot_training(trico_log, naive_log, out)

    weights = trico.setup.loss_weights.weights()
    params = sum(p.numel() for p in trico.setup.model.trainable_parameters())
    wall = time.perf_counter() - start
    summary = {
        "wall_seconds": wall, "trico_train_seconds": t_trico, "naive_train_seconds": naive.seconds,
        "eval_seconds": t_eval_end - start - t_trico - naive.seconds, "phase_steps": budget,
        "network_updates": updates, "weights": weights, "paper_weights": dict(zip(LOSS_NAMES, PAPER_WEIGHTS)),
        "reports": reports, "params": params, "vgg_source": trico.vgg_source, "figures": figures,
        "checkpoint": str(trico.checkpoint), "threads": torch.get_num_threads(),
        "shipped": str(shipped) if shipped is not None else None,
        "num_images": {d: len(ds) for d, ds in datasets.items()},
    }
    report_path = out / "report.md"
    report_path.write_text(_report_markdown(config, summary, conv))
    summary["report"] = str(report_path)
    return summary


def _report_markdown(config: TrainConfig, s: dict, conv) -> str:
    from .evaluate import DEGRADATION_TITLES, comparison_table, losses_against
    from .losses import LOSS_NAMES, PAPER_WEIGHTS

    reports = s["reports"]
    lines = ["# TriCo demo report", ""]
    lines += [f"Wall time of the whole demo (training both networks, evaluation, figures): **{s['wall_seconds']:.0f} s** "
              f"({s['wall_seconds'] / 60:.1f} min; TriCo training {s['trico_train_seconds']:.0f} s, naive training "
              f"{s['naive_train_seconds']:.0f} s), {s['threads']} torch thread(s).", ""]
    m = config.model
    lines += ["## Setup", "",
              f"- Network: TriCo, x{m.scale}, semantic prior `{m.semantic}`, **demo widths** `{m.widths}` "
              f"({s['params']:,} trainable parameters; the paper-sized default network is too slow for a CPU demo).",
              f"- Data: embedded skimage photos (train: random {config.data.crop} px LR crops, batch "
              f"{config.data.batch_size}, D_ul : D_ll = {config.data.split_ratio[0]:g} : "
              f"{config.data.split_ratio[1]:g}); test: the fixed embedded test split (chelsea, rocket at -2.5, -3.5, "
              "-4.5 EV; 256 x 256 HR).",
              f"- Schedule: S1 (outer = loss weights, inner = w_i + w_s jointly) for {s['phase_steps']['S1']} steps, "
              f"S2 (weights frozen, outer = w_i, inner = w_s) for {s['phase_steps']['S2']} steps; solver "
              f"`{config.algorithm.solver.name}` {config.algorithm.solver.params}; learning rates "
              f"{dataclasses.asdict(config.algorithm.lr)} (larger than the paper's so that a short run moves).",
              f"- Naive baseline: the same network and initialisation, fixed equal weights (s = 1), w_i and w_s trained "
              f"jointly as one level on all training data, {s['network_updates']} updates (as many as TriCo's).",
              f"- Perceptual loss VGG19: `{s['vgg_source']}`"
              + (" -- **randomly initialised** (no weights exist offline here; `losses.allow_random_init: true`), so "
                 "the 'perceptual' term is not a perceptual loss and its learned weight is not comparable."
                 if s["vgg_source"] == "random-init" else "."),
              ""]
    lines += ["## Metrics on the test split", "",
              f"Data: `{config.eval.data}`, the same images under two degradation models "
              "(docs/trico_data_losses_metrics.md): **seen** is the camera model every training config uses (the "
              "test split has its own fixed seeds), **unseen** (Bayer-mosaic noise, Reinhard tone curve) was never "
              "used for training. " + conv.describe() + ". Best value per column in bold. Baselines: "
              "docs/trico.md, \"Baselines\".", ""]
    labels = {n: _label(n) for deg in reports.values() for n in deg}
    for deg, block in reports.items():
        lines += [f"### {DEGRADATION_TITLES.get(deg, deg)} ({s['num_images'][deg]} images)", "",
                  comparison_table(block, labels), ""]
    lines += ["### Where the models do not win", ""]
    for model in ("trico", "shipped"):
        if not any(model in block for block in reports.values()):
            continue
        for deg, block in reports.items():
            lost = {n: ms for n, ms in losses_against(block, model).items() if ms}
            if not lost:
                lines.append(f"- {_label(model)}, {deg} degradation: better than every other method on every "
                             "metric.")
            else:
                lines.append(f"- {_label(model)}, {deg} degradation: NOT better than "
                             + "; ".join(f"{_label(n)} on {', '.join(m.upper() for m in ms)}"
                                         for n, ms in lost.items()) + ".")
    if s.get("shipped") is None:
        lines.append("- The shipped model (examples/trico/pretrained/trico_x2.safetensors) is not in this checkout: "
                     "no row for it.")
    lines += ["", "A demo this short (minutes on a CPU, a ~100k-parameter network, random VGG features, one seed) "
              "says whether the pipeline works end to end, not how TriCo compares at the paper's scale (150k "
              "iterations on RELLISUR); differences of a few tenths of a dB between the two demo networks are "
              "within what another seed can change (not measured here). The shipped model's row is the trained "
              "result (docs/trico.md, \"Model card\").", ""]
    lines += ["## Learned loss weights", "",
              "| loss | learned s | effective multiplier 1/(2s) | paper s |", "|---|---|---|---|"]
    for name, paper in zip(LOSS_NAMES, PAPER_WEIGHTS, strict=True):
        w = s["weights"][name]
        lines.append(f"| {name} | {w:.3f} | {1 / (2 * w):.3f} | {paper} |")
    lines += ["", "Initial weights are all 1 (Alg. 1). The regularised total is sum_u L_u / (2 s_u) + ln(1 + s_u^2): "
              "a larger s_u means a *smaller* effective weight (docs/trico.md).", ""]
    lines += ["## Figures", "", "Centre crops of the test images at -3.5 EV, seen degradation (columns: bicubic of "
              "the dark input, linear gain + bicubic, Zero-DCE++ + bicubic, naive, TriCo, the shipped model when "
              "present, ground truth):", "", "![crops](crops.png)", "",
              "Loss weights over the iterations (the paper's Fig. 7), S1 | S2 boundary dashed:", "",
              "![weights](weights.png)", "",
              "Total loss (the regularised total changes with the weights themselves, so TriCo's and the naive run's "
              "values are not comparable; compare the test metrics):", "", "![losses](losses.png)", ""]
    lines += ["## Files", "",
              f"- `checkpoints/last.pt`: the TriCo engine checkpoint; `python -m examples.trico enhance --checkpoint "
              f"{s['checkpoint']} --input IMAGE_OR_DIR --output OUT --scale {config.model.scale}` accepts it as is.",
              "- `logs/train.csv`, `logs/tb/` (TensorBoard), `config.yaml`; the naive run under `naive/`.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .config import load_config_for_cli

    config = load_config_for_cli(args.config, args.overrides)
    if config is None:
        return 2
    summary = run_demo(config, args.out, progress=not args.no_progress)
    tri = {d: block["trico"]["metrics"] for d, block in summary["reports"].items()}
    psnr = ", ".join(f"{d} {_fmt(m.get('psnr', {}).get('mean'), 2)} dB" for d, m in tri.items())
    print(f"[demo] done in {summary['wall_seconds']:.0f} s; TriCo PSNR {psnr}; "
          f"learned weights " + ", ".join(f"{k}={v:.3f}" for k, v in summary["weights"].items()))
    print(f"[demo] report: {summary['report']}")
    return 0
