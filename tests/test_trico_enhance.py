"""Tests of examples/trico/enhance.py: tiling with blended seams and the enhance command."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from examples.trico import build_model
from examples.trico.checkpoint import save_model
from examples.trico.enhance import add_arguments, blend_ramp, enhance_tiled, run, tile_starts

torch.set_num_threads(1)

SMALL = {
    "ir_width": 4,
    "fr_widths": [8, 8, 8],
    "enc_blocks": [1, 1, 1],
    "dec_blocks": [0, 0, 0],
    "refine_blocks": 1,
    "hr_blocks": 0,
    "heads": [1, 1, 1],
}


class LocalModel(torch.nn.Module):
    """A purely local model (3x3 convolution, then nearest x2): tiling must be exact away from tile borders."""

    scale = 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return SimpleNamespace(y=torch.nn.functional.interpolate(self.conv(x), scale_factor=2, mode="nearest"))


def test_tile_starts_cover_with_overlap():
    for length, tile, overlap in [(100, 32, 8), (64, 32, 0), (33, 32, 8), (20, 32, 8), (257, 64, 16)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        for a, b in zip(starts, starts[1:]):
            assert b > a and a + tile - b >= overlap


def test_blend_ramp():
    w = blend_ramp(40, 12, 0)
    assert (w >= 0).all() and (w <= 1).all() and torch.all(w[9:] == 1) and torch.all(w[:3] == 0)
    assert torch.all(w[1:12] >= w[:11])
    # two overlapping ramps add up to a flat profile (cosine ramps are complementary)
    a, b = blend_ramp(10, 0, 10), blend_ramp(10, 10, 0)
    torch.testing.assert_close(a + b, torch.ones(10))


def test_tiling_is_exact_for_a_local_model():
    model = LocalModel().eval()
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        full = model(x).y
    tiled = enhance_tiled(model, x, tile=32, overlap=12)
    assert tiled.shape == full.shape
    # the 3x3 convolution sees the tile border only within 1 input pixel of it, and each tile discards the outer
    # overlap / 4 = 3 input pixels of its overlaps: the blend is exact
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)


def test_tiled_and_untiled_trico_agree_away_from_seams():
    torch.manual_seed(0)
    model = build_model(2, **SMALL).eval()
    x = torch.rand(1, 3, 96, 96) * 0.3
    with torch.no_grad():
        full = model(x).y
    tiled = enhance_tiled(model, x, tile=64, overlap=32)
    assert tiled.shape == full.shape == (1, 3, 192, 192)
    diff = (tiled - full).abs()
    # tiles start at 0 and 32: the seam band of the second tile's left/top edge is at 32..64 (x2: 64..128)
    interior = diff[..., :48, :48]  # covered by the first tile only, far from its right/bottom edge
    assert interior.max() < 0.05, interior.max()
    assert diff.mean() < 0.02, diff.mean()
    # a 3-D input gives a 3-D output, and no tiling when the image fits
    single = enhance_tiled(model, x[0], tile=0, overlap=0)
    torch.testing.assert_close(single, full[0])


def _save_images(folder: Path) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    Image.fromarray(rng.integers(0, 60, (20, 24, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 60, (18, 21), dtype=np.uint8), mode="L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 60, (17, 19, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)).save(folder / "photo.jpg")
    import tifffile

    tifffile.imwrite(folder / "deep.tif", rng.integers(0, 9000, (15, 22, 3), dtype=np.uint16), photometric="rgb")
    Image.fromarray(rng.integers(0, 9000, (14, 13), dtype=np.uint16)).save(folder / "deep_gray.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return ["rgb", "gray", "rgba", "photo", "deep", "deep_gray"]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "trico.pt"
    save_model(path, build_model(2, **SMALL), extra={"iteration": 3})
    return path


def test_enhance_directory_with_a_broken_file(tmp_path, checkpoint, capsys):
    good = _save_images(tmp_path / "in")
    out = tmp_path / "out"
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"), "--output", str(out),
                       "--scale", "2", "--tile", "12", "--tile-overlap", "4"))
    err = capsys.readouterr().err
    assert status == 1
    assert "broken.png" in err and "1 of 7" in err
    for stem in good:
        src = next((tmp_path / "in").glob(stem + ".*"))
        with Image.open(out / f"{stem}.png") as im:
            w, h = Image.open(src).size if src.suffix != ".tif" else (22, 15)
            assert im.size == (2 * w, 2 * h) and im.mode == "RGB"


def test_enhance_single_file_16bit_output(tmp_path, checkpoint):
    _save_images(tmp_path / "in")
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(tmp_path / "in" / "deep.tif"),
                       "--output", str(tmp_path / "out"), "--format", "tif"))
    assert status == 0
    import tifffile

    arr = tifffile.imread(tmp_path / "out" / "deep.tif")
    assert arr.shape == (30, 44, 3) and arr.dtype == np.uint16


def test_enhance_scale_mismatch_and_missing_input(tmp_path, checkpoint, capsys):
    _save_images(tmp_path / "in")
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out"), "--scale", "4"))
    assert status == 2 and "conflicts with the checkpoint" in capsys.readouterr().err  # issue 14: usage status
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(tmp_path / "nope"),
                       "--output", str(tmp_path / "out")))
    assert status == 3 and "does not exist" in capsys.readouterr().err  # issue 14: data status
    status = run(_args("--checkpoint", str(tmp_path / "none.pt"), "--input", str(tmp_path / "in"),
                       "--output", str(tmp_path / "out")))
    assert status == 4 and "no checkpoint at" in capsys.readouterr().err  # issue 14: checkpoint status


def test_enhance_never_destroys_inputs_or_earlier_results(tmp_path, checkpoint, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(folder / "a.jpg")
    before = (folder / "a.png").read_bytes()
    # output folder == input folder: a.png would overwrite the input a.png
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(folder), "--output", str(folder)))
    err = capsys.readouterr().err
    assert status == 1 and "it is an input image" in err
    assert (folder / "a.png").read_bytes() == before
    # a.jpg and a.png map to the same output name: the second is refused, not silently lost
    out = tmp_path / "out"
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(folder), "--output", str(out)))
    err = capsys.readouterr().err
    assert status == 1 and "already written" in err and (out / "a.png").exists()
    # an existing result is kept unless --overwrite
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(folder / "a.png"), "--output", str(out)))
    assert status == 1 and "--overwrite" in capsys.readouterr().err
    status = run(_args("--checkpoint", str(checkpoint), "--input", str(folder / "a.png"), "--output", str(out),
                       "--overwrite"))
    assert status == 0
