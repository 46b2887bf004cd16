"""``data.scene_exposure``: training crops are windows of the whole degraded photo and carry its mean linear
luminance, and the objective gives the model the whole photo's auto-exposure gain, as inference does."""

import pytest
import torch

from examples.trico.config import ConfigError, load_config
from examples.trico.data.degradations import build_degradation
from examples.trico.data.synthetic import SyntheticPairs
from examples.trico.model import build_model
from examples.trico.problem import build_train_data

TINY = {"ir_width": 4, "fr_widths": [4, 8, 8], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 1, 1], "refine_blocks": 1,
        "hr_blocks": 1, "heads": [1, 1, 1]}


def _photo(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.05, 0.9, 48).view(1, 1, 48) * torch.ones(3, 40, 48)
    return (base + 0.05 * torch.rand(3, 40, 48, generator=g)).clamp(0, 1)


def _luminance(x: torch.Tensor) -> float:
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return float((0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]).mean())


def test_crops_are_windows_of_the_whole_degraded_photo():
    seen = build_degradation("seen")
    whole = SyntheticPairs([_photo()], scale=2, crop=(20, 24), seed=3, augment=False, degradation=seen,
                           scene_exposure=True, samples_per_epoch=4)  # the whole LR photo
    crops = SyntheticPairs([_photo()], scale=2, crop=8, seed=3, augment=False, degradation=seen, scene_exposure=True,
                           samples_per_epoch=4)
    for index in range(4):
        full, part = whole[(index, 1)], crops[(index, 1)]
        assert full["scene_luminance"] == pytest.approx(_luminance(full["input"]), rel=1e-6)
        assert part["scene_luminance"] == full["scene_luminance"] and part["ev"] == full["ev"]  # same photo, same draw
        windows = full["input"].unfold(1, 8, 1).unfold(2, 8, 1)  # (3, 13, 17, 8, 8): every 8 x 8 window
        match = (windows == part["input"][:, None, None]).all(dim=(0, 3, 4)).nonzero()
        assert len(match) >= 1
        top, left = (int(v) for v in match[0])
        assert torch.equal(part["target"], full["target"][:, 2 * top : 2 * top + 16, 2 * left : 2 * left + 16])
    again = SyntheticPairs([_photo()], scale=2, crop=8, seed=3, degradation=seen, scene_exposure=True, samples_per_epoch=4)
    assert torch.equal(again[(2, 5)]["input"], SyntheticPairs([_photo()], scale=2, crop=8, seed=3, degradation=seen,
                                                              samples_per_epoch=4,
                                                              scene_exposure=True)[(2, 5)]["input"])
    with pytest.raises(ValueError, match="degradation"):
        SyntheticPairs([_photo()], scale=2, crop=8, scene_exposure=True)


def test_gain_for_luminance_is_the_auto_exposure_of_the_whole_image():
    model = build_model(scale=2, **TINY)
    x = _photo()[None, :, :40:2, :48:2].contiguous() * 0.1
    lum = torch.tensor([_luminance(x[0])])
    assert torch.allclose(model.gain_for_luminance(lum), model.exposure_gain(x), rtol=1e-5)
    assert float(model.gain_for_luminance(torch.tensor([1e-9]))) == 64.0  # clipped like the front end
    assert float(model.gain_for_luminance(torch.tensor([0.9]))) == 1.0


def test_objective_uses_the_scene_gain(monkeypatch):
    config = load_config("demo", ["data.scene_exposure=true", "data.crop=8", "data.samples_per_epoch=4"])
    data = build_train_data(config)
    item = data[(0, 0)]
    assert 0 < item["scene_luminance"] < 1
    from examples.trico.problem import make_objective

    model = build_model(scale=2, **TINY)
    seen = {}
    forward = type(model).forward

    def spy(self, x, gain=None):
        seen["gain"] = gain
        return forward(self, x, gain)

    monkeypatch.setattr(type(model), "forward", spy)
    batch = {"input": item["input"][None], "target": item["target"][None],
             "scene_luminance": torch.tensor([item["scene_luminance"]], dtype=torch.float64)}
    groups = model.parameter_groups()
    params = {"upper": {"s": torch.zeros(3)},
              "middle": {k.removeprefix("illumination."): v for k, v in groups["illumination"].items()},
              "lower": {k.removeprefix("refinement."): v for k, v in groups["refinement"].items()}}

    class Weights:
        def total(self, s, losses):
            return sum(losses.values())

    objective = make_objective(model, Weights(), lambda y, t, v: {"l1": (y - t).abs().mean()})
    objective(params, batch)
    expected = model.gain_for_luminance(torch.tensor([item["scene_luminance"]]))
    assert torch.allclose(seen["gain"], expected)
    with pytest.raises(ConfigError, match="scene_exposure"):
        load_config("demo", ["data.scene_exposure=true", "data.source=rellisur", "data.root=/nonexistent"])
