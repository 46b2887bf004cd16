"""``python -m examples.trico exposure-prior --checkpoint CKPT --weight W --out OUT``: give a model an exposure prior.

From a photo whose exposure was cut by an unknown 2-5 stops, the scene's true brightness is ambiguous, and every
network we trained guesses it from content alone: its auto-exposure front end divides out the input's own mean
luminance ``m``. But under the training exposure range ``m`` is evidence too: a darker input is, on average, a
darker scene. This command fits ``log(scene mean luminance) = alpha + beta * log(m)`` by least squares on the
run's training photos (the ``data`` of the checkpoint's training config: its embedded photos minus the held-out
ones, full size, degraded by the seen camera model at exposures spread over ``data.ev_range``, seeds of their
own), then writes the checkpoint's network with ``exposure_prior = {alpha, beta, weight}`` in its build config:
its output is rescaled in linear light to the mean luminance ``own ** (1 - weight) * level ** weight``
(:meth:`examples.trico.model.TriCo.apply_exposure_prior`). ``weight`` 0 is the network as trained, 1 the
regression alone. The output file carries the training record of the input, so ``export`` takes it like any
checkpoint. Why and with which weight: docs/trico.md, "Exposure prior".
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["add_arguments", "run", "fit_exposure_prior", "with_exposure_prior", "mean_luminance", "FIT_EVS"]

#: the exposures (stops below the photo) the regression is fitted on: the default 2 .. 5 EV training range
FIT_EVS = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
#: noise seeds of the fit's own (not the validation or test seeds)
FIT_SEED = 1


def mean_luminance(img: torch.Tensor) -> float:
    """Mean linear luminance (Rec. 709 weights) of an sRGB image in [0, 1]: the statistic the prior is fitted on."""
    from examples.restoration.degradations import luminance, srgb_to_linear

    return float(luminance(srgb_to_linear(img.clamp(0.0, 1.0))).mean())


def fit_exposure_prior(train_config: dict[str, Any], scale: int = 2, evs: Sequence[float] | None = None
                       ) -> dict[str, Any]:
    """``{"alpha", "beta", "fit": {...}}`` fitted on the training photos of ``train_config`` (a plain dict, as a
    checkpoint stores it). ``evs``: the exposures to degrade each photo at (default: :data:`FIT_EVS` clipped
    to the config's ``data.ev_range``)."""
    from examples.restoration.data import embedded_photo_names

    from .cli_errors import UsageError
    from .data import embedded_dataset

    data = train_config.get("data") or {}
    if data.get("source", "embedded") != "embedded":
        raise UsageError(f"the exposure prior is fitted on the run's embedded training photos; this run trained on "
                         f"data.source={data.get('source')!r}")
    low, high = (float(v) for v in data.get("ev_range", (2.0, 5.0)))
    evs = tuple(evs) if evs is not None else tuple(e for e in FIT_EVS if low <= e <= high) or (low, high)
    holdout, more = tuple(data.get("holdout") or ()), tuple(data.get("more_photos") or ())
    names = embedded_photo_names("train", holdout, more)
    photos = embedded_dataset("val", scale=scale, degradation="seen", holdout=names, more=more, seed=FIT_SEED,
                              test_evs=evs)
    logs_in, logs_true = [], []
    for i in range(len(photos)):
        item = photos[i]
        logs_in.append(math.log(max(mean_luminance(item["input"]), 1e-6)))
        logs_true.append(math.log(max(mean_luminance(item["target"]), 1e-6)))
    design = torch.tensor([[1.0, v] for v in logs_in], dtype=torch.float64)
    truth = torch.tensor(logs_true, dtype=torch.float64)
    alpha, beta = torch.linalg.lstsq(design, truth[:, None]).solution.flatten().tolist()
    residual = truth - design @ torch.tensor([alpha, beta], dtype=torch.float64)
    return {"alpha": alpha, "beta": beta,
            "fit": {"photos": list(names), "evs": list(evs), "images": len(photos), "seed": FIT_SEED,
                    "residual_log_std": float(residual.std()), "scene_log_std": float(truth.std())}}


def with_exposure_prior(checkpoint: str | Path, weight: float, out: str | Path) -> dict[str, Any]:
    """Write ``checkpoint``'s network with an exposure prior of ``weight`` (fitted on its training photos) to
    ``out``; return the prior."""
    from .checkpoint import load_model, save_model, training_record
    from .cli_errors import UsageError
    from .model import build_model

    if not 0.0 <= weight <= 1.0:
        raise UsageError(f"--weight must be in [0, 1], got {weight}")
    record = training_record(checkpoint)
    if "train_config" not in record:
        raise UsageError(f"{checkpoint} does not record its training config (a file written by train, average or "
                         "exposure-prior is needed): the prior is fitted on the run's training photos")
    trained, config = load_model(checkpoint)
    prior = {**fit_exposure_prior(record["train_config"], int(config["scale"])), "weight": float(weight)}
    model = build_model(**{**config, "exposure_prior": prior})
    model.load_trainable_state_dict(trained.trainable_state_dict())
    save_model(out, model, record)
    return prior


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by train, average or select")
    parser.add_argument("--weight", type=float, required=True,
                        help="how far the output exposure moves toward the prior's (0: none, 1: all the way)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (the input is not changed)")
    return parser


def run(args: argparse.Namespace) -> int:
    from .cli_errors import UsageError

    if Path(args.out).resolve() == Path(args.checkpoint).resolve():
        raise UsageError("--out must differ from --checkpoint (the input is kept as it is)")
    prior = with_exposure_prior(args.checkpoint, args.weight, args.out)
    fit = prior["fit"]
    print(f"exposure prior: log(scene luminance) = {prior['alpha']:.4f} + {prior['beta']:.4f} * log(input "
          f"luminance); fitted on {fit['images']} images of {len(fit['photos'])} training photos (residual log std "
          f"{fit['residual_log_std']:.3f}, scenes {fit['scene_log_std']:.3f}); weight {prior['weight']:g} -> {args.out}")
    return 0
