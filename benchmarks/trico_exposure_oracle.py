"""How much of a restorer's error is global exposure? PSNR as produced and after an oracle exposure correction.

    python benchmarks/trico_exposure_oracle.py --model shipped=examples/trico/pretrained/trico_x2.safetensors \
        --model naive=runs/naive/checkpoints/best.pt [--baselines clahe_bicubic linear_gain_bicubic] [--json OUT]

For every image of the embedded ``test`` and ``extra`` splits under the seen and the unseen degradation, each
method's output is measured twice: as produced, and after scaling it in linear light so that its mean linear
luminance equals the ground truth's (one number per image, taken from the ground truth: an *oracle*, not a
method). The difference is the part of the error that one global exposure explains; what remains is structure,
colour and noise. A diagnostic for docs/trico.md ("Three seeds at the shipped size"), not a metric to report as a
result. Conventions as ``evaluate``: RGB, uint8 quantisation, no border crop.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from examples.restoration.degradations import linear_to_srgb, quantize_8bit, srgb_to_linear
from examples.trico.baselines import BASELINES
from examples.trico.checkpoint import load_model
from examples.trico.data import embedded_dataset
from examples.trico.metrics import psnr

SPLITS = ("test", "extra")
DEGRADATIONS = ("seen", "unseen")


quantize = quantize_8bit


def exposure_corrected(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``y`` scaled in linear light to the mean linear luminance of ``target`` (clipped to [0, 1])."""
    ly = srgb_to_linear(y)
    gain = srgb_to_linear(target).mean() / ly.mean().clamp(min=1e-6)
    return linear_to_srgb((ly * gain).clamp(0, 1))


def measure(methods: dict, split: str, degradation: str) -> dict[str, dict[str, float]]:
    """``{method: {"psnr": mean as produced, "psnr_oracle_exposure": mean after the correction}}``."""
    data = embedded_dataset(split, scale=2, degradation=degradation)
    sums = {name: [0.0, 0.0] for name in methods}
    for i in range(len(data)):
        item = data[i]
        x, target = item["input"][None], item["target"][None]
        for name, fn in methods.items():
            with torch.no_grad():
                y = fn(x).clamp(0, 1)
            sums[name][0] += float(psnr(quantize(y), target))
            sums[name][1] += float(psnr(quantize(exposure_corrected(y, target)), target))
    n = len(data)
    return {name: {"psnr": a / n, "psnr_oracle_exposure": b / n} for name, (a, b) in sums.items()}


def load_models(specs: list[str], error) -> dict[str, torch.nn.Module]:
    """``NAME=CKPT`` command-line specs -> ``{name: model in eval mode}``; ``error`` reports a malformed spec
    (``ArgumentParser.error``)."""
    models = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            error(f"--model {spec!r}: expected NAME=CKPT")
        model, _ = load_model(path)
        models[name] = model.eval()
    return models


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT", help="a x2 checkpoint to measure")
    ap.add_argument("--baselines", nargs="*", default=["clahe_bicubic", "linear_gain_bicubic"],
                    choices=sorted(BASELINES))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    methods = {name: (lambda x, m=model: m(x).y) for name, model in load_models(args.model, ap.error).items()}
    for b in args.baselines:
        methods[b] = lambda x, f=BASELINES[b]: f(x, 2)
    results = {}
    for split in SPLITS:
        for deg in DEGRADATIONS:
            res = results[f"{split}/{deg}"] = measure(methods, split, deg)
            print(f"{split} {deg}: " + ", ".join(f"{k} {v['psnr']:.2f} -> {v['psnr_oracle_exposure']:.2f}"
                                                for k, v in res.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
