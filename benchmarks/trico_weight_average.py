"""Weight averaging against ``select``'s single checkpoint, over seeds: held-out PSNR with paired tests.

    python benchmarks/trico_weight_average.py --run trico:0:RUN0 --run naive:0:NAIVE0 ... \
        [--from-step 700 --from-step 1050] --json OUT.json
    python benchmarks/trico_weight_average.py --summary OUT.json

Each ``--run VARIANT:SEED:FOLDER`` is a finished training run that kept its checkpoints and was ``select``-ed
(``FOLDER/checkpoints/best.pt``). For every ``--from-step A`` the run's checkpoints from step A to the end are
averaged (``python -m examples.trico average``'s code; written to ``FOLDER/checkpoints/swa<A>.pt``), and both the
selected and the averaged models are measured as they are produced (no exposure change) on the decision sets of
``trico_exposure_anchor.py`` (the config's training photos at full size and its validation photos, seen
degradation) and on the ``test`` and ``extra`` splits under both degradations. ``--summary`` prints the table of
docs/trico.md ("Weight averaging"): per variant and rule, the mean over seeds and the paired difference to
``sel`` with its t-test p-value. Models already in ``OUT.json`` are kept (the measurement takes ~35 s a model).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETS = ("train photos", "val", "test seen", "test unseen", "extra seen", "extra unseen")
DECISION = ("train photos", "val")


def decision_score(psnr: dict[str, float]) -> float:
    """The rule's score of one model: the mean of its decision sets' PSNR means."""
    return sum(psnr[s] for s in DECISION) / len(DECISION)


def summary(models: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per (variant, rule) over the seeds present for ``{variant}_sel_s{k}``."""
    from scipy import stats

    keys = sorted(models)
    variants = sorted({k.split("_")[0] for k in keys}, key=lambda v: (v != "trico", v))
    lines = ["| variant | rule | seeds | decision score | " + " | ".join(SETS) + " |",
             "|---|---|---|---|" + "---|" * len(SETS)]
    for variant in variants:
        rules = sorted({k.split("_")[1] for k in keys if k.startswith(variant + "_")},
                       key=lambda r: (r != "sel", len(r), r))
        seeds = sorted(int(k.rsplit("_s", 1)[1]) for k in keys if k.startswith(f"{variant}_sel_s"))
        base = [models[f"{variant}_sel_s{s}"] for s in seeds]
        for rule in rules:
            rows = [models.get(f"{variant}_{rule}_s{s}") for s in seeds]
            if any(r is None for r in rows):
                continue
            cells = []
            for name in SETS:
                vals = [r[name] for r in rows]
                cell = f"{statistics.mean(vals):.2f} +- {statistics.stdev(vals):.2f}"
                if rule != "sel":
                    diff = statistics.mean(v - b[name] for v, b in zip(vals, base))
                    p = stats.ttest_rel(vals, [b[name] for b in base]).pvalue
                    cell += f" ({diff:+.2f}, p {p:.2f})"
                cells.append(cell)
            score = statistics.mean(decision_score(r) for r in rows)
            lines.append(f"| {variant} | {rule} | {len(seeds)} | {score:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", action="append", default=[], metavar="VARIANT:SEED:FOLDER")
    ap.add_argument("--from-step", action="append", type=int, default=[], help="first averaged step (repeatable)")
    ap.add_argument("--config", type=Path, default=Path("examples/trico/configs/shipped_x2.yaml"))
    ap.add_argument("--json", type=Path, help="results file (read and extended)")
    ap.add_argument("--summary", type=Path, help="print the table of a results file and exit")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary(json.loads(args.summary.read_text())["models"]))
        return
    if not args.run or not args.json:
        ap.error("give --run VARIANT:SEED:FOLDER (repeatable) and --json OUT")
    import torch
    import yaml
    from trico_exposure_anchor import evaluation_sets, measure

    from examples.trico.average import average_run
    from examples.trico.checkpoint import load_model

    torch.set_num_threads(1)
    sets = evaluation_sets(yaml.safe_load(args.config.read_text()))
    record = json.loads(args.json.read_text()) if args.json.is_file() else {"models": {}}
    for spec in args.run:
        variant, seed, folder = spec.split(":", 2)
        folder = Path(folder)
        candidates = {"sel": folder / "checkpoints" / "best.pt"}
        for step in args.from_step:
            candidates[f"swa{step}"] = folder / "checkpoints" / f"swa{step}.pt"
        for rule, path in candidates.items():
            name = f"{variant}_{rule}_s{seed}"
            if name in record["models"]:
                continue
            if rule != "sel" and not path.is_file():
                average_run(folder, int(rule[3:]), out=path)
            model, _ = load_model(path)
            record["models"][name] = {s: measure(model, data, (0.0,))[0.0] for s, data in sets.items()}
            args.json.write_text(json.dumps(record, indent=1))
            print(name, " ".join(f"{s}: {v:.2f}" for s, v in record["models"][name].items()), flush=True)
    print(summary(record["models"]))


if __name__ == "__main__":
    main()
