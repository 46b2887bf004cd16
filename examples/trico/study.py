"""``python -m examples.trico study``: the paper's ablations (Table 3) over seeds, with confidence intervals.

``study --variants trico naive no_s1 no_s2 no_ihem --seeds N --out DIR [--quick]`` trains every variant with
every seed ``0 .. N-1`` on the same data and the same budget, evaluates each network on the embedded test split
under both degradations (``seen``: the training camera model; ``unseen``: the evaluation-only one) and writes

- ``DIR/study.csv``: one row per variant, seed, degradation and metric (``variant, seed, degradation, metric,
  value``),
- ``DIR/study.md``: mean, standard deviation and 95% confidence interval per variant, and each variant's paired
  comparison with the full method over seeds (study_report.py),
- ``DIR/study.png``: one point per seed and the intervals.

Variants: ``trico`` (S1 then S2), ``naive`` (fixed equal weights, one level on all data), ``no_s1`` (S2 only),
``no_s2`` (S1, then joint training with frozen weights), ``no_ihem`` (the full method, network without the
illumination-guided blocks, ``model.ihem: false``). Every run does exactly ``s1.max_steps + s2.max_steps``
steps: the S1 convergence stop is switched off, so no variant gets a different budget.

Seeds change the initialisation (``seed``) and the batch order (``data.loader_seed``), nothing else: the
synthetic training samples (``data.seed``), the upper/lower split and the test pairs are the same for every
run.

Base configs: ``--quick`` -> ``configs/study_quick.yaml`` (about 2 minutes per run on a 2-core CPU); otherwise
``configs/shipped_x2.yaml`` (the shipped model's sizes); ``--config`` picks another one.

Resumable: each run lives in ``DIR/runs/<variant>/seed<k>/``. A finished run (``train.json``) is not trained
again; an interrupted one resumes exactly from its ``checkpoints/last.pt`` (the engine's resume); evaluations
are cached in ``eval.json`` and only missing metrics are measured again. Runs go seed by seed (all variants of
seed 0, then seed 1, ...), so a study stopped early has a balanced number of seeds per variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .config import CONFIG_DIR, TrainConfig

__all__ = ["VARIANTS", "DEGRADATIONS", "study_config", "run_study", "add_arguments", "run"]

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("trico", "naive", "no_s1", "no_s2", "no_ihem")
DEGRADATIONS: tuple[str, ...] = ("seen", "unseen")
QUICK_CONFIG = CONFIG_DIR / "study_quick.yaml"
FULL_CONFIG = CONFIG_DIR / "shipped_x2.yaml"


def study_config(base: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """``base`` turned into one run of the study: the variant's schedule/network, the seed's initialisation
    and batch order, a fixed step budget, no progress bar and no TensorBoard."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    a = base.algorithm
    algorithm = dataclasses.replace(a, variant="trico" if variant == "no_ihem" else variant,
                                    s1=dataclasses.replace(a.s1, converge_tol=None))
    model = dataclasses.replace(base.model, ihem=variant != "no_ihem")
    data = dataclasses.replace(base.data, loader_seed=seed)
    logc = dataclasses.replace(base.log, progress=False, tensorboard=False)
    return dataclasses.replace(base, seed=seed, algorithm=algorithm, model=model, data=data, log=logc)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)  # atomic: a killed study never leaves half a file behind


def train_run(config: TrainConfig, run_dir: Path, device: str = "cpu") -> dict:
    """Train one run to the end (resuming an interrupted one); return ``train.json``'s content."""
    from .train import train

    done = _read_json(run_dir / "train.json")
    if done is not None and done.get("status") == "finished":
        return done
    last = run_dir / "checkpoints" / "last.pt"
    resume = last if last.is_file() else None
    before = _read_json(run_dir / "progress.json") or {"seconds": 0.0}
    # no checkpoint yet: whatever an interrupted start left (config.yaml, logs) is replaced by a fresh start
    result = train(config, run_dir, resume=resume, device=device, overwrite=resume is None)
    s = result.summary
    info = {"status": s.status, "steps": s.steps, "phase_steps": result.phase_steps,
            "seconds": before["seconds"] + result.seconds, "resumed": resume is not None,
            "checkpoint": str(s.checkpoint), "threads": torch.get_num_threads()}
    if s.status != "finished":
        _write_json(run_dir / "progress.json", {"seconds": info["seconds"]})
        raise KeyboardInterrupt(f"run {run_dir} {s.status} after {s.steps} steps")
    _write_json(run_dir / "train.json", info)
    return info


