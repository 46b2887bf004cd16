"""``python -m examples.denoise_deblur demo``: train the nested problem, then compare with the classical
baselines on the test photos (PSNR/SSIM table, per-image table and a figure written to the output folder)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import hyperlevel as hl
from examples.trico.imageio import write_image
from examples.trico.metrics import evaluate_pairs

from . import baselines
from .degrade import SPLITS, degrade, photo
from .problem import Settings, build


def test_cases(crop: int, per_photo: int, seed: int = 7) -> list[tuple[str, tuple]]:
    """``per_photo`` seeded degradations of the centre ``crop`` of each test photo: ``(name, (y, k, sigma,
    description, clean))``."""
    cases = []
    for j, name in enumerate(SPLITS["test"]):
        img = photo(name)
        top, left = (img.shape[1] - crop) // 2, (img.shape[2] - crop) // 2
        clean = img[:, top : top + crop, left : left + crop]
        for r in range(per_photo):
            g = torch.Generator().manual_seed(seed * 1000 + 10 * j + r)
            cases.append((f"{name}#{r}", (*degrade(clean, g), clean)))
    return cases


def evaluate(net: torch.nn.Module, cases: list, methods: list[str] | None = None) -> dict[str, dict]:
    """Run the network and each baseline on ``cases``; per method: the metric report and CPU s per image."""
    run = {"input": lambda y, k, s: y, **baselines.available()}
    run = {m: f for m, f in run.items() if methods is None or m in methods or m == "input"}
    outputs: dict[str, list[torch.Tensor]] = {m: [] for m in [*run, "ours"]}
    seconds = dict.fromkeys(outputs, 0.0)
    for _, (y, k, sigma, _, _) in cases:
        for m, fn in run.items():
            t = time.process_time()
            out = fn(y[0].numpy().astype(np.float64), k[0].numpy().astype(np.float64), float(sigma))
            outputs[m].append(torch.as_tensor(np.asarray(out), dtype=torch.float32)[None].clamp(0, 1))
            seconds[m] += time.process_time() - t
        t = time.process_time()
        with torch.no_grad():
            outputs["ours"].append(net(y[None], k[None], sigma)[0].clamp(0, 1))
        seconds["ours"] += time.process_time() - t
    targets = [c[1][-1].expand(3, -1, -1) for c in cases]
    names = [c[0] for c in cases]
    return {m: {"report": evaluate_pairs([o.expand(3, -1, -1) for o in outs], targets, metric_names=["psnr", "ssim"],
                                         names=names, include_per_image=True),
                "cpu_s": seconds[m] / len(cases), "outputs": outs} for m, outs in outputs.items()}


def report_markdown(results: dict[str, dict], cases: list, settings: Settings, weights: dict, train_cpu: float
                    ) -> str:
    """The demo's report: the mean table, the per-image PSNR table and what the run learned."""
    lines = [f"# Joint deblurring and denoising: test split ({', '.join(SPLITS['test'])}), {len(cases)} images",
             "", "| method | PSNR (dB) | SSIM | CPU s / image |", "|---|---|---|---|"]
    for m, r in results.items():
        met = r["report"]["metrics"]
        lines.append(f"| {m} | {met['psnr']['mean']:.2f} | {met['ssim']['mean']:.4f} | {r['cpu_s']:.2f} |")
    lines += ["", "| image | degradation | " + " | ".join(results) + " |", "|---|---|" + "---|" * len(results)]
    for i, (name, case) in enumerate(cases):
        row = [f"{r['report']['per_image'][i]['psnr']:.2f}" for r in results.values()]
        lines.append(f"| {name} | {case[3]} | " + " | ".join(row) + " |")
    lines += ["", "Learned loss weights s (larger = smaller effective weight): "
              + ", ".join(f"{k} {v:.3f}" for k, v in weights.items()),
              f"Training: {settings.warmup_steps} warm-up + {settings.bilevel_steps} bilevel steps, "
              f"batch {settings.batch} of {settings.patch} px patches, {train_cpu:.0f} s CPU.",
              "", "figure.png: rows = the first image of each test photo; columns = input, best baseline, ours, "
              "target."]
    return "\n".join(lines) + "\n"


def figure(results: dict[str, dict], cases: list, per_photo: int, path: Path) -> str:
    """Write the input / best baseline / ours / target mosaic; returns the baseline shown."""
    best = max((m for m in results if m not in ("input", "ours")),
               key=lambda m: results[m]["report"]["metrics"]["psnr"]["mean"])
    rows = [torch.cat([results[m]["outputs"][i] for m in ("input", best, "ours")] + [cases[i][1][-1]], dim=-1)
            for i in range(0, len(cases), per_photo)]
    write_image(path, torch.cat(rows, dim=-2).expand(3, -1, -1))
    return best


def main(out: str | Path, settings: Settings, crop: int = 128, per_photo: int = 2,
         methods: list[str] | None = None) -> dict[str, dict]:
    """Train, evaluate, write ``report.md`` and ``figure.png`` into ``out``; returns the results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    problem, phases, net, weights = build(settings)
    hl.Engine(problem, phases, callbacks=[hl.CSVLogger(out / "log.csv")]).run()
    train_cpu = time.process_time() - c0
    cases = test_cases(crop, per_photo)
    results = evaluate(net.eval(), cases, methods)
    best = figure(results, cases, per_photo, out / "figure.png")
    text = report_markdown(results, cases, settings, weights.weights(), train_cpu)
    text += (f"Best baseline in the figure: {best}. Whole demo: {time.time() - t0:.0f} s wall, "
             f"{time.process_time() - c0:.0f} s CPU.\n")
    (out / "report.md").write_text(text)
    print(text)
    return results
