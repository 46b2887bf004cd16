"""``python -m examples.trico study``: a tiny study (2 variants x 2 seeds x 2 steps) end to end; the report's
numbers recomputed from the CSV; resumption of an interrupted run; the statistics against closed forms."""

import csv
import math
import re

import numpy as np
import pytest
from scipy import stats

from examples.trico.config import load_config
from examples.trico.study import run_study, study_config
from examples.trico.study_report import paired, t_interval
from examples.trico.train import train

TINY = ["model.widths={ir_width: 4, fr_widths: [4, 8, 8], enc_blocks: [1, 1, 1], dec_blocks: [0, 1, 1], "
        "refine_blocks: 1, hr_blocks: 1, heads: [1, 1, 1]}",
        "data.crop=8", "data.batch_size=2", "data.samples_per_epoch=12", "algorithm.s1.max_steps=1",
        "algorithm.s2.max_steps=1", "log.checkpoint_every=1", "log.log_every=1"]


def test_t_interval_and_paired_closed_forms():
    mean, std, lo, hi = t_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)  # std = 1
    assert (mean, std) == (2.0, 1.0) and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    a, b = [1.0, 2.0, 4.0, 7.0], [0.5, 2.5, 3.0, 5.0]
    p = paired(a, b)
    assert p["diff"] == pytest.approx(0.75) and p["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert p["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert math.isnan(t_interval([1.0])[2]) and paired([1.0], [1.0])["n"] == 1


def test_seeds_change_init_and_batch_order_only():
    base = load_config("study_quick")
    c0, c1 = study_config(base, "no_ihem", 0), study_config(base, "no_ihem", 1)
    assert (c0.seed, c1.seed, c0.data.loader_seed, c1.data.loader_seed) == (0, 1, 0, 1)
    assert c0.data.seed == c1.data.seed == base.data.seed and c0.data.split_seed == c1.data.split_seed
    assert c0.algorithm.variant == "trico" and c0.model.ihem is False and c0.algorithm.s1.converge_tol is None


def _md_rows(text, metric, degradation):
    blocks = [b.split("\n## ", 1)[0] for b in text.split(f"## {metric.upper()} ")[1:]]  # one table each
    block = next(b for b in blocks if b.split("\n", 1)[0].endswith(f", {degradation} degradation"))
    return {r[0]: r for r in (re.split(r"\s*\|\s*", line.strip("| ")) for line in block.splitlines()
                              if line.startswith("| ") and not line.startswith("| variant"))}


@pytest.mark.slow
def test_tiny_study_report_from_csv_and_resume(tmp_path):
    base = load_config("study_quick", TINY)
    out = tmp_path / "study"
    # an interrupted run: stopped after its first step; the study must resume it, not restart it
    run_dir = out / "runs" / "trico" / "seed1"
    first = train(study_config(base, "trico", 1), run_dir, stop_after=1)
    assert first.summary.status == "stopped" and first.summary.steps == 1
    res = run_study(base, out, variants=["trico", "naive"], seeds=[0, 1], metrics=["psnr", "ssim"])
    assert sorted(res["trained"]) == [("naive", 0), ("naive", 1), ("trico", 0), ("trico", 1)]
    import json

    info = json.loads((run_dir / "train.json").read_text())
    assert info["resumed"] is True and info["steps"] == 2 and info["status"] == "finished"

    rows = _check_report_against_csv(out, ("trico", "naive"), (0, 1), ("psnr", "ssim"))
    # seeds change the initialisation: the two trico seeds differ
    trico = sorted(float(r["value"]) for r in rows if r["variant"] == "trico" and r["metric"] == "psnr"
                   and r["degradation"] == "seen")
    assert trico[0] != trico[1]
    assert (out / "study.png").is_file() and "PARTIAL" not in (out / "study.md").read_text()

    again = run_study(base, out, variants=["trico", "naive"], seeds=[0, 1], metrics=["psnr", "ssim"])
    assert again["trained"] == [] and (out / "study.csv").read_text().count("\n") == len(rows) + 1


def _check_report_against_csv(out, variants, seeds, metrics):
    """Recompute every mean, std, interval and paired difference of study.md from study.csv."""
    with open(out / "study.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["variant", "seed", "degradation", "metric", "value"]
        rows = list(reader)
    assert len(rows) == len(variants) * len(seeds) * 2 * len(metrics)  # variants x seeds x degradations x metrics
    text = (out / "study.md").read_text()
    labels = {"trico": "TriCo (full)", "naive": "naive", "no_s1": "w/o S1", "no_s2": "w/o S2", "no_ihem": "w/o IHEM"}
    n = len(seeds)
    for deg in ("seen", "unseen"):
        for m in metrics:
            table = _md_rows(text, m, deg)
            tol = {"psnr": 0.006, "niqe": 0.0006}.get(m, 6e-5)  # half a unit of the printed digits
            vals = {v: {int(r["seed"]): float(r["value"]) for r in rows
                        if r["variant"] == v and r["degradation"] == deg and r["metric"] == m} for v in variants}
            for v in variants:
                x = np.array([vals[v][k] for k in seeds])
                half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n)
                row = table[labels[v]]
                assert row[1] == str(n) and float(row[2]) == pytest.approx(x.mean(), abs=tol)
                assert float(row[3]) == pytest.approx(x.std(ddof=1), abs=tol)
                lo, hi = (float(t) for t in row[4].strip("[]").split(","))
                assert lo == pytest.approx(x.mean() - half, abs=tol) and hi == pytest.approx(x.mean() + half, abs=tol)
                if v != "trico":
                    d = np.array([vals[v][k] - vals["trico"][k] for k in seeds])
                    dh = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
                    assert float(row[5]) == pytest.approx(d.mean(), abs=tol)
                    dlo, dhi = (float(t) for t in row[6].strip("[]").split(","))
                    assert dlo == pytest.approx(d.mean() - dh, abs=tol) and dhi == pytest.approx(d.mean() + dh, abs=tol)
                    p = stats.ttest_rel([vals[v][k] for k in seeds], [vals["trico"][k] for k in seeds]).pvalue
                    assert float(row[7]) == pytest.approx(p, abs=0.0006)
    return rows


def test_report_recomputed_from_csv(tmp_path):
    """write_outputs on synthetic evaluations (3 variants x 4 seeds): the report's numbers follow from the CSV."""
    import json

    rng = np.random.default_rng(0)
    variants, seeds, metrics = ("trico", "naive", "no_ihem"), (0, 1, 2, 3), ("psnr", "ssim", "niqe")
    for v in variants:
        for k in seeds:
            d = tmp_path / "runs" / v / f"seed{k}"
            d.mkdir(parents=True)
            (d / "train.json").write_text(json.dumps({"status": "finished"}))
            ev = {deg: {"psnr": float(rng.normal(18, 1)), "ssim": float(rng.uniform(0.4, 0.5)),
                        "niqe": float(rng.normal(6, 0.5))} for deg in ("seen", "unseen")}
            (d / "eval.json").write_text(json.dumps(ev))
    from examples.trico.study_report import write_outputs

    write_outputs(tmp_path, variants, seeds, metrics, {"lpips": "no weights"}, load_config("study_quick"))
    _check_report_against_csv(tmp_path, variants, seeds, metrics)
    text = (tmp_path / "study.md").read_text()
    assert "PARTIAL" not in text and "**LPIPS**: no weights" in text and (tmp_path / "study.png").is_file()
    # a missing run makes the report partial, with the count per variant
    (tmp_path / "runs" / "naive" / "seed3" / "train.json").unlink()
    write_outputs(tmp_path, variants, seeds, metrics, {}, load_config("study_quick"))
    text = (tmp_path / "study.md").read_text()
    assert "**PARTIAL**: 11 of 12 runs finished" in text and "naive 3" in text


@pytest.mark.parametrize("report, min_seeds, expected_cells", [
    ("study_quick", 5, 5 * 2 * 6),  # five variants, two degradations, six metrics
    ("shipped_seeds/test", 3, 2 * 2 * 2),  # TriCo and naive at the shipped size (benchmarks/trico_seeds.py)
    ("shipped_seeds/extra", 3, 2 * 2 * 2),
    ("more_scenes_seeds/test", 3, 4 * 2 * 2),  # twelve scenes (TriCo, naive) and five photos (TriCo, naive)
    ("more_scenes_seeds/extra", 3, 4 * 2 * 2),
    ("five_seeds/test", 3, 4 * 2 * 2),  # the same with seeds 3 and 4 of the twelve-scene variants (stop 22)
    ("five_seeds/extra", 3, 4 * 2 * 2),
])
def test_committed_study_reports_match_their_csv(report, min_seeds, expected_cells):
    """docs/results/<report>: every mean, std, 95% interval, paired difference and t-test p in study.md is
    recomputed here from study.csv with numpy/scipy (not with study_report), so neither file can be edited alone."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "docs" / "results" / report
    with open(folder / "study.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    text = (folder / "study.md").read_text()
    values: dict = {}
    for r in rows:
        values.setdefault((r["metric"], r["degradation"], r["variant"]), {})[int(r["seed"])] = float(r["value"])
    labels = {"trico": "TriCo (full)", "naive": "naive", "no_s1": "w/o S1", "no_s2": "w/o S2",
              "no_ihem": "w/o IHEM"}
    checked = 0
    for (metric, degradation, variant), by_seed in values.items():
        table = _md_rows(text, metric, degradation)
        row = table[labels.get(variant, variant)]
        x = np.array([by_seed[s] for s in sorted(by_seed)])
        assert int(row[1]) == len(x) >= min_seeds
        digits = len(row[2].split(".")[1])
        half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        expected = [x.mean(), x.std(ddof=1), x.mean() - half, x.mean() + half]
        shown = [float(row[2]), float(row[3])] + [float(v) for v in row[4].strip("[]").split(",")]
        assert shown == pytest.approx(expected, abs=0.6 * 10 ** -digits)
        if variant != "trico":
            ref = values[(metric, degradation, "trico")]
            d = x - np.array([ref[s] for s in sorted(by_seed)])
            assert float(row[5]) == pytest.approx(d.mean(), abs=0.6 * 10 ** -digits)
            assert float(row[7]) == pytest.approx(stats.ttest_rel(x, [ref[s] for s in sorted(by_seed)]).pvalue,
                                                  abs=0.0006)
        checked += 1
    assert checked == expected_cells


def test_docs_five_seed_table_matches_its_csv():
    """docs/trico.md "Five seeds (stop 22)": means, stds, paired differences and p-values from five_seeds/*.csv."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "trico.md").read_text().split("#### Five seeds (stop 22)")[1].split("####")[0]
    rows = [r for r in text.splitlines() if r.startswith(("| test (", "| test |", "| extra"))]
    assert len(rows) == 4
    split = None
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        split = cells[0].split()[0] if cells[0] else split
        with open(root / "docs" / "results" / "five_seeds" / split / "study.csv", newline="") as f:
            data = list(csv.DictReader(f))

        def values(variant, metric, deg=cells[1], rows_of_split=data):
            ordered = sorted(rows_of_split, key=lambda r: int(r["seed"]))
            return np.array([float(r["value"]) for r in ordered
                             if r["variant"] == variant and r["metric"] == metric and r["degradation"] == deg])

        for metric, (t_cell, n_cell, d_cell), digits in (("psnr", cells[2:5], 2), ("ssim", cells[5:8], 3)):
            t, n = values("trico", metric), values("naive", metric)
            assert len(t) == len(n) == 5
            for cell, x in ((t_cell, t), (n_cell, n)):
                mean, std = (float(v) for v in cell.split("+-"))
                assert (mean, std) == pytest.approx((x.mean(), x.std(ddof=1)), abs=0.6 * 10 ** -digits)
            diff, p = d_cell.split()
            assert float(diff) == pytest.approx((n - t).mean(), abs=0.6 * 10 ** -digits)
            assert float(p.strip("()")) == pytest.approx(stats.ttest_rel(n, t).pvalue, abs=0.006)
