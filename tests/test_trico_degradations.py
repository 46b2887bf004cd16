"""The seen (training) and unseen (evaluation-only) degradation models."""

import pytest
import torch

from examples.trico.config import ConfigError, config_from_dict
from examples.trico.data import embedded_dataset
from examples.trico.data.degradations import (
    CameraDegradation,
    UnseenDegradation,
    build_degradation,
    degrade_with,
    linear_to_srgb,
    resize_down,
    srgb_to_linear,
)


def _photo(seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size, generator=g)


def test_same_seed_same_sample_and_different_seed_differs():
    hr = _photo()
    model = CameraDegradation()
    a, da = degrade_with(model, hr, 2, 3.0, torch.Generator().manual_seed(7))
    b, db = degrade_with(model, hr, 2, 3.0, torch.Generator().manual_seed(7))
    c, _ = degrade_with(model, hr, 2, 3.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and da == db
    assert not torch.equal(a, c)
    assert a.shape == (3, 16, 16)


def test_noise_free_camera_model_is_the_exposure_cut_in_linear_light():
    """With no noise, the sRGB curve, no JPEG and a box kernel the model is exactly linear-light averaging,
    an exposure cut by 2**-ev and the sRGB OETF (checked without quantisation)."""
    hr = torch.full((3, 8, 8), 0.5)
    model = CameraDegradation(full_well_range=(1e12, 1e12), read_noise_range=(1e-12, 1e-12), kernels=("area",),
                              tone_curves=("srgb",), jpeg_prob=0.0, quantize=False)
    out, drawn = degrade_with(model, hr, 2, 2.0, torch.Generator().manual_seed(0))
    expected = linear_to_srgb(srgb_to_linear(torch.tensor(0.5)) / 4.0)
    assert drawn["jpeg_quality"] is None
    assert torch.allclose(out, expected.expand(3, 4, 4), atol=1e-5)


def test_every_kernel_preserves_a_flat_image_and_shape():
    flat = torch.full((3, 16, 16), 0.3)
    for kernel in ("bicubic", "bilinear", "area", "gaussian"):
        out = resize_down(flat, 4, kernel, 0.5)
        assert out.shape == (3, 4, 4)
        assert torch.allclose(out, flat[:, :4, :4], atol=1e-5), kernel


def test_brighter_exposure_means_brighter_output_for_both_models():
    hr = _photo(1)
    for model in (CameraDegradation(jpeg_prob=0.0), UnseenDegradation()):
        means = [degrade_with(model, hr, 2, ev, torch.Generator().manual_seed(3))[0].mean().item()
                 for ev in (2.0, 3.5, 5.0)]
        assert means[0] > means[1] > means[2], (type(model).__name__, means)


def test_unseen_noise_is_spatially_correlated_unlike_the_seen_noise():
    """Demosaiced Bayer noise correlates neighbouring pixels; the seen model's per-pixel noise does not."""
    flat = torch.full((3, 128, 128), 0.5)

    def neighbour_correlation(model):
        clean_model_out = []
        for seed in (0, 1):
            out, _ = degrade_with(model, flat, 1, 2.0, torch.Generator().manual_seed(seed))
            clean_model_out.append(out[1])
        noise = clean_model_out[0] - clean_model_out[1]
        a, b = noise[:, :-1].flatten(), noise[:, 1:].flatten()
        return torch.corrcoef(torch.stack([a, b]))[0, 1].item()

    seen = CameraDegradation(kernels=("area",), tone_curves=("srgb",), jpeg_prob=0.0, quantize=False)
    unseen = UnseenDegradation(quantize=False, row_noise=0.0)
    assert abs(neighbour_correlation(seen)) < 0.1
    assert neighbour_correlation(unseen) > 0.3


def test_jpeg_is_applied_when_drawn():
    model = CameraDegradation(jpeg_prob=1.0, jpeg_quality=(10, 10))
    out, drawn = degrade_with(model, _photo(2, 64), 2, 2.0, torch.Generator().manual_seed(0))
    assert drawn["jpeg_quality"] == 10
    plain, _ = degrade_with(CameraDegradation(jpeg_prob=0.0), _photo(2, 64), 2, 2.0,
                            torch.Generator().manual_seed(0))
    assert out.shape == plain.shape and not torch.equal(out, plain)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown degradation"):
        build_degradation("foggy")
    with pytest.raises(ValueError, match="unknown option"):
        build_degradation("seen", ev_range=[2, 5])
    with pytest.raises(ValueError, match="kernel"):
        CameraDegradation(kernels=("lanczos",))
    with pytest.raises(ValueError, match="jpeg_prob"):
        CameraDegradation(jpeg_prob=2.0)
    with pytest.raises(ValueError, match="ev must be"):
        degrade_with(CameraDegradation(), _photo(), 2, float("nan"), torch.Generator())


def test_training_never_uses_the_unseen_model():
    with pytest.raises(ValueError, match="evaluation only"):
        embedded_dataset("train", degradation="unseen")
    with pytest.raises(ConfigError, match="data.degradation.name"):
        config_from_dict({"data": {"degradation": {"name": "unseen"}}})
    with pytest.raises(ConfigError, match="data.degradation"):
        config_from_dict({"data": {"degradation": {"jpeg_prob": -1}}})


def test_test_split_is_fixed_and_differs_between_models():
    seen_a = embedded_dataset("test", degradation="seen")
    seen_b = embedded_dataset("test", degradation="seen")
    unseen = embedded_dataset("test", degradation="unseen")
    assert len(seen_a) == len(unseen) == 6
    for i in range(len(seen_a)):
        assert torch.equal(seen_a[i]["input"], seen_b[i]["input"])
        assert torch.equal(seen_a[i]["target"], unseen[i]["target"])
        assert not torch.equal(seen_a[i]["input"], unseen[i]["input"])
