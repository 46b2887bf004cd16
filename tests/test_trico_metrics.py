"""Tests of the TriCo metrics and evaluation: hand values, skimage agreement, skips, conventions."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from examples.trico import evaluate as ev
from examples.trico.metrics import LPIPSAlex, MetricConventions, evaluate_pairs, format_report, prepare


def _pair(seed=0, shape=(3, 40, 52)):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g)
    p = (t + 0.08 * torch.randn(shape, generator=g)).clamp(0, 1)
    return p, t


def _u8(x):
    return (x.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)


def test_psnr_rmse_hand_values():
    t = torch.zeros(3, 8, 8)
    p = torch.full((3, 8, 8), 51 / 255)  # error 0.2 everywhere
    r = evaluate_pairs([p], [t], metric_names=["psnr", "rmse"])
    assert r["metrics"]["psnr"]["mean"] == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-6)
    assert r["metrics"]["rmse"]["mean"] == pytest.approx(0.2, abs=1e-7)
    assert r["metrics"]["psnr"]["count"] == 1
    same = evaluate_pairs([t], [t], metric_names=["psnr"])
    assert same["metrics"]["psnr"]["mean"] == pytest.approx(100.0)  # documented cap, not inf


def test_psnr_ssim_match_skimage_uint8_rgb():
    p, t = _pair()
    r = evaluate_pairs([p], [t], metric_names=["psnr", "ssim", "rmse", "fsim"])
    a, b = _u8(p), _u8(t)
    assert r["metrics"]["psnr"]["mean"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-6)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255, channel_axis=-1)
    assert r["metrics"]["ssim"]["mean"] == pytest.approx(ref, abs=1e-6)
    rmse = np.sqrt(((a.astype(float) - b.astype(float)) ** 2).mean()) / 255
    assert r["metrics"]["rmse"]["mean"] == pytest.approx(rmse, abs=1e-9)
    assert 0.5 < r["metrics"]["fsim"]["mean"] < 1.0


def test_quantisation_and_y_and_border_conventions():
    x = torch.full((1, 3, 6, 6), 0.5011)
    assert prepare(x, MetricConventions())[0, 0, 0, 0].item() == pytest.approx(128 / 255)
    assert prepare(x, MetricConventions(quantize_uint8=False))[0, 0, 0, 0].item() == pytest.approx(0.5011)
    white = prepare(torch.ones(1, 3, 6, 6), MetricConventions(color="y", crop_border=1))
    assert white.shape == (1, 1, 4, 4) and white[0, 0, 0, 0].item() == pytest.approx(235 / 255)
    p, t = _pair(1)
    y = evaluate_pairs([p], [t], MetricConventions(color="y"), metric_names=["psnr"])
    ref = peak_signal_noise_ratio(prepare(t, MetricConventions(color="y")).numpy(),
                                  prepare(p, MetricConventions(color="y")).numpy(), data_range=1.0)
    assert y["metrics"]["psnr"]["mean"] == pytest.approx(ref, abs=1e-6)
    assert "Y (BT.601" in y["conventions_text"]


def test_skips_are_explicit_and_conventions_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    p, t = _pair()
    r = evaluate_pairs([p], [t])
    for name in ("lpips", "metaiqa"):
        assert name in r["skipped"] and name not in r["metrics"] and len(r["skipped"][name]) > 20
    # NIQE and BRISQUE run from the installed packages' parameters (issue 11); NIQE needs > 192 px
    assert r["metrics"]["brisque"]["count"] == 1 and "niqe" in r["metrics"] and "niqe" not in r["skipped"]
    assert "--lpips-weights" in r["skipped"]["lpips"]
    assert r["conventions"] == MetricConventions().to_dict()
    assert r["conventions"]["color"] == "rgb" and r["conventions"]["crop_border"] == 0
    text = format_report(r)
    assert text.startswith("metric conventions: RGB") and "AlexNet" in text and "SKIPPED" in text


def test_lpips_code_path_with_local_files(tmp_path):
    """With (random, locally saved) weight files LPIPS runs: 0 for identical images, > 0 otherwise."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(lin, tmp_path / "alex.pth")
    p, t = _pair(shape=(3, 64, 64))
    r = evaluate_pairs([p, t], [t, t], metric_names=["lpips"],
                       weight_paths={"lpips": tmp_path / "alex.pth", "lpips_backbone": tmp_path / "alexnet.pth"},
                       include_per_image=True)
    assert r["skipped"] == {} and r["metrics"]["lpips"]["count"] == 2
    assert r["per_image"][0]["lpips"] > 0 and r["per_image"][1]["lpips"] == pytest.approx(0.0, abs=1e-7)
    assert isinstance(LPIPSAlex, type)


def test_evaluate_cli_baseline_json(capsys):
    parser = ev.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--baseline", "brightened_bicubic", "--data", "embedded", "--scale", "4", "--json",
                              "--metrics", "psnr", "ssim", "lpips", "--no-progress"])
    assert ev.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["conventions"]["color"] == "rgb" and "conventions_text" in out
    # every evaluation of synthetic data reports the seen and the unseen degradation
    assert list(out["degradations"]) == ["seen", "unseen"]
    for deg, block in out["degradations"].items():
        rep = block["methods"]["brightened_bicubic"]
        assert block["num_images"] == 6 and rep["num_images"] == 6 and "lpips" in rep["skipped"]
        bic = ev.evaluate_baseline("bicubic", ev.build_eval_dataset("embedded", scale=4, degradation=deg), 4,
                                   metric_names=["psnr"], progress=False)
        # brightening a 2.5..4.5-stop dark input must help PSNR over plain bicubic
        assert rep["metrics"]["psnr"]["mean"] > bic["metrics"]["psnr"]["mean"] + 2.0


def test_evaluate_model_runs_full_images():
    class Up(torch.nn.Module):
        def forward(self, x):
            return ev.bicubic_baseline(x, 2)

    ds = ev.build_eval_dataset("embedded", scale=2)
    r = ev.evaluate_model(Up(), ds, metric_names=["psnr", "rmse"], progress=False)
    b = ev.evaluate_baseline(ev.bicubic_baseline, ds, 2, metric_names=["psnr", "rmse"], progress=False)
    assert r["metrics"]["psnr"]["mean"] == pytest.approx(b["metrics"]["psnr"]["mean"])
    assert r["metrics"]["psnr"]["count"] == 6
