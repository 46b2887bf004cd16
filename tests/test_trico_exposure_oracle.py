"""benchmarks/trico_exposure_oracle.py: the oracle exposure correction matches the target's mean linear
luminance and leaves an image that already matches it unchanged; benchmarks/trico_exposure_statistics.py: each
statistic scales with the exposure, so a gain to the clean image's own statistic undoes a pure exposure cut."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _benchmarks import load_benchmark

oracle = load_benchmark("trico_exposure_oracle")
stats = load_benchmark("trico_exposure_statistics")


def test_srgb_round_trip_and_exposure_correction():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 16, 16, generator=g) * 0.6
    assert torch.allclose(oracle.linear_to_srgb(oracle.srgb_to_linear(target)), target, atol=1e-6)
    dark = oracle.linear_to_srgb(oracle.srgb_to_linear(target) * 0.25)  # two stops under, no clipping
    fixed = oracle.exposure_corrected(dark, target)
    assert torch.allclose(oracle.srgb_to_linear(fixed).mean(), oracle.srgb_to_linear(target).mean(), rtol=1e-5)
    assert torch.allclose(fixed, target, atol=1e-5)  # a pure exposure error is removed entirely
    assert torch.allclose(oracle.exposure_corrected(target, target), target, atol=1e-6)


def test_exposure_statistics_undo_a_pure_exposure_cut():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 32, 32, generator=g) * 0.8
    lin = stats.srgb_to_linear(target)
    dark = stats.linear_to_srgb(lin * 2.0 ** -3)  # three stops under
    mean = float(stats.statistic(target, None))
    assert abs(mean - float(stats.luminance(lin).mean())) < 1e-6
    assert abs(float(stats.statistic(dark, None)) - mean / 8) < 1e-5
    for q, pool in ((None, 1), (0.999, 1), (0.99, 2)):  # a gain to the clean image's own statistic undoes the cut
        restored = stats.gain_bicubic(dark, q, pool, float(stats.statistic(target, q, pool)), scale=1)
        assert torch.allclose(restored, target, atol=1e-4)
    assert float(stats.statistic(target, 0.999)) > float(stats.statistic(target, 0.5))


anchor = load_benchmark("trico_exposure_anchor")


def test_exposure_anchoring_interpolates_between_own_and_anchor_exposure():
    g = torch.Generator().manual_seed(2)
    y = anchor.linear_to_srgb(torch.rand(2, 3, 16, 16, generator=g) * 0.3)  # no clipping at any a below
    own = anchor.luminance(anchor.srgb_to_linear(y)).mean(dim=(-2, -1)).flatten()
    assert torch.equal(anchor.anchored(y, 0.0), y)
    for a in (0.5, 1.0):
        out = anchor.luminance(anchor.srgb_to_linear(anchor.anchored(y, a, anchor=0.2))).mean(dim=(-2, -1)).flatten()
        assert torch.allclose(out, 0.2 ** a * own ** (1 - a), rtol=1e-4)
    try:
        anchor.anchored(y, 1.5)
    except ValueError as e:
        assert "[0, 1]" in str(e)
    else:
        raise AssertionError("a = 1.5 was accepted")


def test_exposure_anchor_sets_and_table():
    sets = anchor.evaluation_sets({"data": {"holdout": ["motorcycle_right"], "more_photos": ["camera"]}})
    assert list(sets) == ["train photos", "val", *anchor.REPORT_SETS]
    assert len(sets["val"]) * 6 == len(sets["train photos"])  # six training photos (five + camera), same exposures
    results = {"m": {s: {0.0: 20.0, 1.0: 21.5} for s in sets}}
    table = anchor.markdown(results).splitlines()
    assert table[0].startswith("| model | a | train photos | val | test seen")
    assert table[3] == "| m | 1 | " + " | ".join(["21.50"] * len(sets)) + " |"


def test_docs_exposure_anchor_table_matches_its_json():
    """docs/trico.md's anchoring table: each cell is the mean over seeds 0-2 in docs/results/exposure_anchor."""
    import json

    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "docs" / "results" / "exposure_anchor" / "anchor.json").read_text())
    sets = ["train photos", "val", *anchor.REPORT_SETS]
    text = (root / "docs" / "trico.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| TriCo | ", "| naive | "))]
    checked = 0
    for line in rows:
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        variant = {"TriCo": "trico", "naive": "naive"}[cells[0]]
        a = cells[1].split()[0]
        if a not in ("0", "0.5", "1"):
            continue
        for name, shown in zip(sets, cells[2:], strict=True):
            mean = sum(data[f"{variant}_s{s}"][name][str(float(a))] for s in range(3)) / 3
            assert float(shown) == pytest.approx(mean, abs=0.006), (line, name)
            checked += 1
    assert checked == 2 * 3 * len(sets)


rules = load_benchmark("trico_selection_rules")


def test_selection_rules_choose_and_docs_table_matches_the_json():
    rows = [{"step": 50, "psnr": 20.0, "psnr_exposure": 22.0, "ssim": 0.5},
            {"step": 100, "psnr": 21.0, "psnr_exposure": 21.5, "ssim": 0.5}]
    assert rules.choose(rows, "psnr")["step"] == 100 and rules.choose(rows, "psnr_exposure")["step"] == 50
    assert rules.choose(rows, "ssim")["step"] == 100  # a tie goes to the later step, as `select`
    import json

    root = Path(__file__).resolve().parents[1]
    results = {}
    for variant in ("trico", "naive"):
        results.update(json.loads((root / "docs" / "results" / "selection_rules" / f"{variant}.json").read_text()))
    assert len(results) == 10
    expected = [line for line in rules.summary(results).splitlines()[2:]]
    text = (root / "docs" / "trico.md").read_text()
    for line in expected:
        assert line in text, line
