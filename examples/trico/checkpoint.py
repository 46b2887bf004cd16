"""Saving and loading TriCo models.

A checkpoint is a ``dict`` with at least

- ``"model_config"``: the plain-dict ``build_model`` keyword arguments (``model.config``), and
- ``"model"``: the model's state dict (trainable parameters and buffers) WITHOUT the frozen semantic encoder,
  whose weights come from the SAM checkpoint path stored in the config.

Other code may store larger dicts holding these two keys, at the top level or under ``"extra"`` (the
trainer's hyperlevel engine checkpoints, ``checkpoints/last.pt``); ``load_model`` accepts any of them. A ``.safetensors`` file
(:mod:`examples.trico.pretrained`, the shipped model's format) loads too. Files
are written atomically (temporary file in the same directory, then ``os.replace``) and read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

import hyperlevel

__all__ = ["save_model", "load_model", "model_checkpoint", "atomic_torch_save"]


def _state_without_encoder(model: nn.Module) -> dict[str, torch.Tensor]:
    if hasattr(model, "trainable_state_dict"):
        return model.trainable_state_dict()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("semantic.")}


def model_checkpoint(model: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (``extra`` entries are added; they may not override the two keys)."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError("model has no plain-dict .config; build it with examples.trico.build_model")
    ckpt: dict[str, Any] = dict(extra or {})
    if "model" in ckpt or "model_config" in ckpt:
        raise ValueError("extra may not contain the keys 'model' or 'model_config'")
    ckpt["model_config"] = dict(config)
    ckpt["model"] = {k: v.detach().cpu() for k, v in _state_without_encoder(model).items()}
    return ckpt


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically and durably (temporary file, ``fsync``, ``os.replace``): the core's writer."""
    hyperlevel.checkpoint.save_atomic(obj, path)


def save_model(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (and ``extra`` entries) to ``path`` atomically."""
    atomic_torch_save(model_checkpoint(model, extra), path)


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (any dict with ``model_config`` and ``model``, at the top level or
    under ``"extra"`` as in the trainer's engine checkpoints), or a ``.safetensors`` file written by
    :func:`examples.trico.pretrained.save_safetensors` (the shipped model); return ``(model, config)``. The model
    is in eval mode."""
    from hyperlevel.checkpoint import CheckpointError

    from .model import build_model

    path = os.fspath(path)
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint not found: {path!r}")
        from .pretrained import load_safetensors

        return load_safetensors(path, map_location=map_location)
    # the core's loader: weights_only, the size/checksum record, one error naming the file (CheckpointError,
    # a ValueError), never the unsafe advice to load with weights_only=False
    ckpt = hyperlevel.checkpoint.load(path, map_location=map_location)
    if isinstance(ckpt, dict) and "model_config" not in ckpt and isinstance(ckpt.get("extra"), dict):
        ckpt = ckpt["extra"]  # a hyperlevel engine checkpoint: the trainer stores the model under "extra"
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a TriCo checkpoint (needs 'model_config' and 'model'; has {keys}); "
                              "give a file written by train or save_model")
    config = dict(ckpt["model_config"])
    config.setdefault("auto_exposure", None)  # checkpoints from before the auto-exposure front end
    config.setdefault("residual_base", "reflectance")  # ... and from before the input residual base
    try:
        model = build_model(**config)
        model.load_trainable_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError, KeyError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot rebuild the model of checkpoint {path}: {first}") from None
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model.to(map_location)
    model.eval()
    return model, config
