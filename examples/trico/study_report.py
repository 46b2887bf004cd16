"""The study's outputs from its runs' ``eval.json`` files: ``study.csv``, ``study.md`` and ``study.png``.

Statistics (over seeds, per variant, degradation and metric):

- mean and sample standard deviation (``ddof=1``);
- 95% confidence interval of the mean: ``mean +- t(0.975, n-1) * std / sqrt(n)`` (Student's t);
- paired comparison with the full method (``trico``) on the seeds both have: the per-seed differences
  ``variant - trico``, their mean, its 95% t interval, the paired t-test's two-sided p-value
  (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test's (``scipy.stats.wilcoxon``, exact for small
  n: with 5 seeds its smallest possible two-sided p is 0.0625, so it can never reach 0.05).

Everything in the report is computed from the rows written to ``study.csv`` (:func:`summarize` reads exactly
those rows), so the CSV alone reproduces the report.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["CSV_COLUMNS", "collect_rows", "write_csv", "read_csv", "summarize", "paired", "t_interval",
           "report_markdown", "plot", "write_outputs"]

CSV_COLUMNS = ("variant", "seed", "degradation", "metric", "value")
LOWER_IS_BETTER = {"lpips", "rmse", "niqe", "brisque"}
LABELS = {"trico": "TriCo (full)", "naive": "naive", "no_s1": "w/o S1", "no_s2": "w/o S2", "no_ihem": "w/o IHEM"}
DIGITS = {"psnr": 2, "niqe": 3, "brisque": 2}
SIGNIFICANCE = 0.05


def collect_rows(out_dir: Path, variants: Sequence[str], seeds: Iterable[int], metrics: Sequence[str]) -> list[dict]:
    """One row per finished and evaluated run x degradation x metric (``runs/<variant>/seed<k>/eval.json``)."""
    import json

    rows = []
    for seed in seeds:
        for variant in variants:
            run_dir = out_dir / "runs" / variant / f"seed{seed}"
            if not (run_dir / "train.json").is_file() or not (run_dir / "eval.json").is_file():
                continue
            ev = json.loads((run_dir / "eval.json").read_text())
            for deg in ("seen", "unseen"):
                for m in metrics:
                    v = ev.get(deg, {}).get(m)
                    if v is not None:
                        rows.append({"variant": variant, "seed": int(seed), "degradation": deg, "metric": m,
                                     "value": float(v)})
    return rows


def write_csv(rows: Sequence[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "value": repr(float(r["value"]))})  # repr: the exact float, round-trips


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{"variant": r["variant"], "seed": int(r["seed"]), "degradation": r["degradation"],
                 "metric": r["metric"], "value": float(r["value"])} for r in csv.DictReader(f)]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, std, lo, hi)``: the mean, the sample std and the Student-t interval of the mean (NaN for n<2)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired comparison of ``a - b`` (same seeds): mean difference, its 95% interval, t-test and Wilcoxon p."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    mean, _, lo, hi = t_interval(d)
    out = {"n": len(d), "diff": mean, "lo": lo, "hi": hi, "p_t": math.nan, "p_wilcoxon": math.nan}
    if len(d) >= 2:
        if np.all(d == d[0]):
            out["p_t"] = 1.0 if d[0] == 0 else 0.0
        else:
            out["p_t"] = float(stats.ttest_rel(a, b).pvalue)
        if np.any(d != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(a, b).pvalue)
    return out


def summarize(rows: Sequence[dict]) -> dict:
    """``{(degradation, metric): {"variants": {v: {n, mean, std, lo, hi, seeds}}, "paired": {v: paired(...)}}}``
    from CSV rows (the report prints exactly these numbers)."""
    table: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for r in rows:
        table.setdefault((r["degradation"], r["metric"]), {}).setdefault(r["variant"], {})[r["seed"]] = r["value"]
    out = {}
    for key, per_variant in table.items():
        entry = {"variants": {}, "paired": {}}
        for v, by_seed in per_variant.items():
            seeds = sorted(by_seed)
            mean, std, lo, hi = t_interval([by_seed[s] for s in seeds])
            entry["variants"][v] = {"n": len(seeds), "mean": mean, "std": std, "lo": lo, "hi": hi, "seeds": seeds}
        ref = per_variant.get("trico")
        if ref is not None:
            for v, by_seed in per_variant.items():
                if v == "trico":
                    continue
                common = sorted(set(ref) & set(by_seed))
                entry["paired"][v] = paired([by_seed[s] for s in common], [ref[s] for s in common])
        out[key] = entry
    return out


def _f(x: float, digits: int) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "n/a" if not math.isfinite(x) else (f"{x:.3f}" if x >= 0.001 else f"{x:.1e}")


def _verdict(metric: str, p: dict) -> str:
    if p["n"] < 2 or not math.isfinite(p["p_t"]):
        return "too few seeds"
    if p["p_t"] >= SIGNIFICANCE:
        return "no significant difference"
    better = (p["diff"] < 0) if metric in LOWER_IS_BETTER else (p["diff"] > 0)
    return "variant better than TriCo" if better else "TriCo better"


def report_markdown(summary: dict, variants: Sequence[str], metrics: Sequence[str], meta: dict) -> str:
    """The study's markdown report (tables per degradation and metric; the setup in ``meta``)."""
    lines = [f"# {meta.get('title', 'TriCo ablation study')}", ""]
    lines += [meta.get("setup", ""), ""]
    counts = meta.get("counts", {})
    if counts:
        lines += ["Seeds completed per variant: " + ", ".join(f"{LABELS.get(v, v)} {counts.get(v, 0)}"
                                                             for v in variants) + ".", ""]
    if meta.get("partial"):
        lines += [f"**PARTIAL**: {meta['partial']}", ""]
    lines += ["Mean, sample standard deviation and 95% Student-t confidence interval of the mean over seeds. "
              "Paired columns: the per-seed difference variant - TriCo (same seed: same initialisation and batch "
              "order), its mean and 95% interval, the paired t-test's and the Wilcoxon signed-rank test's "
              f"two-sided p-values; the verdict uses the t-test at {SIGNIFICANCE}. Arrows: which direction is "
              "better.", ""]
    for deg in ("seen", "unseen"):
        for m in metrics:
            entry = summary.get((deg, m))
            if entry is None:
                continue
            dg = DIGITS.get(m, 4)
            arrow = "↓" if m in LOWER_IS_BETTER else "↑"
            lines += [f"## {m.upper()} ({arrow}), {deg} degradation", "",
                      "| variant | n | mean | std | 95% CI | diff vs TriCo | 95% CI of diff | p (t) | p (Wilcoxon) "
                      "| verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
            for v in variants:
                s = entry["variants"].get(v)
                if s is None:
                    continue
                row = [LABELS.get(v, v), str(s["n"]), _f(s["mean"], dg), _f(s["std"], dg),
                       f"[{_f(s['lo'], dg)}, {_f(s['hi'], dg)}]"]
                p = entry["paired"].get(v)
                if p is None:
                    row += ["(reference)", "", "", "", ""]
                else:
                    row += [f"{p['diff']:+.{dg}f}" if math.isfinite(p["diff"]) else "n/a",
                            f"[{_f(p['lo'], dg)}, {_f(p['hi'], dg)}]", _p(p["p_t"]), _p(p["p_wilcoxon"]),
                            _verdict(m, p)]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    if meta.get("skipped"):
        lines += ["Metrics not measured (never reported as 0):", ""]
        lines += [f"- **{k.upper()}**: {v}" for k, v in meta["skipped"].items()]
        lines.append("")
    if meta.get("plot"):
        lines += [f"![one point per seed, mean and 95% interval]({meta['plot']})", ""]
    return "\n".join(lines)


def plot(summary: dict, rows: Sequence[dict], variants: Sequence[str], metrics: Sequence[str], path: Path) -> None:
    """One panel per (degradation, metric): a dot per seed, the mean and its 95% interval per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    degs = [d for d in ("seen", "unseen") if any((d, m) in summary for m in metrics)]
    ms = [m for m in metrics if any((d, m) in summary for d in degs)]
    if not degs or not ms:
        return
    fig, axes = plt.subplots(len(degs), len(ms), figsize=(2.9 * len(ms), 2.9 * len(degs)), squeeze=False)
    rng = np.random.default_rng(0)  # jitter only
    for i, d in enumerate(degs):
        for j, m in enumerate(ms):
            ax = axes[i][j]
            entry = summary.get((d, m), {"variants": {}})
            for k, v in enumerate(variants):
                vals = [r["value"] for r in rows if r["variant"] == v and r["degradation"] == d and r["metric"] == m]
                if not vals:
                    continue
                ax.scatter(k + rng.uniform(-0.12, 0.12, len(vals)), vals, s=10, alpha=0.6, color="tab:blue")
                s = entry["variants"][v]
                if math.isfinite(s["lo"]):
                    ax.errorbar(k + 0.28, s["mean"], yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]],
                                fmt="o", color="black", capsize=3, markersize=4)
                else:
                    ax.plot(k + 0.28, s["mean"], "o", color="black", markersize=4)
            ax.set_xticks(range(len(variants)), [LABELS.get(v, v) for v in variants], rotation=45, ha="right",
                          fontsize=7)
            ax.set_title(f"{m.upper()} ({'↓' if m in LOWER_IS_BETTER else '↑'}), {d}", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Ablations over seeds: dots = seeds, black = mean and 95% CI", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _setup_text(base, variants: Sequence[str]) -> str:
    a, d, m = base.algorithm, base.data, base.model
    vgg = base.losses.vgg_weights or ("random-init" if base.losses.allow_random_init else "torch hub cache")
    return (f"Setup: x{m.scale}, widths `{m.widths or 'default (paper-sized)'}`; embedded training photos, "
            f"{d.crop}-pixel LR crops, batch {d.batch_size}, seen (camera) degradation; S1 {a.s1.max_steps} + S2 "
            f"{a.s2.max_steps} steps for every variant (the ablations keep the total: naive and w/o S1 train "
            f"{a.s1.max_steps + a.s2.max_steps} steps in one phase; the S1 convergence stop is off); solver "
            f"`{a.solver.name}`; learning rates {a.lr.gamma_u:g}/{a.lr.gamma_l:g} (S1), {a.lr.o_u:g}/{a.lr.o_l:g} "
            f"(S2); perceptual VGG19 `{vgg}`. "
            "Seeds change the initialisation and the batch order only. Test: the embedded test split (chelsea, "
            "rocket at 2.5/3.5/4.5 EV, 256 x 256 HR) under the seen and the unseen (Bayer + Reinhard, "
            "evaluation-only) degradations; RGB, uint8, no border crop.")


def write_outputs(out_dir: Path, variants: Sequence[str], seeds: Iterable[int], metrics: Sequence[str],
                  skipped: dict, base) -> dict:
    """Collect the runs, write ``study.csv``, then the report and the plot computed from the CSV's rows."""
    seeds = list(seeds)
    rows = collect_rows(out_dir, variants, seeds, metrics)
    csv_path = out_dir / "study.csv"
    write_csv(rows, csv_path)
    rows = read_csv(csv_path)  # the report is computed from exactly what the CSV holds
    summary = summarize(rows)
    counts = {v: len({r["seed"] for r in rows if r["variant"] == v}) for v in variants}
    partial = ""
    if any(c < len(seeds) for c in counts.values()):
        partial = (f"{sum(counts.values())} of {len(variants) * len(seeds)} runs finished (seeds requested: "
                   f"{len(seeds)}); the study is still running or was stopped, rerun it to continue.")
    plot_path = out_dir / "study.png"
    plot(summary, rows, variants, metrics, plot_path)
    meta = {"setup": _setup_text(base, variants), "counts": counts, "partial": partial, "skipped": skipped,
            "plot": plot_path.name if plot_path.is_file() else None}
    md_path = out_dir / "study.md"
    md_path.write_text(report_markdown(summary, variants, metrics, meta))
    return {"csv": str(csv_path), "report": str(md_path), "plot": str(plot_path)}
