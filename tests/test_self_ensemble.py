"""examples.restoration.self_ensemble: the x8 geometric self-ensemble, and its use by enhance and evaluate."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from examples.restoration.self_ensemble import DIHEDRAL_TRANSFORMS, _forward, _inverse, self_ensemble
from examples.trico import build_model
from examples.trico.checkpoint import save_model
from examples.trico.enhance import add_arguments, enhance_tiled, run
from examples.trico.evaluate import model_method

torch.set_num_threads(1)
SMALL = {"ir_width": 4, "fr_widths": [8, 8, 8], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 0, 0],
         "refine_blocks": 1, "hr_blocks": 0, "heads": [1, 1, 1]}


def _conv_up(seed: int = 0):
    """A fixed random 3x3 convolution then nearest x2: local, and equivariant to no flip or turn."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 3, 3, 3, generator=g)
    return lambda x: F.interpolate(F.conv2d(x, w, padding=1), scale_factor=2, mode="nearest")


def test_the_eight_transforms_are_distinct_and_inverted():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    seen = set()
    for turns, mirrored in DIHEDRAL_TRANSFORMS:
        t = _forward(x, turns, mirrored)
        seen.add(tuple(t.flatten().tolist()))
        assert torch.equal(_inverse(t, turns, mirrored), x)
    assert len(DIHEDRAL_TRANSFORMS) == 8 and len(seen) == 8


def test_an_equivariant_map_is_left_unchanged():
    x = torch.rand(1, 3, 6, 9, generator=torch.Generator().manual_seed(1))
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    torch.testing.assert_close(self_ensemble(up, x), up(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(self_ensemble(lambda t: t, x), x, rtol=0, atol=1e-6)


def test_the_ensemble_of_any_map_is_equivariant():
    """Averaging over the group makes the result commute with every flip and turn, also for a non-square input."""
    fn = _conv_up()
    x = torch.rand(2, 3, 7, 10, generator=torch.Generator().manual_seed(2))
    ens = self_ensemble(fn, x)
    assert ens.shape == (2, 3, 14, 20)
    assert not torch.allclose(ens, fn(x), atol=1e-3)  # the map itself is not equivariant
    for turns, mirrored in DIHEDRAL_TRANSFORMS:
        torch.testing.assert_close(self_ensemble(fn, _forward(x, turns, mirrored)), _forward(ens, turns, mirrored),
                                   rtol=1e-5, atol=1e-5)
    manual = sum(torch.rot90(fn(torch.rot90(x, k, (2, 3))), -k, (2, 3)) for k in range(4))
    manual = manual + sum(torch.rot90(fn(torch.rot90(x, k, (2, 3)).flip(3)).flip(3), -k, (2, 3)) for k in range(4))
    torch.testing.assert_close(ens, manual / 8, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        self_ensemble(fn, x, transforms=())


def test_trico_enhance_and_evaluate_use_the_same_ensemble(tmp_path):
    torch.manual_seed(0)
    model = build_model(2, **SMALL).eval()
    x = torch.rand(1, 3, 24, 20) * 0.3
    with torch.no_grad():
        expected = self_ensemble(lambda t: model(t).y, x)
    torch.testing.assert_close(enhance_tiled(model, x, tile=0, ensemble=True), expected)
    torch.testing.assert_close(model_method(model, ensemble=True)(x), expected)
    assert not torch.allclose(model_method(model)(x), expected, atol=1e-4)
    tiled = enhance_tiled(model, x, tile=16, overlap=8, ensemble=True)  # tiles share the whole photo's gain
    assert tiled.shape == (1, 3, 48, 40) and torch.isfinite(tiled).all()
    # the command: --self-ensemble changes the output, and only by what the ensemble changes
    ckpt = tmp_path / "m.pt"
    save_model(ckpt, model)
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 60, (24, 20, 3), dtype=np.uint8)).save(
        tmp_path / "in" / "a.png")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    outs = {}
    for flag in ([], ["--self-ensemble"]):
        out = tmp_path / f"out{len(flag)}"
        assert run(parser.parse_args(["--checkpoint", str(ckpt), "--input", str(tmp_path / "in"),
                                      "--output", str(out), "--bits", "8", *flag])) == 0
        outs[len(flag)] = np.asarray(Image.open(out / "a.png"), dtype=np.int16)
    assert outs[0].shape == outs[1].shape == (48, 40, 3) and np.abs(outs[0] - outs[1]).max() > 0
