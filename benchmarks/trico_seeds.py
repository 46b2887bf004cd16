"""TriCo against naive training over seeds at the shipped model's size: mean, 95% intervals and paired tests.

    python benchmarks/trico_seeds.py --run trico:0:RUN0 --run trico:1:RUN1 --run naive:0:NAIVE0 ... --out DIR

Each ``--run VARIANT:SEED:FOLDER`` names a finished training run whose checkpoint was chosen on the validation
photo (``python -m examples.trico select --run FOLDER`` wrote ``FOLDER/checkpoints/best.pt``). Every run is
measured on the embedded ``test`` split (chelsea, rocket) and on the ``extra`` split (china, flower, grace_hopper:
photos from the scikit-learn and matplotlib wheels) under the seen and the unseen degradation, and the study's
report (``examples.trico.study_report``: mean, std, 95% t interval, paired difference to ``trico`` with t and
Wilcoxon p-values) is written per split to ``DIR/<split>/study.{csv,md,png}``; measurements are cached in
``DIR/<split>/runs/<variant>/seed<k>/eval.json``. This is the quick study's machinery at the shipped size, for
runs trained by hand (each ~25-40 min on a 2-core CPU) rather than by ``study``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from examples.trico import study_report
from examples.trico.checkpoint import load_model
from examples.trico.data import embedded_dataset
from examples.trico.evaluate import evaluate_model
from examples.trico.metrics import MetricConventions

SPLITS = {"test": "the embedded test split (chelsea, rocket; 6 images)",
          "extra": "the extra split (china, flower, grace_hopper from the scikit-learn and matplotlib wheels; "
                   "9 images)"}
METRICS = ["psnr", "ssim"]


def parse_run(text: str) -> tuple[str, int, Path]:
    try:
        variant, seed, folder = text.split(":", 2)
        return variant, int(seed), Path(folder)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--run {text!r}: expected VARIANT:SEED:FOLDER") from None


def measure(run: Path, split: str, cache: Path) -> dict:
    """``{degradation: {metric: mean}}`` of ``run``'s ``best.pt`` on ``split`` (cached in ``cache``)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    best = run / "checkpoints" / "best.pt"
    if not best.is_file():
        raise SystemExit(f"{best} does not exist: run `python -m examples.trico select --run {run}` first")
    model, _ = load_model(best)
    result: dict = {}
    for deg in ("seen", "unseen"):
        data = embedded_dataset(split, scale=model.config["scale"], seed=0, degradation=deg)
        report = evaluate_model(model, data, MetricConventions(), METRICS, progress=False)
        result[deg] = {k: v["mean"] for k, v in report["metrics"].items()}
    selection = json.loads((run / "selection.json").read_text()) if (run / "selection.json").is_file() else {}
    result["checkpoint"] = {"run": str(run), "step": selection.get("chosen", {}).get("step")}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1))
    (cache.parent / "train.json").write_text(json.dumps({"run": str(run)}))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=parse_run, action="append", required=True, help="VARIANT:SEED:FOLDER")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--setup", default="", help="one paragraph describing the runs (goes into the reports)")
    args = ap.parse_args(argv)
    variants = list(dict.fromkeys(v for v, _, _ in args.run))
    seeds = sorted({s for _, s, _ in args.run})
    for split, title in SPLITS.items():
        out = args.out / split
        for variant, seed, run in args.run:
            measure(run, split, out / "runs" / variant / f"seed{seed}" / "eval.json")
        rows = study_report.collect_rows(out, variants, seeds, METRICS)
        study_report.write_csv(rows, out / "study.csv")
        rows = study_report.read_csv(out / "study.csv")
        summary = study_report.summarize(rows)
        study_report.plot(summary, rows, variants, METRICS, out / "study.png")
        counts = {v: len({r["seed"] for r in rows if r["variant"] == v}) for v in variants}
        setup = f"{args.setup} Test set: {title}; RGB, uint8, no border crop.".strip()
        meta = {"title": f"TriCo against naive training over seeds: {split} split", "setup": setup,
                "counts": counts, "plot": "study.png"}
        (out / "study.md").write_text(study_report.report_markdown(summary, variants, METRICS, meta))
        print(f"{split}: {out / 'study.md'}")


if __name__ == "__main__":
    main()
