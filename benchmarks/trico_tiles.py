"""Does tiled inference cost quality against whole-image inference? (``enhance --tile``.)

    python benchmarks/trico_tiles.py [--checkpoint CKPT] [--config CONFIG] [--tiles 128 256 0] [--json OUT]

TriCo is not purely local (IHEM's channel attention pools over the whole tile), so ``enhance``'s tile size changes
its output. Measured on the *decision photos* only: the training config's training and validation photos at full
size (no centre crop; even sizes), 3.5 EV, seen degradation, one seed per photo; PSNR and SSIM (RGB, uint8, no
border crop) and seconds per photo for each tile size (0: the whole image), through ``enhance_tiled``, the code
``enhance`` runs. The auto-exposure gain and the exposure prior are whole-photo quantities at any tile size.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from examples.restoration.data import embedded_photo_names, load_skimage_photo
from examples.restoration.degradations import quantize_8bit
from examples.trico.checkpoint import load_model
from examples.trico.data.degradations import build_degradation, degrade_with
from examples.trico.enhance import enhance_tiled
from examples.trico.metrics import psnr, ssim

EV = 3.5
SEED = 1000


def decision_photos(config: dict) -> list[str]:
    """The config's training photos, then its held-out (validation) photos."""
    data = config.get("data") or {}
    holdout, more = tuple(data.get("holdout") or ()), tuple(data.get("more_photos") or ())
    return list(embedded_photo_names("train", holdout, more)) + list(holdout)


@torch.no_grad()
def measure(model: torch.nn.Module, names: list[str], tiles: list[int], overlap: int = 32) -> dict:
    """``{photo: {"lr": [h, w], str(tile): [psnr, ssim, seconds]}}``."""
    degradation, results = build_degradation("seen"), {}
    for i, name in enumerate(names):
        hr = load_skimage_photo(name)
        h, w = hr.shape[-2:]
        hr = hr[:, : h - h % 2, : w - w % 2]
        lr, _ = degrade_with(degradation, hr, 2, EV, torch.Generator().manual_seed(SEED + i))
        row: dict = {"lr": list(lr.shape[-2:])}
        for tile in tiles:
            start = time.perf_counter()
            y = quantize_8bit(enhance_tiled(model, lr, tile, overlap).clamp(0, 1))[None]
            row[str(tile)] = [float(psnr(y, hr[None])), float(ssim(y, hr[None])), round(time.perf_counter() - start, 1)]
        results[name] = row
        print(name, row, flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="examples/trico/pretrained/trico_x2.safetensors")
    ap.add_argument("--config", type=Path, default=Path("examples/trico/configs/shipped_x2.yaml"))
    ap.add_argument("--tiles", type=int, nargs="+", default=[128, 256, 0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_model(args.checkpoint)
    results = measure(model, decision_photos(yaml.safe_load(args.config.read_text())), args.tiles)
    for tile in args.tiles:
        rows = [r[str(tile)] for r in results.values()]
        print(f"tile {tile or 'whole'}: PSNR {sum(r[0] for r in rows) / len(rows):.2f}  "
              f"SSIM {sum(r[1] for r in rows) / len(rows):.4f}")
    if args.json:
        args.json.write_text(json.dumps({"ev": EV, "checkpoint": str(args.checkpoint), "photos": results}, indent=1))


if __name__ == "__main__":
    main()
