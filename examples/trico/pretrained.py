"""The model the project ships (``examples/trico/pretrained/``) and the safetensors format it is stored in.

``trico_x2.safetensors`` holds the trainable tensors of a TriCo network (``model.trainable_state_dict()``,
float32) and, in the safetensors metadata (string to string), ``format: "trico"``, ``model_config`` (the
``build_model`` keyword arguments as JSON) and ``card`` (a short pointer to the JSON file). Reading it needs no
pickle at all. The format is the restoration toolkit's (:func:`examples.restoration.checkpoint.save_safetensors`). ``trico_x2.json`` beside it is the model card in data form: training details and the metrics
that ``python -m examples.trico export`` measured with ``evaluate`` on the embedded test split under both
degradations, for the model and every baseline (docs/trico.md, "Model card").

:func:`shipped_checkpoint` is what ``enhance`` and ``evaluate`` fall back on when no ``--checkpoint`` is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from examples.restoration import checkpoint as kit

from .checkpoint import TRICO_BUILDER

__all__ = ["PRETRAINED_DIR", "shipped_checkpoint", "save_safetensors", "load_safetensors", "read_metadata",
           "MAX_SHIPPED_BYTES"]

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
MAX_SHIPPED_BYTES = 8 * 1024 * 1024


def shipped_checkpoint(scale: int = 2) -> Path | None:
    """``examples/trico/pretrained/trico_x{scale}.safetensors`` when it exists, else ``None``."""
    path = PRETRAINED_DIR / f"trico_x{int(scale)}.safetensors"
    return path if path.is_file() else None


def save_safetensors(path: str | os.PathLike, model: nn.Module, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s trainable tensors and config to ``path`` (atomically: temporary file, then rename)."""
    return kit.save_safetensors(path, model, TRICO_BUILDER, metadata)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of ``path`` (raises ``ValueError`` when it is not a TriCo file)."""
    return kit.read_safetensors_metadata(path, TRICO_BUILDER)


def load_safetensors(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored by :func:`save_safetensors`; return ``(model in eval mode, config)``."""
    return kit.load_safetensors(path, TRICO_BUILDER, map_location)
