"""Model-agnostic model checkpoints: a task registers how its model is built, the toolkit saves and reloads it.

A checkpoint is a ``dict`` with at least

- ``"model_config"``: the plain-dict keyword arguments of the task's builder (``model.config``), and
- ``"model"``: the model's state dict (as the builder's ``state_dict`` hook returns it: a task may leave out
  frozen parts whose weights come from elsewhere),

plus ``"model_builder"``: the registered builder name (older files may lack it: then the caller names the
builder). Larger dicts holding these keys, at the top level or under ``"extra"`` (hyperlevel engine checkpoints,
``checkpoints/last.pt``), load too. Files are written atomically by ``hyperlevel.checkpoint.save_atomic`` and read
by ``hyperlevel.checkpoint.load`` (``weights_only=True``, size/checksum record, one :class:`CheckpointError`
naming the file). A ``.safetensors`` file (no pickle at all) stores the state tensors and, in its metadata,
``format`` (the builder name) and ``model_config`` (JSON).

A task registers its builder once (usually in its own ``checkpoint`` module)::

    MODEL_BUILDERS.register("mytask", ModelBuilder("mytask", build=build_model, label="MyTask"))
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import hyperlevel
from hyperlevel.checkpoint import CheckpointError

from .registry import Registry

__all__ = ["ModelBuilder", "MODEL_BUILDERS", "register_model_builder", "get_builder", "model_checkpoint",
           "save_model", "load_model", "save_safetensors", "load_safetensors", "read_safetensors_metadata",
           "CheckpointError"]


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return model.state_dict()


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    model.load_state_dict(state)


@dataclass(frozen=True)
class ModelBuilder:
    """How a task's model is rebuilt from a checkpoint.

    ``build(**config)`` returns the model (with a plain-dict ``.config`` it was built from); ``state_dict(model)``
    / ``load_state(model, state)`` store and restore its tensors (default: the full ``state_dict``);
    ``config_defaults``: values for keys that checkpoints written before the key existed lack; ``label``: the
    task's name in error messages.
    """

    name: str
    build: Callable[..., nn.Module]
    state_dict: Callable[[nn.Module], Mapping[str, torch.Tensor]] = _state_dict
    load_state: Callable[[nn.Module, Mapping[str, torch.Tensor]], None] = _load_state
    config_defaults: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name


MODEL_BUILDERS: Registry[ModelBuilder] = Registry("model builder")


def register_model_builder(builder: ModelBuilder, replace: bool = False) -> ModelBuilder:
    """Register ``builder`` under its name (the name stored in its checkpoints)."""
    return MODEL_BUILDERS.register(builder.name, builder, replace=replace)


def get_builder(builder: str | ModelBuilder) -> ModelBuilder:
    return builder if isinstance(builder, ModelBuilder) else MODEL_BUILDERS.get(builder)


def _config_of(model: nn.Module, builder: ModelBuilder) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"model has no plain-dict .config; build it with the {builder.title} builder")
    return dict(config)


def model_checkpoint(model: nn.Module, builder: str | ModelBuilder, extra: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (``extra`` entries are added; they may not override the model keys)."""
    b = get_builder(builder)
    ckpt: dict[str, Any] = dict(extra or {})
    clash = sorted({"model", "model_config", "model_builder"} & set(ckpt))
    if clash:
        raise ValueError(f"extra may not contain the keys 'model' or 'model_config' (got {clash})")
    ckpt["model_config"] = _config_of(model, b)
    ckpt["model"] = {k: v.detach().cpu() for k, v in b.state_dict(model).items()}
    ckpt["model_builder"] = b.name
    return ckpt


def save_model(path: str | os.PathLike, model: nn.Module, builder: str | ModelBuilder,
               extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (and ``extra`` entries) to ``path`` atomically."""
    hyperlevel.checkpoint.save_atomic(model_checkpoint(model, builder, extra), path)


def _rebuild(builder: ModelBuilder, config: dict[str, Any], state: Mapping[str, torch.Tensor], path: str,
             map_location: Any) -> tuple[nn.Module, dict[str, Any]]:
    for k, v in builder.config_defaults.items():
        config.setdefault(k, v)
    try:
        model = builder.build(**config)
        builder.load_state(model, state)
    except (TypeError, ValueError, RuntimeError, KeyError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot rebuild the model of checkpoint {path}: {first}") from None
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model.to(map_location)
    model.eval()
    return model, config


def load_model(path: str | os.PathLike, builder: str | ModelBuilder | None = None, map_location: Any = "cpu"
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in ``path`` (a checkpoint dict as in the module docstring, or a ``.safetensors``
    file); return ``(model in eval mode, config)``. ``builder``: the registered name or a :class:`ModelBuilder`;
    ``None`` takes the name the file records. A file recording another builder is refused."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint not found: {path!r}")
        return load_safetensors(path, builder, map_location)
    ckpt = hyperlevel.checkpoint.load(path, map_location=map_location)
    if isinstance(ckpt, dict) and "model_config" not in ckpt and isinstance(ckpt.get("extra"), dict):
        ckpt = ckpt["extra"]  # a hyperlevel engine checkpoint: the trainer stores the model under "extra"
    b = get_builder(builder) if builder is not None else None
    title = b.title if b is not None else "model"
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a {title} checkpoint (needs 'model_config' and 'model'; has {keys}); "
                              "give a file written by train or save_model")
    recorded = ckpt.get("model_builder")
    if b is None:
        if recorded is None:
            raise CheckpointError(f"{path} does not record its model builder; name it (registered: "
                                  f"{MODEL_BUILDERS.names()})")
        b = get_builder(recorded)
    elif recorded is not None and recorded != b.name:
        raise CheckpointError(f"{path} holds a {recorded!r} model, not a {b.title} one")
    return _rebuild(b, dict(ckpt["model_config"]), ckpt["model"], path, map_location)


# ------------------------------------------------------------------------------------------------ safetensors
def save_safetensors(path: str | os.PathLike, model: nn.Module, builder: str | ModelBuilder,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s state tensors (floating point as float32) and config to ``path`` atomically."""
    from safetensors.torch import save_file

    b = get_builder(builder)
    config = _config_of(model, b)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() if v.is_floating_point()
               else v.detach().cpu().contiguous() for k, v in b.state_dict(model).items()}
    meta = {"format": b.name, "model_config": json.dumps(config, sort_keys=True)}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_safetensors_metadata(path: str | os.PathLike, builder: str | ModelBuilder | None = None
                              ) -> dict[str, str]:
    """The metadata of a model safetensors file; ``ValueError`` when it is not one (of ``builder``, if given)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"cannot read {str(path)!r} as safetensors: {exc}") from exc
    b = get_builder(builder) if builder is not None else None
    if "model_config" not in meta or "format" not in meta or (b is not None and meta["format"] != b.name):
        raise ValueError(f"{str(path)!r} is not a {b.title if b else 'model'} safetensors file (metadata "
                         f"{sorted(meta)})")
    return meta


def load_safetensors(path: str | os.PathLike, builder: str | ModelBuilder | None = None,
                     map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored by :func:`save_safetensors`; return ``(model in eval mode, config)``."""
    from safetensors.torch import load_file

    meta = read_safetensors_metadata(path, builder)
    b = get_builder(builder if builder is not None else meta["format"])
    config = json.loads(meta["model_config"])
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r}: model_config is not a JSON object")
    device = map_location if isinstance(map_location, str | torch.device) else "cpu"
    state = load_file(str(path), device=str(device))
    return _rebuild(b, config, state, os.fspath(path), device)
