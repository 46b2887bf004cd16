"""Which validation rule should choose a run's checkpoint? PSNR, exposure-corrected PSNR, or SSIM.

    python benchmarks/trico_selection_rules.py --run trico:0:RUN0 --run naive:0:NAIVE0 ... --json OUT.json

``python -m examples.trico select`` keeps the checkpoint with the best validation PSNR. On two validation scenes
that PSNR is dominated by each checkpoint's *global exposure guess* (docs/trico.md: exposure at inference), which
says little about other scenes. This diagnostic compares three rules on the same checkpoints:

* ``psnr``: validation PSNR (``select``'s rule);
* ``psnr_exposure``: validation PSNR after scaling each output in linear light to the ground truth's mean
  luminance (the oracle correction of ``trico_exposure_oracle.py``): what a checkpoint restores apart from its
  exposure guess;
* ``ssim``: validation SSIM.

Every ``--run VARIANT:SEED:FOLDER`` (a training run with its config's ``data.holdout`` and numbered checkpoints) has
all its checkpoints scored on its validation photos; each rule's choice is then measured on the ``test`` and
``extra`` splits under both degradations (PSNR, SSIM; RGB, uint8, no border crop, as ``evaluate``). Checkpoint scores
are cached in ``FOLDER/selection_rules.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trico_exposure_oracle import exposure_corrected  # noqa: E402

from examples.restoration.degradations import quantize_8bit  # noqa: E402
from examples.trico.checkpoint import load_model  # noqa: E402
from examples.trico.data import embedded_dataset  # noqa: E402
from examples.trico.evaluate import evaluate_model  # noqa: E402
from examples.trico.metrics import psnr, ssim  # noqa: E402
from examples.trico.select import validation_dataset  # noqa: E402
from hyperlevel.checkpoint import numbered_checkpoints  # noqa: E402

RULES = ("psnr", "psnr_exposure", "ssim")
CELLS = tuple((split, deg) for split in ("test", "extra") for deg in ("seen", "unseen"))


def score(model: torch.nn.Module, dataset) -> dict[str, float]:
    """Mean of each rule's metric over ``dataset`` (outputs quantised to uint8 first, as ``evaluate``)."""
    sums = dict.fromkeys(RULES, 0.0)
    for i in range(len(dataset)):
        item = dataset[i]
        target = item["target"][None]
        with torch.no_grad():
            y = quantize_8bit(model(item["input"][None]).y.clamp(0, 1))
        sums["psnr"] += float(psnr(y, target))
        sums["psnr_exposure"] += float(psnr(quantize_8bit(exposure_corrected(y, target)), target))
        sums["ssim"] += float(ssim(y, target))
    return {k: v / len(dataset) for k, v in sums.items()}


def score_run(run: Path) -> list[dict]:
    """``[{"step", "path", rule: value}]`` for every numbered checkpoint of ``run`` (cached)."""
    cache = run / "selection_rules.json"
    found = numbered_checkpoints(run / "checkpoints")
    if cache.is_file():
        rows = json.loads(cache.read_text())
        if [r["step"] for r in rows] == [s for s, _ in found]:
            return rows
    config = yaml.safe_load((run / "config.yaml").read_text())
    val = validation_dataset(config, int(config["model"]["scale"]))
    rows = []
    for step, path in found:
        model, _ = load_model(path)
        model.eval()
        rows.append({"step": step, "path": str(path), **score(model, val)})
        print(f"{run.name} step {step}: " + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in RULES), flush=True)
    cache.write_text(json.dumps(rows, indent=1))
    return rows


def choose(rows: list[dict], rule: str) -> dict:
    """The row with the best ``rule`` value; the later step wins a tie (as ``select``)."""
    return max(rows, key=lambda r: (r[rule], r["step"]))


def held_out(path: str) -> dict[str, dict[str, float]]:
    """``{"split/degradation": {"psnr", "ssim"}}`` of one checkpoint on the test and extra splits."""
    model, _ = load_model(path)
    model.eval()
    out = {}
    for split, deg in CELLS:
        report = evaluate_model(model, embedded_dataset(split, degradation=deg), metric_names=["psnr", "ssim"],
                                progress=False)
        out[f"{split}/{deg}"] = {m: float(report["metrics"][m]["mean"]) for m in ("psnr", "ssim")}
    return out


def summary(results: dict) -> str:
    """Markdown: per variant and rule, the mean over seeds of each cell (PSNR / SSIM) and the mean chosen step."""
    lines = ["| variant | rule | mean step | " + " | ".join(f"{s} {d}" for s, d in CELLS) + " |",
             "|---|---|---|" + "---|" * len(CELLS)]
    variants = sorted({k.split(":")[0] for k in results})
    for variant in variants:
        runs = [r for k, r in results.items() if k.split(":")[0] == variant]
        for rule in RULES:
            step = statistics.mean(r["chosen"][rule]["step"] for r in runs)
            cells = []
            for split, deg in CELLS:
                vals = [r["held_out"][str(r["chosen"][rule]["step"])][f"{split}/{deg}"] for r in runs]
                cells.append(f"{statistics.mean(v['psnr'] for v in vals):.2f} / "
                             f"{statistics.mean(v['ssim'] for v in vals):.3f}")
            lines.append(f"| {variant} ({len(runs)} seeds) | {rule} | {step:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", required=True, metavar="VARIANT:SEED:FOLDER")
    ap.add_argument("--json", type=Path, help="also write every score and measurement here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for spec in args.run:
        variant, seed, folder = spec.split(":", 2)
        rows = score_run(Path(folder))
        chosen = {rule: choose(rows, rule) for rule in RULES}
        measured = {}
        for row in chosen.values():
            if str(row["step"]) not in measured:
                measured[str(row["step"])] = held_out(row["path"])
        results[f"{variant}:{seed}"] = {"chosen": chosen, "held_out": measured}
        print(f"{variant} seed {seed}: " + ", ".join(f"{r} -> step {c['step']}" for r, c in chosen.items()),
              flush=True)
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
