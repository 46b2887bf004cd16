"""Baselines of the TriCo example (examples/trico/baselines.py, zero_dce.py) and the two-degradation evaluation."""

from __future__ import annotations

import argparse
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from examples.trico import evaluate as ev
from examples.trico.baselines import (
    BASELINES,
    MID_GREY,
    bicubic_baseline,
    clahe_bicubic_baseline,
    linear_gain,
    linear_gain_bicubic_baseline,
)
from examples.trico.data.degradations import linear_to_srgb, srgb_to_linear
from examples.trico.zero_dce import ZeroDCEUnavailable, load_zero_dce, weights_path, zero_dce

torch.set_num_threads(1)


def test_linear_gain_sets_mean_linear_luminance_to_mid_grey():
    x = torch.full((1, 3, 6, 6), 0.1)  # a flat dark grey: its luminance is its linear value
    y = linear_gain(x)
    assert torch.allclose(y, torch.full_like(y, float(linear_to_srgb(torch.tensor(MID_GREY)))), atol=1e-6)
    # a coloured, textured image: the luminance-weighted linear mean is 0.18 after the gain (no clipping here)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g) * 0.2
    lin = srgb_to_linear(linear_gain(x))
    lum = (lin * torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1)).sum(1).mean((1, 2))
    assert torch.allclose(lum, torch.full((2,), MID_GREY), atol=1e-5)
    bright = torch.full((1, 3, 4, 4), 0.8)  # already brighter than mid-grey: the gain is clipped at 1
    assert torch.allclose(linear_gain(bright), bright, atol=1e-6)
    assert linear_gain_bicubic_baseline(x, 2).shape == (2, 3, 16, 16)


def test_clahe_bicubic_is_skimage_then_bicubic():
    from skimage.exposure import equalize_adapthist

    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 16, 20, generator=g) * 0.1
    ref = equalize_adapthist(x[0].permute(1, 2, 0).double().numpy(), clip_limit=0.01)
    expected = bicubic_baseline(torch.from_numpy(ref).permute(2, 0, 1)[None].float(), 2)
    assert torch.allclose(clahe_bicubic_baseline(x, 2), expected, atol=1e-6)


def test_zero_dce_loads_strictly_and_matches_the_packages_own_inference(monkeypatch):
    model = load_zero_dce("cpu")
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state_dict"]
    assert set(model.state_dict()) == set(state)
    assert sum(p.numel() for p in model.parameters()) == 79_416
    # the package's EnhanceModel (its inference path) imports cv2 for video I/O only: stand in for it
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    for name in [m for m in sys.modules if m == "neuro_low_light" or m.startswith("neuro_low_light.")]:
        monkeypatch.delitem(sys.modules, name)
    from neuro_low_light import EnhanceModel

    upstream = EnhanceModel(device="cpu")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 24, 32, generator=g) * 0.3
    with torch.no_grad():
        expected = upstream.model(x)[0].clamp(0, 1)
    assert torch.equal(zero_dce(x), expected)
    assert float(zero_dce(x).mean()) > float(x.mean()) + 0.05  # it brightens a dark image
    both = BASELINES["zero_dce_bicubic"](x, 2), BASELINES["bicubic_zero_dce"](x, 2)
    assert both[0].shape == both[1].shape == (2, 3, 48, 64) and not torch.equal(*both)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(2):
        base = rng.integers(40, 220, (1, 1, 3))
        img = np.clip(base + rng.normal(0, 25, (32, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


def test_evaluate_methods_on_both_degradations_of_folder_photos(photos):
    datasets = ev.build_eval_datasets(f"folder:{photos}", scale=2)
    assert list(datasets) == ["seen", "unseen"]
    seen, unseen = datasets["seen"][0], datasets["unseen"][0]
    assert torch.equal(seen["target"], unseen["target"]) and not torch.equal(seen["input"], unseen["input"])
    assert torch.equal(datasets["seen"][1]["input"], ev.build_eval_dataset(f"folder:{photos}")[1]["input"])

    def missing(x):
        raise ZeroDCEUnavailable("not installed here")

    methods = {"bicubic": ev.baseline_method("bicubic", 2),
               "linear_gain_bicubic": ev.baseline_method("linear_gain_bicubic", 2), "zdce": missing}
    res = ev.evaluate_methods(methods, datasets, metric_names=["psnr", "ssim"], progress=False)
    for deg in ("seen", "unseen"):
        assert res[deg]["zdce"] == {"unavailable": "not installed here"}
        bic, gain = res[deg]["bicubic"]["metrics"], res[deg]["linear_gain_bicubic"]["metrics"]
        assert bic["psnr"]["count"] == 2 and gain["psnr"]["mean"] > bic["psnr"]["mean"] + 3.0
        assert ev.losses_against(res[deg], "bicubic") == {"linear_gain_bicubic": ["psnr", "ssim"]}
    table = ev.comparison_table(res["seen"])
    assert "| linear gain (mid-grey) + bicubic | **" in table and "not run: not installed here" in table


def test_evaluate_cli_compares_checkpoints_and_baselines(photos, tmp_path, capsys):
    from examples.trico import build_model
    from examples.trico.checkpoint import save_model

    torch.manual_seed(0)
    small = {"ir_width": 4, "fr_widths": [8, 8, 8], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 0, 0],
             "refine_blocks": 1, "hr_blocks": 0, "heads": [1, 1, 1]}
    ckpt = tmp_path / "a.pt"
    save_model(ckpt, build_model(2, **small))
    parser = ev.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--checkpoint", str(ckpt), "--compare", f"other={ckpt}", "--data", f"folder:{photos}",
                              "--baselines", "bicubic,clahe_bicubic", "--metrics", "psnr", "--json",
                              "--no-progress"])
    assert ev.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    for deg in ("seen", "unseen"):
        rows = out["degradations"][deg]["methods"]
        assert list(rows) == ["trico", "other", "bicubic", "clahe_bicubic"]
        assert rows["trico"]["metrics"]["psnr"]["mean"] == rows["other"]["metrics"]["psnr"]["mean"]
    bad = parser.parse_args(["--checkpoint", str(ckpt), "--compare", "naive", "--data", f"folder:{photos}"])
    assert ev.run(bad) == 2 and "NAME=CHECKPOINT" in capsys.readouterr().err
