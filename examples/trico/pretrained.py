"""The model the project ships (``examples/trico/pretrained/``) and the safetensors format it is stored in.

``trico_x2.safetensors`` holds the trainable tensors of a TriCo network (``model.trainable_state_dict()``,
float32) and, in the safetensors metadata (string to string), ``format: "trico"``, ``model_config`` (the
``build_model`` keyword arguments as JSON) and ``card`` (a short pointer to the JSON file). Reading it needs no
pickle at all. ``trico_x2.json`` beside it is the model card in data form: training details and the metrics
that ``python -m examples.trico export`` measured with ``evaluate`` on the embedded test split under both
degradations, for the model and every baseline (docs/trico.md, "Model card").

:func:`shipped_checkpoint` is what ``enhance`` and ``evaluate`` fall back on when no ``--checkpoint`` is given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["PRETRAINED_DIR", "shipped_checkpoint", "save_safetensors", "load_safetensors", "read_metadata",
           "MAX_SHIPPED_BYTES"]

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
MAX_SHIPPED_BYTES = 8 * 1024 * 1024
_FORMAT = "trico"


def shipped_checkpoint(scale: int = 2) -> Path | None:
    """``examples/trico/pretrained/trico_x{scale}.safetensors`` when it exists, else ``None``."""
    path = PRETRAINED_DIR / f"trico_x{int(scale)}.safetensors"
    return path if path.is_file() else None


def save_safetensors(path: str | os.PathLike, model: nn.Module, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s trainable tensors and config to ``path`` (atomically: temporary file, then rename)."""
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError("model has no plain-dict .config; build it with examples.trico.build_model")
    state = model.trainable_state_dict() if hasattr(model, "trainable_state_dict") else model.state_dict()
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() if v.is_floating_point()
               else v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"format": _FORMAT, "model_config": json.dumps(config, sort_keys=True)}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of ``path`` (raises ``ValueError`` when it is not a TriCo file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"cannot read {str(path)!r} as safetensors: {exc}") from exc
    if meta.get("format") != _FORMAT or "model_config" not in meta:
        raise ValueError(f"{str(path)!r} is not a TriCo safetensors file (metadata {sorted(meta)})")
    return meta


def load_safetensors(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored by :func:`save_safetensors`; return ``(model in eval mode, config)``."""
    from safetensors.torch import load_file

    from .model import build_model

    meta = read_metadata(path)
    config = json.loads(meta["model_config"])
    if not isinstance(config, dict):
        raise ValueError(f"{str(path)!r}: model_config is not a JSON object")
    device = map_location if isinstance(map_location, str | torch.device) else "cpu"
    state = load_file(str(path), device=str(device))
    model = build_model(**config)
    model.load_trainable_state_dict(state)
    model.to(device)
    model.eval()
    return model, config
