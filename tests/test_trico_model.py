"""Tests of the TriCo network (examples/trico/model): shapes, LII constraints, gradients, SAM adapter, A2U,
functional_call, checkpoints and the size budget."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from examples.trico import build_model
from examples.trico.checkpoint import load_model, save_model
from examples.trico.data.degradations import linear_to_srgb, srgb_to_linear
from examples.trico.model.network import MAX_EXPOSURE_GAIN
from examples.trico.model.semantic import SamEncoder, SemanticCheckpointError
from examples.trico.model.upsample import A2U, PixelShuffleUpsampler

torch.set_num_threads(1)

SMALL = {
    "ir_width": 4,
    "fr_widths": [8, 8, 8],
    "enc_blocks": [1, 1, 1],
    "dec_blocks": [1, 0, 0],
    "refine_blocks": 1,
    "hr_blocks": 1,
    "heads": [2, 2, 1],
    "encoder_size": 64,
}


def small(scale=2, semantic="none", **kw):
    torch.manual_seed(0)
    return build_model(scale, semantic, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def sam_model():
    return small(semantic="sam_vit_b")


@pytest.fixture(scope="module")
def sam_file(tmp_path_factory, sam_model):
    """A real-format SAM ViT-B checkpoint (random weights, official ``image_encoder.`` key prefix)."""
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    state = {f"image_encoder.{k}": v for k, v in sam_model.semantic.encoder.state_dict().items()}
    state["mask_decoder.dummy"] = torch.zeros(1)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (9, 5)])
def test_shapes(scale, hw):
    h, w = hw
    out = small(scale)(torch.rand(2, 3, h, w))
    assert out.y.shape == (2, 3, scale * h, scale * w)
    for t in (out.u, out.v, out.alpha, out.beta):
        assert t.shape == (2, 3, h, w)


def test_pixelshuffle_upsampler_and_shapes():
    out = small(4, upsampler="pixelshuffle")(torch.rand(1, 3, 11, 13))
    assert out.y.shape == (1, 3, 44, 52)


def test_illumination_constraints():
    x = torch.rand(2, 3, 21, 18) ** 3  # dark
    x[0, :, :4, :4] = 0.0
    x[1, :, -3:, -3:] = 1.0
    out = small()(x)
    # N_ir sees the auto-exposed input: one gain per image in linear light
    x = linear_to_srgb(srgb_to_linear(x) * out.exposure_gain)
    torch.testing.assert_close(out.alpha + out.beta, torch.ones_like(out.alpha))
    assert (out.alpha >= 0).all() and (out.alpha <= 1).all()
    assert (out.u >= x - 1e-6).all() and (out.u <= 1 + 1e-6).all()
    assert (out.v >= 0).all() and (out.v <= 1 + 1e-6).all() and torch.isfinite(out.v).all()
    torch.testing.assert_close(out.u, out.alpha * x + out.beta)


def test_auto_exposure_sets_the_mean_linear_luminance_and_can_be_overridden_or_disabled():
    x = torch.rand(2, 3, 16, 16) * 0.1
    model = small()
    gain = model.exposure_gain(x)
    lin = srgb_to_linear(x) * gain
    lum = (0.2126 * lin[:, 0] + 0.7152 * lin[:, 1] + 0.0722 * lin[:, 2]).mean(dim=(-2, -1))
    torch.testing.assert_close(lum, torch.full((2,), 0.18), atol=2e-3, rtol=0)  # small clipping at 1
    assert torch.equal(model.exposure_gain(torch.ones(1, 3, 8, 8)), torch.ones(1, 1, 1, 1))  # never darkens
    assert model.exposure_gain(torch.zeros(1, 3, 8, 8)).item() == MAX_EXPOSURE_GAIN
    fixed = model(x, gain=torch.full((2, 1, 1, 1), 3.0))
    assert torch.equal(fixed.exposure_gain, torch.full((2, 1, 1, 1), 3.0))
    off = small(auto_exposure=None)
    assert torch.equal(off.exposure_gain(x), torch.ones(2, 1, 1, 1))
    with pytest.raises(ValueError, match="auto_exposure"):
        small(auto_exposure=1.5)


def test_gradients_reach_every_trainable_parameter_and_not_the_encoder(sam_model):
    model = sam_model.train()
    assert not model.semantic.encoder.training
    model.zero_grad(set_to_none=True)
    out = model(torch.rand(1, 3, 20, 24))
    (out.y.square().mean() + out.u.mean()).backward()
    names = dict(model.named_trainable_parameters())
    assert len(names) == len(list(model.trainable_parameters()))
    missing = [n for n, p in names.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    enc = list(model.semantic.parameters())
    assert enc and all(not p.requires_grad and p.grad is None for p in enc)
    assert all(not n.startswith("semantic.") for n in names)
    groups = model.parameter_groups()
    assert set(groups["illumination"]) | set(groups["refinement"]) == set(names)
    assert all(n.startswith("illumination.") for n in groups["illumination"])
    model.zero_grad(set_to_none=True)
    model.eval()


def test_sam_adapter_features_at_decoder_scales(sam_model):
    enc = sam_model.semantic
    assert isinstance(enc.encoder, torch.nn.Module) and enc.block_indexes == (5, 8, 11)
    assert sum(p.numel() for p in enc.parameters()) > 85_000_000  # the real ViT-B (without the neck)
    v = torch.rand(2, 3, 24, 32)
    feats = enc(v)
    assert [f.shape for f in feats] == [(2, 768, 4, 4)] * 3
    sizes = [(6, 8), (12, 16), (24, 32)]  # 1/4, 1/2, 1 of the decoder input
    feats = enc(v, sizes)
    assert [tuple(f.shape[-2:]) for f in feats] == sizes and all(f.shape[1] == 768 for f in feats)
    assert not any(f.requires_grad for f in feats)
    out = sam_model(torch.rand(1, 3, 24, 32))
    assert len(out.semantic_features) == 3


def test_sam_checkpoint_loading_and_errors(sam_file, sam_model, tmp_path):
    enc = SamEncoder("sam_vit_b", sam_file, encoder_size=64)
    v = torch.rand(1, 3, 32, 32)
    for a, b in zip(enc(v), sam_model.semantic(v)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(SemanticCheckpointError, match=r"does not match semantic='sam_vit_l'.*looks like sam_vit_b"):
        SamEncoder("sam_vit_l", sam_file, encoder_size=64)
    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 1280)}, bad)
    with pytest.raises(ValueError, match="does not match"):
        build_model(2, "sam_vit_b", checkpoint=str(bad), encoder_size=64)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read SAM checkpoint"):
        build_model(2, "sam_vit_b", checkpoint=str(junk))
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model(2, "sam_vit_b", checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="semantic='none'"):
        build_model(2, "none", checkpoint=str(sam_file))
    with pytest.raises(ValueError, match="unknown semantic"):
        build_model(2, "clip")


@pytest.mark.parametrize("scale", [2, 4])
def test_a2u_kernels_normalised_and_constant_preserved(scale):
    torch.manual_seed(0)
    up = A2U(6, scale)
    torch.nn.init.normal_(up.head.weight, std=3.0)  # make the kernels far from uniform
    x = torch.randn(2, 6, 7, 9)
    k = up.kernels(x)
    assert k.shape == (2, 9, scale * 7, scale * 9)
    torch.testing.assert_close(k.sum(1), torch.ones(2, scale * 7, scale * 9))
    assert k.max() > 0.5  # not uniform
    const = torch.full((2, 6, 7, 9), 0.3) + torch.arange(6).view(1, 6, 1, 1)
    y = up(const)
    assert y.shape == (2, 6, scale * 7, scale * 9)
    torch.testing.assert_close(y, torch.full_like(y, 0.3) + torch.arange(6).view(1, 6, 1, 1))
    assert PixelShuffleUpsampler(6, scale)(x).shape == (2, 6, scale * 7, scale * 9)


def test_bfloat16_inference():
    model = small().to(torch.bfloat16).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 19, 22, dtype=torch.bfloat16))
    assert out.y.dtype == torch.bfloat16 and out.y.shape == (1, 3, 38, 44)
    assert torch.isfinite(out.y.float()).all()


@pytest.mark.parametrize("semantic", ["none", "sam_vit_b"])
def test_functional_call(semantic, sam_model):
    from torch.func import functional_call, grad

    model = sam_model if semantic != "none" else small()
    model.eval()
    x = torch.rand(1, 3, 16, 20)
    params = {n: p.detach() for n, p in model.named_trainable_parameters()}
    enc_before = {n: p.clone() for n, p in model.named_parameters() if n.startswith("semantic.")}
    torch.testing.assert_close(functional_call(model, params, (x,)).y, model(x).y)
    shifted = {n: p + 0.01 * torch.randn_like(p) for n, p in params.items()}
    y_shift = functional_call(model, shifted, (x,)).y
    assert not torch.allclose(y_shift, model(x).y)
    # the same as loading the shifted weights into a copy
    twin = small(semantic=semantic) if semantic == "none" else model
    if semantic == "none":
        twin.load_state_dict(shifted, strict=False)
        torch.testing.assert_close(twin(x).y, y_shift)

    def loss(p):
        out = functional_call(model, p, (x,))
        return out.y.mean() + out.u.mean()

    g = grad(loss)(params)
    assert set(g) == set(params) and all(torch.isfinite(v).all() for v in g.values())
    nonzero = sum(bool(v.abs().sum() > 0) for v in g.values())
    assert nonzero == len(g)
    for n, p in model.named_parameters():  # the frozen encoder is untouched
        if n.startswith("semantic."):
            assert torch.equal(p, enc_before[n])


@pytest.mark.parametrize("semantic", ["none", "sam_vit_b"])
def test_save_load_round_trip(tmp_path, semantic):
    model = small(4, semantic).eval()
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ckpt.pt"
    save_model(path, model, extra={"step": 7})
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 7 and raw["model_config"] == model.config
    assert not any(k.startswith("semantic.") for k in raw["model"])
    loaded, config = load_model(path)
    assert config == model.config and config["scale"] == 4
    x = torch.rand(1, 3, 13, 15)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).y, model(x).y, rtol=0, atol=0)
    # a trainer's bigger dict with a full state dict (encoder included) also loads; a file written by plain
    # torch.save has no size/checksum record (save_model's stale record would rightly flag it as overwritten)
    path.with_name(path.name + ".sha256").unlink()
    torch.save({"model_config": model.config, "model": model.state_dict(), "optimizer": {}}, path)
    again, _ = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(again(x).y, model(x).y, rtol=0, atol=0)
    torch.save({"weights": 1}, path)
    with pytest.raises(ValueError, match="not a TriCo checkpoint"):
        load_model(path)


def test_config_rebuilds_and_rejects_unknown_options():
    model = small()
    assert build_model(**model.config).config == model.config
    json.dumps(model.config)
    with pytest.raises(TypeError, match="unknown TriCo options"):
        build_model(2, widht=3)


def test_profile_within_budget(capsys):
    from examples.trico import profile

    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    assert profile.run(parser.parse_args(["--scale", "2", "--size", "128", "--json", "--repeats", "1"])) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"params", "gflops", "gflops_semantic", "ms_per_image"}
    assert 1.0e6 < result["params"] <= 1.5e6
    assert 15.0 < result["gflops"] <= 21.0
    assert result["gflops_semantic"] == 0


def test_budget_with_sam_vit_b_branch():
    """The semantic branch of IHEM (trainable) still fits the budget; the frozen encoder is excluded."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = build_model(2, "sam_vit_b", encoder_size=32).eval()
    params = sum(p.numel() for p in model.trainable_parameters())
    assert params <= 1.5e6
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        with FlopCounterMode(display=False) as total:
            v = model(x).v
        with FlopCounterMode(display=False) as enc:
            model.semantic(v)
    assert (total.get_total_flops() - enc.get_total_flops()) / 2e9 <= 21.0


