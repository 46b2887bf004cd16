"""The second restoration example (examples/denoise_deblur): data, restorer, nested problem, baselines, demo."""

import math

import numpy as np
import pytest
import torch

import hyperlevel as hl
from examples.denoise_deblur import baselines, demo
from examples.denoise_deblur.degrade import KSIZE, SOURCES, BlurNoise, blur, photo
from examples.denoise_deblur.model import Restorer
from examples.denoise_deblur.problem import Settings, build
from examples.restoration.checkpoint import load_model

TINY = Settings(patch=24, batch=2, train_samples=8, val_samples=4, warmup_steps=1, bilevel_steps=1, width=8, depth=3)


def kernel(seed):
    return BlurNoise().sample(torch.Generator().manual_seed(seed))["kernel"][0]


def test_kernels_are_normalised_and_degradations_are_seeded():
    kinds = set()
    for seed in range(8):
        drawn = BlurNoise().sample(torch.Generator().manual_seed(seed))
        k = drawn["kernel"]
        kinds.add(drawn["kind"])
        assert k.shape == (1, KSIZE, KSIZE) and math.isclose(float(k.sum()), 1.0, rel_tol=1e-5) and k.min() >= 0
    assert kinds == {"gauss", "motion"}
    ds = SOURCES.build("photos", "train", n=4, size=24, seed=1)
    assert torch.equal(ds[(2, 5)]["input"], ds[(2, 5)]["input"])
    assert not torch.equal(ds[(2, 5)]["input"], ds[(2, 6)]["input"])
    test = SOURCES.build("photos", "test", n=3, size=32, seed=7, centre=True)
    assert [test[i]["name"].split("#")[0] for i in range(3)] == ["camera", "stereo_motorcycle", "brick"]


def test_blur_is_a_true_convolution():
    x = torch.zeros(1, 1, 21, 21)
    x[..., 10, 10] = 1.0
    k = torch.arange(float(KSIZE * KSIZE)).view(1, 1, KSIZE, KSIZE)
    assert torch.equal(blur(x, k)[0, 0, 3:18, 3:18], k[0, 0])  # the impulse response is the kernel itself


def test_problem_builds_and_one_bilevel_step_changes_both_levels():
    problem, phases, net, weights = build(TINY)
    assert problem.names == ["weights", "restorer"]
    assert [p.outer for p in phases] == [[], ["weights"]] and phases[1].inner == ["restorer"]
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    w_before = weights.values().detach().clone()
    summary = hl.Engine(problem, [phases[1]]).run()
    assert summary.status == "finished"
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert set(changed) == set(before)  # every restorer tensor moved, the Wiener regulariser included
    assert not torch.equal(weights.values(), w_before)


def test_wiener_layer_undoes_a_noise_free_blur():
    clean = photo("camera")[None, :, 200:264, 200:264]
    k = kernel(0)
    y = blur(clean, k[None, None])
    net = Restorer(8, 3)
    with torch.no_grad():
        net.reg.copy_(torch.tensor([0.0, 2.0, -3.0]))  # lambda = sigma^2
        x = net.wiener(y, k[None, None], torch.tensor([1e-3]))
    assert float(((x - clean) ** 2).mean()) < 0.2 * float(((y - clean) ** 2).mean())


@pytest.mark.parametrize("method", ["wiener", "tv+rl"])
def test_baseline_beats_the_degraded_input(method):
    clean = photo("camera")[0, 180:260, 180:260].double().numpy()
    yy, xx = np.mgrid[-7:8, -7:8]
    k = np.exp(-(xx**2 + yy**2) / (2 * 1.5**2))
    k /= k.sum()
    y = blur(torch.tensor(clean)[None, None], torch.tensor(k)[None, None])[0, 0].numpy()
    y = y + 0.01 * np.random.default_rng(0).standard_normal(y.shape)
    out = baselines.available()[method](y, k, 0.01)
    psnr = lambda a: 10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - clean) ** 2))  # noqa: E731
    assert psnr(out) > psnr(y) + 1.0


def test_demo_evaluation_on_tiny_sizes_is_finite(tmp_path):
    results = demo.main(tmp_path, TINY, crop=32, per_photo=1, methods=["wiener", "tv+rl"])
    assert set(results) == {"input", "wiener", "tv+rl", "ours"}
    for r in results.values():
        for metric in ("psnr", "ssim"):
            assert math.isfinite(r["report"]["metrics"][metric]["mean"])
        assert len(r["report"]["per_image"]) == 3
    text = (tmp_path / "report.md").read_text()
    assert "| ours |" in text and "| wiener |" in text
    assert (tmp_path / "figure.png").stat().st_size > 0
    net, config = load_model(tmp_path / "restorer.pt")
    case = demo.test_cases(32, 1)[0]
    with torch.no_grad():
        again = net(case["input"][None], case["kernel"][None], case["sigma"])[0].clamp(0, 1)
    assert config == {"width": 8, "depth": 3} and torch.equal(again, results["ours"]["outputs"][0])
