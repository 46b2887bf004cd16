"""Weight averaging of one run's checkpoints (stochastic weight averaging, applied after training).

Checkpoints saved along one training run sit in the same basin of the loss, and with the large learning rates of
a short budget they scatter around its floor: on held-out photos neighbouring checkpoints of one TriCo run differ
by 1-3 dB, so choosing one of them by a small validation set picks noise as much as quality. The uniform mean of
their weights is a point nearer the centre of that basin, typically better and far less seed- and step-dependent
than any one of them ("Averaging Weights Leads to Wider Optima and Better Generalization", Izmailov et al., UAI
2018). It needs no training: the run's saved checkpoints are averaged afterwards.

The running mean is PyTorch's (:class:`torch.optim.swa_utils.AveragedModel`). Only parameters are averaged:
buffers come from the first checkpoint, so a network with batch normalisation needs its statistics recomputed
afterwards (:func:`torch.optim.swa_utils.update_bn` on training data); :func:`average_models` warns when it sees
one. Averaging is meaningful only for checkpoints of ONE run (one initialisation): the weights of independently
initialised networks are not aligned, and their mean is not a model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel

from .checkpoint import CheckpointError, ModelBuilder, load_model

__all__ = ["average_models", "average_checkpoints"]


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def average_models(models: Iterable[nn.Module]) -> nn.Module:
    """A new module whose parameters are the uniform mean of those of ``models`` (same architecture; at least
    one). The inputs are not changed; the result is in eval mode."""
    averaged: AveragedModel | None = None
    count = 0
    for model in models:
        if averaged is None:
            averaged = AveragedModel(model, use_buffers=False)
            names = [n for n, _ in model.named_parameters()]
        else:
            other = [n for n, _ in model.named_parameters()]
            if other != names:
                raise ValueError("models to average must have the same parameters "
                                 f"(first differs at {next((a for a, b in zip(names, other) if a != b), '?')!r})")
        averaged.update_parameters(model)
        count += 1
    if averaged is None:
        raise ValueError("no model to average")
    result = averaged.module
    if _has_batch_norm(result):
        warnings.warn("the averaged network has batch normalisation: its running statistics are those of the "
                      "first model; recompute them with torch.optim.swa_utils.update_bn on training data",
                      stacklevel=2)
    result.eval()
    return result


def average_checkpoints(paths: Sequence[str | os.PathLike], builder: str | ModelBuilder | None = None,
                        map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load every checkpoint in ``paths`` (files :func:`~examples.restoration.checkpoint.load_model` reads) and
    return ``(averaged model in eval mode, its build config)``. All must record the same build config."""
    if not paths:
        raise CheckpointError("no checkpoint to average")
    first_config: dict[str, Any] | None = None

    def models():
        nonlocal first_config
        for path in paths:
            model, config = load_model(path, builder, map_location=map_location)
            if first_config is None:
                first_config = config
            elif config != first_config:
                changed = sorted(k for k in set(config) | set(first_config)
                                 if config.get(k) != first_config.get(k))
                raise CheckpointError(f"{path} builds a different network than {paths[0]} (config keys "
                                      f"{changed} differ): only checkpoints of one run can be averaged")
            yield model

    averaged = average_models(models())
    assert first_config is not None
    return averaged, first_config