def test_without_ihem_ablation_has_no_modulators_and_keeps_shapes():
    import examples.trico as trico

    torch.manual_seed(0)
    small = dict(ir_width=4, fr_widths=[8, 8, 8], enc_blocks=[1, 1, 1], dec_blocks=[0, 0, 0], refine_blocks=1,
                 hr_blocks=0, heads=[1, 1, 1])
    with_ihem = trico.build_model(scale=2, **small)
    without = trico.build_model(scale=2, ihem=False, **small)
    assert not any("ihem" in n for n, _ in without.named_parameters())
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in with_ihem.parameters())
    x = torch.rand(1, 3, 12, 16)
    assert without(x).y.shape == (1, 3, 24, 32)
    assert without.config["ihem"] is False
    rebuilt = trico.build_model(**without.config)
    assert not any("ihem" in n for n, _ in rebuilt.named_parameters())


def test_residual_base_input_starts_from_global_gain_plus_bicubic():
    """With a silent tail the output is exactly the bicubically upsampled auto-exposed input."""
    import torch.nn.functional as F

    model = small()
    for p in model.refinement.tail.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 16, 16) * 0.1
    with torch.no_grad():
        out = model(x)
    exposed = linear_to_srgb(srgb_to_linear(x) * out.exposure_gain)
    expected = F.interpolate(exposed, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(out.y, expected)
    legacy = small(residual_base="reflectance")
    for p in legacy.refinement.tail.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        out = legacy(x)
    torch.testing.assert_close(out.y, F.interpolate(out.v, scale_factor=2, mode="bilinear", align_corners=False))
    with pytest.raises(ValueError, match="residual_base"):
        small(residual_base="noise")