def evaluate_run(run_dir: Path, metrics: Sequence[str], scale: int, device: str = "cpu") -> dict:
    """Measure the run's final network on the test split under each degradation; cached in ``eval.json``
    (metrics already measured are not measured again)."""
    from .checkpoint import load_model
    from .data import embedded_dataset
    from .evaluate import evaluate_model
    from .metrics import MetricConventions

    path = run_dir / "eval.json"
    cached = _read_json(path) or {}
    missing = {d: [m for m in metrics if m not in cached.get(d, {})] for d in DEGRADATIONS}
    if not any(missing.values()):
        return cached
    model, _ = load_model(run_dir / "checkpoints" / "last.pt", map_location=device)
    model = model.to(device)
    for deg, names in missing.items():
        if not names:
            continue
        test = embedded_dataset("test", scale=scale, seed=0, degradation=deg)
        report = evaluate_model(model, test, MetricConventions(), names, device=device, progress=False)
        values = cached.setdefault(deg, {})
        values.update({k: v["mean"] for k, v in report["metrics"].items()})
        cached.setdefault("skipped", {}).update(report["skipped"])
    _write_json(path, cached)
    return cached


def active_metrics(metrics: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The metrics that can run here, and the reasons for those that cannot (resolved once)."""
    from .metrics import MetricAccumulator

    acc = MetricAccumulator(metric_names=list(metrics))
    return acc.active, dict(acc.skipped)


def run_study(base: TrainConfig, out_dir: str | Path, variants: Sequence[str] = VARIANTS,
              seeds: Sequence[int] = range(5), metrics: Sequence[str] | None = None, device: str = "cpu",
              log_to=sys.stderr) -> dict:
    """Train and evaluate every ``variant x seed`` (seed-major order), then write the CSV, report and plot.

    Returns ``{"trained": [(variant, seed), ...] runs trained (or resumed) by this call, "csv", "report",
    "plot"}``.
    """
    from .study_report import write_outputs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names, skipped = active_metrics(metrics if metrics is not None else base.eval.metrics)
    trained = []
    total = len(variants) * len(seeds)
    k = 0
    for seed in seeds:
        for variant in variants:
            k += 1
            run_dir = out / "runs" / variant / f"seed{seed}"
            config = study_config(base, variant, seed)
            fresh = not (run_dir / "train.json").is_file()
            t0 = time.perf_counter()
            if fresh:
                print(f"[study] {k}/{total} training {variant} seed {seed} -> {run_dir}", file=log_to, flush=True)
                trained.append((variant, seed))
            info = train_run(config, run_dir, device)
            evaluate_run(run_dir, names, config.model.scale, device)
            if fresh:
                print(f"[study] {k}/{total} {variant} seed {seed}: {info['steps']} steps, train "
                      f"{info['seconds']:.0f} s, with evaluation {time.perf_counter() - t0:.0f} s", file=log_to,
                      flush=True)
            # outputs after every run: an interrupted study still has an up-to-date partial report
            paths = write_outputs(out, variants, seeds, names, skipped, base)
    if not total:
        paths = write_outputs(out, variants, seeds, names, skipped, base)
    return {"trained": trained, **paths}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0 .. N-1), default 5")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--out", required=True, help="study folder (resumable: rerun to continue)")
    parser.add_argument("--quick", action="store_true",
                        help="configs/study_quick.yaml (~2 min per run on a 2-core CPU) instead of shipped_x2.yaml")
    parser.add_argument("--config", help="base config instead of the --quick / shipped one")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a base config key (repeatable)")
    parser.add_argument("--metrics", nargs="+", help="metrics (default: the base config's eval.metrics)")
    parser.add_argument("--device", default="cpu")
    return parser


def run(args: argparse.Namespace) -> int:
    from .config import load_config_for_cli

    path = args.config or (QUICK_CONFIG if args.quick else FULL_CONFIG)
    config = load_config_for_cli(path, args.overrides)
    if config is None:
        return 2
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    try:
        result = run_study(config, args.out, args.variants, seeds, args.metrics, args.device)
    except KeyboardInterrupt as exc:
        print(f"[study] interrupted ({exc}); rerun the same command to continue", file=sys.stderr)
        return 130
    print(f"[study] report: {result['report']}")
    return 0
