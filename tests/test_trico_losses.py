"""Tests of the TriCo candidate losses: hand-checked values, VGG weight handling, double backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from examples.trico.losses import (
    LOSS_NAMES,
    CandidateLosses,
    PerceptualWeightsMissing,
    VGG19Features,
    l1_loss,
    luminance_loss,
    ssim_loss,
    tv_loss,
)


@pytest.fixture(scope="module")
def losses():
    with pytest.warns(UserWarning, match="RANDOM"):
        torch.manual_seed(0)
        return CandidateLosses(allow_random_init=True, vgg_weights="/nonexistent/vgg19.pth")


def test_luminance_hand_value():
    v = torch.full((2, 3, 4, 4), 0.5)
    targets = [0.485 + 0.229, 0.456 + 0.224, 0.406 + 0.225]
    expected = sum(math.exp(abs(0.5 - t)) - 1 for t in targets) / 3
    assert luminance_loss(v).item() == pytest.approx(expected, rel=1e-6)
    # spatial mean per channel, not per pixel: a half-0/half-1 image has mean 0.5 as well
    w = torch.zeros(1, 3, 4, 4)
    w[..., 2:] = 1.0
    assert luminance_loss(w).item() == pytest.approx(expected, rel=1e-6)
    one = torch.full((1, 1, 3, 3), 0.7)  # one-channel illumination map vs the three targets
    expected_one = sum(math.exp(abs(0.7 - t)) - 1 for t in targets) / 3
    assert luminance_loss(one).item() == pytest.approx(expected_one, rel=1e-5)


def test_l1_tv_ssim_hand_values():
    y = torch.tensor([[[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]]])  # (1, 1, 2, 3)
    t = torch.zeros_like(y)
    assert l1_loss(y, t).item() == pytest.approx(4 / 6)
    # horizontal |diffs|: row0 1,1 row1 0,0 -> mean 0.5; vertical: 1,0,1 -> mean 2/3
    assert tv_loss(y).item() == pytest.approx(0.5 + 2 / 3)
    a = torch.full((1, 3, 16, 16), 0.2, dtype=torch.float64)
    b = torch.full((1, 3, 16, 16), 0.6, dtype=torch.float64)
    c1 = 0.01**2
    expected = 1 - (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)  # flat images: only the luminance term
    assert ssim_loss(a, b).item() == pytest.approx(expected, rel=1e-9)
    assert ssim_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = structural_similarity(x[0].numpy(), y[0].numpy(), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0, channel_axis=0)
    assert 1 - ssim_loss(x, y).item() == pytest.approx(ref, abs=1e-6)


def test_perceptual_without_weights_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("TRICO_VGG19_WEIGHTS", raising=False)
    with pytest.raises(PerceptualWeightsMissing) as err:
        CandidateLosses()
    msg = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in msg and str(tmp_path) in msg and "allow_random_init" in msg
    assert "TRICO_VGG19_WEIGHTS" in msg


def test_perceptual_loads_local_file(tmp_path):
    from torchvision.models import vgg19

    torch.manual_seed(3)

    model = vgg19(weights=None)
    torch.save(model.state_dict(), tmp_path / "vgg19.pth")
    feats = VGG19Features(tmp_path / "vgg19.pth")
    assert feats.source.endswith("vgg19.pth")
    assert torch.equal(feats.features[0].weight, model.features[0].weight)
    assert not any(p.requires_grad for p in feats.parameters()) and not feats.training
    x = torch.rand(1, 3, 32, 32)
    outs = feats(x)
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512, 512]
    expected = model.features[:2]((x - feats.mean) / feats.std)
    assert torch.allclose(outs[0], expected, atol=1e-6)


def test_candidate_dict_order_and_values(losses):
    torch.manual_seed(0)
    y = torch.rand(2, 3, 24, 24)
    t = torch.rand(2, 3, 24, 24)
    d = losses(y, t)
    assert tuple(d) == LOSS_NAMES
    assert all(v.dim() == 0 and torch.isfinite(v) for v in d.values())
    assert d["l1"].item() == pytest.approx((y - t).abs().mean().item())
    assert losses(t, t)["perceptual"].item() == 0.0 and losses(t, t)["ssim"].item() == pytest.approx(0, abs=1e-6)
    assert losses.stacked(y, t).shape == (5,)


def test_double_backward_each_loss_under_functional_call(losses):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Sigmoid())
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    x = torch.rand(2, 3, 20, 20)
    t = torch.rand(2, 3, 20, 20)
    for name in LOSS_NAMES:
        y = functional_call(net, params, (x,))
        loss = losses(y, t)[name]
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        vec = [torch.randn_like(g) for g in grads]
        gv = sum((g * v).sum() for g, v in zip(grads, vec))
        hvp = torch.autograd.grad(gv, list(params.values()))
        assert all(torch.isfinite(h).all() for h in hvp)
        assert sum(h.abs().sum() for h in hvp) > 0, name


def test_candidate_subset_builds_no_vgg_and_weights_follow_it():
    from examples.trico.config import ConfigError, load_config
    from examples.trico.losses import CandidateLosses
    from examples.trico.problem import build_setup

    torch.manual_seed(0)
    y, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    full = CandidateLosses(allow_random_init=True)
    part = CandidateLosses(names=["tv", "l1"])
    assert part.vgg is None and part.vgg_source == "not used" and part.names == ("l1", "tv")
    got, ref = part(y, target), full(y, target)
    assert list(got) == ["l1", "tv"] and all(torch.equal(got[n], ref[n]) for n in got)
    with pytest.raises(ValueError, match="subset"):
        CandidateLosses(names=["l1", "sharpness"])
    with pytest.raises(ConfigError, match="losses.candidates"):
        load_config("demo", ["losses.candidates=[l1, l1]"])
    config = load_config("demo", ["losses.candidates=[luminance, l1, ssim, tv]", "data.samples_per_epoch=12", "data.batch_size=2",
                                  "model.widths={ir_width: 4, fr_widths: [4, 8, 8], enc_blocks: [1, 1, 1], "
                                  "dec_blocks: [0, 1, 1], refine_blocks: 1, hr_blocks: 1, heads: [1, 1, 1]}"])
    setup = build_setup(config)
    assert setup.loss_weights.names == ["luminance", "l1", "ssim", "tv"]
