"""Should a restorer's own exposure be pulled toward the auto-exposure anchor at inference?

    python benchmarks/trico_exposure_anchor.py --config examples/trico/configs/shipped_x2.yaml \
        --model trico_s0=runs/trico_s0/checkpoints/best.pt --model naive_s0=runs/naive_s0/checkpoints/best.pt \
        [--json OUT.json] [--plot OUT.png]

The networks decide the brightness of their output themselves, and docs/trico.md shows that most of their
remaining error on held-out photos is that global exposure. The opposite extreme is the linear-gain baseline,
which sets every output's mean linear luminance to the anchor (0.18, middle grey: the target of TriCo's
auto-exposure front end). This diagnostic measures the family in between: the output is scaled in linear light so
that its mean luminance becomes ``anchor ** a * own ** (1 - a)`` (``a = 0``: the network as it is; ``a = 1``: the
anchor's exposure with the network's structure and colour). One number per image, taken from the output alone:
a method, not an oracle.

Where ``a`` would be chosen: the *decision sets*, the config's training photos at full size (in-sample for the
networks, but ``a`` is one scalar about exposure, not about texture) and its validation photos, both under the seen
degradation. Reported beside them: the ``test`` and ``extra`` splits under both degradations. Conventions as
``evaluate``: RGB, uint8 quantisation, no border crop.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trico_exposure_oracle import load_models  # noqa: E402

from examples.restoration.data import embedded_photo_names
from examples.restoration.degradations import linear_to_srgb, luminance, quantize_8bit, srgb_to_linear
from examples.trico.baselines import MID_GREY
from examples.trico.data import embedded_dataset
from examples.trico.metrics import psnr

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
DECISION_SETS = ("train photos", "val")
REPORT_SETS = ("test seen", "test unseen", "extra seen", "extra unseen")


def anchored(y: torch.Tensor, a: float, anchor: float = MID_GREY) -> torch.Tensor:
    """``y`` (B, 3, H, W, sRGB) scaled in linear light so that each image's mean linear luminance becomes
    ``anchor ** a * own ** (1 - a)`` (clipped to [0, 1]); ``a = 0`` returns ``y`` unchanged."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"a must be in [0, 1], got {a}")
    if a == 0.0:
        return y
    lin = srgb_to_linear(y)
    own = luminance(lin).mean(dim=(-2, -1)).clamp(min=1e-6).view(-1, 1, 1, 1)
    return linear_to_srgb((lin * (anchor / own) ** a).clamp(0, 1))


def evaluation_sets(config: dict, scale: int = 2) -> dict[str, torch.utils.data.Dataset]:
    """The decision sets of a training config (its training photos and its validation photos, full size, seen
    degradation, the ``"val"`` split's seeds) and the four reported test sets."""
    data = config.get("data") or {}
    holdout, more = tuple(data.get("holdout") or ()), tuple(data.get("more_photos") or ())
    if not holdout:
        raise SystemExit("the config holds no photo out of training (data.holdout): no validation set")
    train_names = embedded_photo_names("train", holdout, more)
    sets = {"train photos": embedded_dataset("val", scale=scale, degradation="seen", holdout=train_names, more=more),
            "val": embedded_dataset("val", scale=scale, degradation="seen", holdout=holdout, more=more)}
    for name in REPORT_SETS:
        split, degradation = name.split()
        sets[name] = embedded_dataset(split, scale=scale, degradation=degradation)
    return sets


def measure(model: torch.nn.Module, dataset, alphas=ALPHAS) -> dict[float, float]:
    """Mean PSNR over ``dataset`` of the model's output under each anchoring strength ``a``."""
    sums = dict.fromkeys(alphas, 0.0)
    for i in range(len(dataset)):
        item = dataset[i]
        with torch.no_grad():
            y = model(item["input"][None]).y.clamp(0, 1)
        for a in alphas:
            sums[a] += float(psnr(quantize_8bit(anchored(y, a)), item["target"][None]))
    return {a: s / len(dataset) for a, s in sums.items()}


def markdown(results: dict[str, dict[str, dict[float, float]]]) -> str:
    """One row per (model, a): PSNR on every set; the decision sets first."""
    sets = list(next(iter(results.values())))
    lines = ["| model | a | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for model, per_set in results.items():
        for a in next(iter(per_set.values())):
            lines.append(f"| {model} | {a:g} | " + " | ".join(f"{per_set[s][a]:.2f}" for s in sets) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[float, float]]], path: Path) -> None:
    """PSNR change against ``a = 0`` for every set (one panel each), a line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(sets), figsize=(2.6 * len(sets), 3.0), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], sets):
        for model, per_set in results.items():
            curve = per_set[name]
            ax.plot(list(curve), [v - curve[0.0] for v in curve.values()], marker="o", ms=3, label=model)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(name + (" (decision)" if name in DECISION_SETS else ""), fontsize=9)
        ax.set_xlabel("a (0: own exposure, 1: anchor)")
    axes[0][0].set_ylabel("PSNR change vs a = 0 (dB)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=Path("examples/trico/configs/shipped_x2.yaml"),
                    help="the training config whose photos and validation photos are the decision sets")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT", help="a x2 checkpoint to measure")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--plot", type=Path, help="also plot them here (PNG)")
    args = ap.parse_args(argv)
    if not args.model:
        ap.error("give at least one --model NAME=CKPT")
    torch.set_num_threads(1)
    sets = evaluation_sets(yaml.safe_load(args.config.read_text()))
    results: dict[str, dict[str, dict[float, float]]] = {}
    for name, model in load_models(args.model, ap.error).items():
        results[name] = {s: measure(model, data) for s, data in sets.items()}
        decision = {a: sum(results[name][s][a] for s in DECISION_SETS) / len(DECISION_SETS) for a in ALPHAS}
        print(f"{name}: a chosen on the decision sets = {max(decision, key=decision.get):g}", flush=True)
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps({m: {s: {str(a): v for a, v in c.items()} for s, c in r.items()}
                                         for m, r in results.items()}, indent=1))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
