"""The pretrained Zero-DCE++ network of the ``neuro-low-light`` wheel (MIT), used as a baseline.

The wheel (pinned in ``constraints.txt``, installed ``--no-deps`` by ``make venv``: it declares opencv-python,
which it needs only for video I/O) ships ``neuro_low_light/weights/best_model.pth``, a training checkpoint whose
``model_state_dict`` holds a Zero-DCE++ curve-estimation network (7 convolutions, 8 curve iterations; 79k
parameters). The package's ``__init__`` imports its video utilities and with them ``cv2``, so
``import neuro_low_light.model`` fails without opencv. We therefore load the package's own ``model.py`` by file
path (it imports only torch): the network is the package's definition, not a copy, and its weights load with
``torch.load(..., weights_only=True)`` and ``load_state_dict(strict=True)``. ``tests/test_trico_baselines.py``
checks the output against the package's own inference class (``EnhanceModel``) with a stand-in ``cv2`` module.

The network takes and returns display-referred RGB in [0, 1] (``EnhanceModel`` feeds it
``to_tensor(PIL image)``) and keeps the resolution: it only brightens.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

__all__ = ["PACKAGE", "PINNED_VERSION", "ZeroDCEUnavailable", "package_dir", "weights_path", "model_module",
           "load_zero_dce", "zero_dce"]

PACKAGE = "neuro_low_light"
PINNED_VERSION = "0.1.0"
_INSTALL = f"pip install --no-deps neuro-low-light=={PINNED_VERSION} (make venv does this)"


class ZeroDCEUnavailable(RuntimeError):
    """The ``neuro-low-light`` wheel or its weights cannot be used; the message says why."""


def package_dir() -> Path:
    """Folder of the installed ``neuro_low_light`` package (found without importing it: no opencv needed)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ZeroDCEUnavailable(f"the neuro-low-light wheel is not installed: {_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations)))


def weights_path() -> Path:
    path = package_dir() / "weights" / "best_model.pth"
    if not path.is_file():
        raise ZeroDCEUnavailable(f"neuro-low-light is installed but ships no weights at {path}")
    return path


def model_module() -> ModuleType:
    """The package's own ``model.py``, loaded by path (its ``__init__`` would import opencv)."""
    name = "_neuro_low_light_model"
    if name in sys.modules:
        return sys.modules[name]
    path = package_dir() / "model.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ZeroDCEUnavailable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "ZeroDCEPP"):
        raise ZeroDCEUnavailable(f"{path} defines no ZeroDCEPP (neuro-low-light {PINNED_VERSION} expected)")
    sys.modules[name] = module
    return module


@lru_cache(maxsize=4)
def load_zero_dce(device: str = "cpu") -> nn.Module:
    """The pretrained network in eval mode, frozen (cached per device)."""
    ckpt = torch.load(weights_path(), map_location=device, weights_only=True)
    state = ckpt.get("model_state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ZeroDCEUnavailable("best_model.pth has no 'model_state_dict'")
    num_iterations = state["dce_net.conv7.weight"].shape[0] // 3
    model = model_module().ZeroDCEPP(num_iterations=num_iterations)
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device)


@torch.no_grad()
def zero_dce(x: torch.Tensor) -> torch.Tensor:
    """Brighten ``(N, 3, H, W)`` display RGB in [0, 1] with the pretrained network (same size out)."""
    model = load_zero_dce(str(x.device))
    enhanced, _ = model(x.float().clamp(0.0, 1.0))
    return enhanced.clamp(0.0, 1.0).to(x.dtype)
