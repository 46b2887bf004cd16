"""``python -m examples.denoise_deblur demo``: train the nested problem, then compare with the classical
baselines on the test photos (PSNR/SSIM table, per-image table and a figure written to the output folder)."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

import hyperlevel as hl
from examples.restoration.checkpoint import save_model
from examples.restoration.imageio import write_image
from examples.restoration.metrics import evaluate_pairs

from . import baselines
from .degrade import SOURCES, SPLITS
from .problem import Settings, build


def test_cases(crop: int, per_photo: int, seed: int = 7) -> list[dict]:
    """``per_photo`` seeded degradations of the centre ``crop`` of each test photo (the first of each photo
    first)."""
    test = SOURCES.build("photos", "test", n=per_photo * len(SPLITS["test"]), size=crop, seed=seed, centre=True)
    return [test[i] for i in range(len(test))]


def run_baselines(cases: list[dict], methods: list[str] | None = None) -> dict[str, tuple[list, float]]:
    """Each baseline (and the degraded input) on ``cases``: ``{method: (outputs, CPU s per image)}``."""
    run = {"input": lambda y, k, s: y, **baselines.available()}
    done = {}
    for m, fn in run.items():
        if methods is None or m in methods or m == "input":
            t, outs = time.process_time(), []
            for c in cases:
                out = fn(c["input"][0].double().numpy(), c["kernel"][0].double().numpy(), float(c["sigma"]))
                outs.append(torch.as_tensor(np.asarray(out), dtype=torch.float32)[None].clamp(0, 1))
            done[m] = (outs, (time.process_time() - t) / len(cases))
    return done


def evaluate(net: torch.nn.Module, cases: list[dict], done: dict[str, tuple[list, float]]) -> dict[str, dict]:
    """Run the network on ``cases`` and measure it with the baselines' outputs ``done``: per method the metric
    report, CPU s per image and the outputs."""
    t = time.process_time()
    with torch.no_grad():
        ours = [net(c["input"][None], c["kernel"][None], c["sigma"])[0].clamp(0, 1) for c in cases]
    done = {**done, "ours": (ours, (time.process_time() - t) / len(cases))}
    targets, names = [c["target"].expand(3, -1, -1) for c in cases], [c["name"] for c in cases]
    return {m: {"report": evaluate_pairs([o.expand(3, -1, -1) for o in outs], targets, metric_names=["psnr", "ssim"],
                                         names=names, include_per_image=True), "cpu_s": cpu, "outputs": outs}
            for m, (outs, cpu) in done.items()}


def report_markdown(results: dict[str, dict], cases: list[dict]) -> str:
    """The mean table and the per-image PSNR table."""
    lines = [f"# Joint deblurring and denoising: test photos {', '.join(SPLITS['test'])}, {len(cases)} images",
             "", "| method | PSNR (dB) | SSIM | CPU s / image |", "|---|---|---|---|"]
    for m, r in results.items():
        met = r["report"]["metrics"]
        lines.append(f"| {m} | {met['psnr']['mean']:.2f} | {met['ssim']['mean']:.4f} | {r['cpu_s']:.2f} |")
    lines += ["", "PSNR (dB) per image:", "", "| image: degradation | " + " | ".join(results) + " |",
              "|---|" + "---|" * len(results)]
    for i, c in enumerate(cases):
        row = [f"{r['report']['per_image'][i]['psnr']:.2f}" for r in results.values()]
        lines.append(f"| {c['name']} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def figure(results: dict[str, dict], cases: list[dict], path: Path) -> str:
    """Write the input / best baseline / ours / target mosaic (one row per test photo); returns the baseline."""
    best = max((m for m in results if m not in ("input", "ours")),
               key=lambda m: results[m]["report"]["metrics"]["psnr"]["mean"])
    rows = [torch.cat([results[m]["outputs"][i] for m in ("input", best, "ours")] + [cases[i]["target"]], dim=-1)
            for i in range(len(SPLITS["test"]))]
    write_image(path, torch.cat(rows, dim=-2).expand(3, -1, -1))
    return best


def main(out: str | Path, settings: Settings, crop: int = 128, per_photo: int = 2,
         methods: list[str] | None = None) -> dict[str, dict]:
    """Train, evaluate, write ``report.md``, ``figure.png`` and ``restorer.pt`` into ``out``; returns the results.
    The baselines run in a second process while the network trains (two cores: one each)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    cases = test_cases(crop, per_photo)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        classical = pool.submit(run_baselines, cases, methods)
        problem, phases, net, weights = build(settings)
        hl.Engine(problem, phases, callbacks=[hl.CSVLogger(out / "log.csv")]).run()
        save_model(out / "restorer.pt", net, "denoise_deblur")
        train_cpu = time.process_time() - c0
        results = evaluate(net.eval(), cases, classical.result())
    best = figure(results, cases, out / "figure.png")
    text = report_markdown(results, cases) + "\n".join([
        "", "Learned loss weights s (larger = smaller effective weight): "
        + ", ".join(f"{k} {v:.3f}" for k, v in weights.weights().items()),
        f"Training: {settings.warmup_steps} warm-up + {settings.bilevel_steps} bilevel steps, batch {settings.batch}"
        f" of {settings.patch} px patches, {train_cpu:.0f} s CPU.",
        f"figure.png, one row per test photo: input, best baseline ({best}), ours, target.",
        f"Whole demo: {time.time() - t0:.0f} s wall; CPU s: {time.process_time() - c0:.0f} main process + "
        f"{sum(r['cpu_s'] for r in results.values()) * len(cases) - results['ours']['cpu_s'] * len(cases):.0f} "
        "baselines process.", ""])
    (out / "report.md").write_text(text)
    print(text)
    return results
