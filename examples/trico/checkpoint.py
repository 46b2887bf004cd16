"""Saving and loading TriCo models: TriCo's builder registered with the restoration toolkit's loader.

The format and the loader are the toolkit's (:mod:`examples.restoration.checkpoint`): a dict with
``"model_config"`` (the ``build_model`` keyword arguments, ``model.config``), ``"model"`` (the state dict WITHOUT
the frozen semantic encoder, whose weights come from the SAM checkpoint path stored in the config) and
``"model_builder": "trico"``; at the top level or under ``"extra"`` (the trainer's hyperlevel engine checkpoints,
``checkpoints/last.pt``), or a ``.safetensors`` file (:mod:`examples.trico.pretrained`, the shipped model's
format). Files are written atomically and read with ``torch.load(..., weights_only=True)``. This module only
says how a TriCo network is built and which of its tensors are stored.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

import hyperlevel
from examples.restoration import checkpoint as kit

__all__ = ["save_model", "load_model", "model_checkpoint", "atomic_torch_save", "training_record", "TRICO_BUILDER"]


def _build(**config: Any) -> nn.Module:
    from .model import build_model

    return build_model(**config)


def _state_without_encoder(model: nn.Module) -> dict[str, torch.Tensor]:
    if hasattr(model, "trainable_state_dict"):
        return model.trainable_state_dict()
    return {k: v for k, v in model.state_dict().items() if not k.startswith("semantic.")}


def _load_state(model: nn.Module, state) -> None:
    model.load_trainable_state_dict(state)


#: how the toolkit rebuilds a TriCo network; the defaults fill keys of checkpoints written before the
#: auto-exposure front end and the input residual base existed
TRICO_BUILDER = kit.register_model_builder(kit.ModelBuilder(
    "trico", build=_build, state_dict=_state_without_encoder, load_state=_load_state, label="TriCo",
    config_defaults={"auto_exposure": None, "residual_base": "reflectance"}), replace=True)


def model_checkpoint(model: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (``extra`` entries are added; they may not override the model keys)."""
    return kit.model_checkpoint(model, TRICO_BUILDER, extra)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically and durably (temporary file, ``fsync``, ``os.replace``): the core's writer."""
    hyperlevel.checkpoint.save_atomic(obj, path)


def save_model(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (and ``extra`` entries) to ``path`` atomically."""
    kit.save_model(path, model, TRICO_BUILDER, extra)


def load_model(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the TriCo model stored in ``path`` (a checkpoint dict, an engine checkpoint, or a ``.safetensors``
    file); return ``(model in eval mode, config)``."""
    return kit.load_model(path, TRICO_BUILDER, map_location=map_location)


def training_record(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint says about its training, for files derived from it to carry on: ``train_config`` and
    ``loss_weights`` (an engine checkpoint keeps them under ``extra``), ``global_step`` and ``phase_name`` (the
    engine's); ``{}`` if none."""
    state = hyperlevel.checkpoint.load(path)
    if not isinstance(state, dict):
        return {}
    extra = state.get("extra") if isinstance(state.get("extra"), dict) else state
    record = {k: extra[k] for k in ("train_config", "loss_weights") if k in extra}
    record.update({k: state[k] for k in ("global_step", "phase_name") if k in state})
    return record
