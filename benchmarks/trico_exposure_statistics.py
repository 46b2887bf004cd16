"""Which image statistic predicts a dark photo's exposure? Mean luminance (grey world) against a white point.

    python benchmarks/trico_exposure_statistics.py [--json OUT]

TriCo's auto-exposure front end (``build_model(auto_exposure=0.18)``) scales each input in linear light so that
its *mean* luminance becomes 0.18. Docs/trico.md shows that most of the networks' remaining error is this global
exposure. This diagnostic asks whether another statistic of the input would anchor it better:

1. **Spread over scenes** (clean photos, no degradation): the standard deviation over scenes of the log of each
   statistic of the linear luminance (mean; 50th, 90th, 99th, 99.9th percentile). A statistic that is the same
   for every well-exposed scene is the one a single target value can restore.
2. **As an exposure estimator** (degraded photos): ``gain = target / statistic(input)`` in linear light (gain in
   [1, 64]), then bicubic x2; PSNR against the ground truth. The percentile, pooling and target are chosen on
   random 256-pixel crops of the five training photos (seen degradation, 2 .. 5 EV, seeds of their own), then
   measured on the validation photo and on both test splits under both degradations, beside the mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from examples.restoration.data import (
    EXTRA_TEST_IMAGES,
    MORE_TRAIN_IMAGES,
    TEST_IMAGES,
    TRAIN_IMAGES,
    load_skimage_photo,
)
from examples.restoration.degradations import linear_to_srgb, luminance, quantize_8bit, srgb_to_linear
from examples.trico.baselines import MID_GREY
from examples.trico.data import embedded_dataset
from examples.trico.data.degradations import build_degradation, degrade_with
from examples.trico.metrics import psnr

PERCENTILES = (0.5, 0.9, 0.99, 0.999)
TRAIN_PHOTOS = tuple(n for n in TRAIN_IMAGES if n != "motorcycle_right")  # the shipped config's training photos


def statistic(x: torch.Tensor, q: float | None, pool: int = 1) -> torch.Tensor:
    """Per image: the mean (``q=None``) or the ``q`` quantile of the (``pool`` x ``pool`` averaged) linear
    luminance of the sRGB batch ``x``."""
    lum = luminance(srgb_to_linear(x)).unsqueeze(1)  # (N, 1, H, W)
    if pool > 1:
        lum = F.avg_pool2d(lum, pool)
    if q is None:
        return lum.mean(dim=(1, 2, 3))
    return torch.quantile(lum.flatten(1), q, dim=1)


def gain_bicubic(x: torch.Tensor, q: float | None, pool: int, target: float, scale: int = 2) -> torch.Tensor:
    """The estimator: one gain in linear light that sets ``statistic`` to ``target``, then bicubic."""
    gain = (target / statistic(x, q, pool).clamp_min(1e-6)).clamp(1.0, 64.0).view(-1, 1, 1, 1)
    y = linear_to_srgb((srgb_to_linear(x) * gain).clamp(0.0, 1.0))
    return F.interpolate(y, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def scene_spread() -> dict[str, dict[str, float]]:
    """Statistics of every clean embedded photo and their spread (std of the log) over scenes."""
    names = TRAIN_IMAGES + TEST_IMAGES + EXTRA_TEST_IMAGES + MORE_TRAIN_IMAGES
    table = {}
    for name in names:
        x = load_skimage_photo(name, 256)[None]
        table[name] = {"mean": float(statistic(x, None))} | {f"p{100 * q:g}": float(statistic(x, q))
                                                               for q in PERCENTILES}
    logs = np.log(np.array([[row[k] for k in row] for row in table.values()]))
    table["std_of_log (all)"] = dict(zip(next(iter(table.values())), logs.std(axis=0).round(3).tolist(), strict=True))
    return table


def training_crops(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` random 256-pixel crops per training photo, seen degradation at 2 .. 5 EV (seeds of their own)."""
    model = build_degradation("seen")
    pairs = []
    for i, name in enumerate(TRAIN_PHOTOS):
        img = load_skimage_photo(name, 256)
        h, w = img.shape[-2:]
        for j in range(count):
            gen = torch.Generator().manual_seed(1000 + 10 * i + j)
            top = int(torch.randint(0, h - 255, (1,), generator=gen))
            left = int(torch.randint(0, w - 255, (1,), generator=gen))
            hr = img[:, top:top + 256, left:left + 256]
            lr, _ = degrade_with(model, hr, 2, 2.0 + 3.0 * float(torch.rand((), generator=gen)), gen)
            pairs.append((lr[None], hr[None]))
    return pairs


def mean_psnr(pairs, q, pool, target) -> float:
    return float(np.mean([float(psnr(quantize_8bit(gain_bicubic(lr, q, pool, target)), hr)) for lr, hr in pairs]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    results: dict = {"spread": scene_spread()}
    print("std over scenes of log(statistic):", results["spread"]["std_of_log (all)"])
    crops = training_crops()
    grid = [(q, pool, t) for q in (0.9, 0.99, 0.995, 0.999) for pool in (1, 2, 4) for t in (0.3, 0.45, 0.6, 0.75, 0.9)]
    scored = sorted(((mean_psnr(crops, *c), c) for c in grid), reverse=True)
    best = scored[0][1]
    results["chosen_on_training_crops"] = {"q": best[0], "pool": best[1], "target": best[2], "psnr": scored[0][0],
                                           "mean_0.18_psnr": mean_psnr(crops, None, 1, MID_GREY)}
    print("chosen on training crops:", results["chosen_on_training_crops"])
    results["held_out"] = {}
    for split in ("val", "test", "extra"):
        for deg in ("seen", "unseen"):
            data = embedded_dataset(split, scale=2, degradation=deg,
                                    holdout=("motorcycle_right",) if split == "val" else ())
            pairs = [(data[i]["input"][None], data[i]["target"][None]) for i in range(len(data))]
            row = {"mean -> 0.18": mean_psnr(pairs, None, 1, MID_GREY), "white point": mean_psnr(pairs, *best)}
            results["held_out"][f"{split}/{deg}"] = row
            print(f"{split:5s} {deg:6s} gain + bicubic PSNR: mean -> 0.18 {row['mean -> 0.18']:.2f}, "
                  f"white point {row['white point']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
