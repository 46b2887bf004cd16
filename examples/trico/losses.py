"""The TriCo candidate loss space T (paper Sec. 3.4), in the fixed order of the learned weights.

``LOSS_NAMES = ("luminance", "l1", "perceptual", "ssim", "tv")``; the paper's converged weights
``[0.473, 2.177, 0.181, 0.901, 0.195]`` refer to these five in this order.

All losses are pure functions of tensors (no in-place operations, no data-dependent Python control flow on
values), so they work under ``torch.func.functional_call`` and support double backward. Each returns a
scalar that is the mean over the batch:

- ``luminance`` (Eq. 8, self-regularised luminance): for each sample and channel ``c``,
  ``m_c = mean_{h,w} v_c`` (the spatial mean of channel c) and the term ``exp(|m_c - mu_c - sigma_c|) - 1``
  with ImageNet ``mu = (0.485, 0.456, 0.406)``, ``sigma = (0.229, 0.224, 0.225)``. The three channel
  terms are averaged (mean over channels) and then averaged over the batch. A one-channel ``v``
  (an illumination map) is compared with all three channel targets. Eq. 8 is written with ``mu + sigma``
  as the target and we keep it literally.
- ``l1`` (Eq. 9): mean absolute error over all elements.
- ``perceptual`` (Eq. 10): L1 distance between VGG19 features of ``y`` and ``target`` at the first ReLU of
  each of the five conv blocks (``relu1_1, relu2_1, relu3_1, relu4_1, relu5_1``, i.e. "conv1..conv5"),
  mean absolute difference per layer, averaged over the five layers. Inputs are ImageNet-normalised; the
  network is frozen and in eval mode.
- ``ssim``: ``1 - SSIM`` with the standard Gaussian window (11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data
  range 1, no padding, no down-sampling), per channel, averaged; SSIM maps come from piq's implementation.
- ``tv`` (Eq. 11): ``mean |y[..., i, j+1] - y[..., i, j]| + mean |y[..., i+1, j] - y[..., i, j]|`` over
  batch, channels and pixels. Eq. 11 sums; the mean keeps the magnitude independent of the crop size and
  batch size, so one learned weight stays meaningful across crop sizes.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from examples.restoration.metrics.fullref import ssim_value

__all__ = ["LOSS_NAMES", "PAPER_WEIGHTS", "IMAGENET_MEAN", "IMAGENET_STD", "VGG19_FILENAME",
           "PerceptualWeightsMissing", "luminance_loss", "l1_loss", "ssim_loss", "ssim_value", "tv_loss",
           "VGG19Features", "perceptual_loss", "CandidateLosses", "default_vgg19_path"]

log = logging.getLogger(__name__)

LOSS_NAMES: tuple[str, ...] = ("luminance", "l1", "perceptual", "ssim", "tv")
PAPER_WEIGHTS: tuple[float, ...] = (0.473, 2.177, 0.181, 0.901, 0.195)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_ENV = "TRICO_VGG19_WEIGHTS"
# Indices in torchvision's vgg19().features of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_RELU_X_1 = (1, 6, 11, 20, 29)


class PerceptualWeightsMissing(FileNotFoundError):
    """Raised when no VGG19 weights can be found and random initialisation is not allowed."""


def _channel_stats(like: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def luminance_loss(v: torch.Tensor) -> torch.Tensor:
    """Self-regularised luminance loss (Eq. 8) of ``v`` ``(N, 1|3, H, W)``: mean over channels and batch."""
    if v.dim() != 4 or v.shape[1] not in (1, 3):
        raise ValueError(f"luminance loss expects (N, 1 or 3, H, W), got {tuple(v.shape)}")
    m = v.mean(dim=(-2, -1), keepdim=True)  # (N, C, 1, 1) spatial means
    target = _channel_stats(v, IMAGENET_MEAN) + _channel_stats(v, IMAGENET_STD)
    return (torch.exp((m - target).abs()) - 1.0).mean()


def l1_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Content loss (Eq. 9): ``mean |y - target|``."""
    return (y - target).abs().mean()


def tv_loss(y: torch.Tensor) -> torch.Tensor:
    """Total variation (Eq. 11), anisotropic L1, mean over elements of each difference image, summed."""
    dh = (y[..., :, 1:] - y[..., :, :-1]).abs().mean()
    dv = (y[..., 1:, :] - y[..., :-1, :]).abs().mean()
    return dh + dv


def ssim_loss(y: torch.Tensor, target: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """``1 - SSIM(y, target)``."""
    return 1.0 - ssim_value(y, target, kernel_size=kernel_size, sigma=sigma)


def default_vgg19_path() -> Path:
    """torchvision's cache location of the ImageNet VGG19 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _missing_weights_message(tried: list[str]) -> str:
    return (
        "VGG19 weights for the perceptual loss were not found (looked in: " + ", ".join(tried) + ").\n"
        "Provide them in one of these ways (no download happens at run time):\n"
        f"  1. copy torchvision's ImageNet file {VGG19_FILENAME} (from "
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth, or on a machine with internet:\n"
        "     python -c \"import torchvision; torchvision.models.vgg19(weights='IMAGENET1K_V1')\")\n"
        f"     into {default_vgg19_path()} ;\n"
        "  2. or pass its path: CandidateLosses(vgg_weights='/path/vgg19-dcbb9e9d.pth') / the config key "
        f"losses.vgg_weights, or set the environment variable {VGG19_ENV}=/path/to/file;\n"
        "  3. or, for smoke tests only, allow random initialisation explicitly (allow_random_init=True / "
        "losses.allow_random_init: true); the perceptual term is then NOT a perceptual loss."
    )


def _vgg19_features() -> nn.Sequential:
    """torchvision's VGG19 ``features`` (built without the 100 M-parameter classifier when possible)."""
    try:
        from torchvision.models.vgg import cfgs, make_layers

        return make_layers(cfgs["E"], batch_norm=False)
    except (ImportError, KeyError):  # private helpers moved: build the full model
        from torchvision.models import vgg19

        return vgg19(weights=None).features


class VGG19Features(nn.Module):
    """Frozen VGG19 feature extractor returning the activations at ``layers`` (indices into ``features``)."""

    def __init__(self, weights: str | os.PathLike | None = None, allow_random_init: bool = False,
                 layers: Sequence[int] = VGG19_RELU_X_1):
        super().__init__()
        self.layers = tuple(int(i) for i in layers)
        features = _vgg19_features()[: max(self.layers) + 1]
        tried: list[str] = []
        candidates: list[Path] = []
        if weights is not None:
            candidates.append(Path(weights))
        elif os.environ.get(VGG19_ENV):
            candidates.append(Path(os.environ[VGG19_ENV]))
        else:
            candidates.append(default_vgg19_path())
        path = None
        for cand in candidates:
            tried.append(str(cand))
            if cand.is_file():
                path = cand
                break
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            feat_state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            if not feat_state:  # a file that holds only the features module
                feat_state = dict(state)
            feat_state = {k: v for k, v in feat_state.items() if int(k.split(".")[0]) < len(features)}
            missing, unexpected = features.load_state_dict(feat_state, strict=False)
            if missing or unexpected:
                raise ValueError(f"VGG19 weights {str(path)!r} do not match torchvision's vgg19 features "
                                 f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
            self.source = str(path)
        elif weights is not None and not allow_random_init:
            raise PerceptualWeightsMissing(_missing_weights_message(tried))
        elif allow_random_init:
            msg = ("VGG19 weights not found (looked in: " + ", ".join(tried) + "); using RANDOM initialisation "
                   "for the perceptual loss because allow_random_init=True. Results are not comparable.")
            warnings.warn(msg, stacklevel=2)  # once: logging it as well printed it twice (or three times)
            self.source = "random-init"
        else:
            raise PerceptualWeightsMissing(_missing_weights_message(tried))
        for p in features.parameters():
            p.requires_grad_(False)
        # torchvision's ReLUs are in-place; use out-of-place ones (pure functions of tensors).
        features = nn.Sequential(*[nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m for m in features])
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:  # always stays in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        outs = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.layers:
                outs.append(h)
        return outs


def perceptual_loss(y: torch.Tensor, target: torch.Tensor, vgg: VGG19Features,
                    layer_weights: Sequence[float] | None = None) -> torch.Tensor:
    """Eq. 10: weighted mean over layers of ``mean |VGG_j(y) - VGG_j(target)|`` (target features detached)."""
    fy = vgg(y)
    with torch.no_grad():
        ft = vgg(target.detach())
    weights = layer_weights or [1.0] * len(fy)
    total = sum(w * (a - b).abs().mean() for w, a, b in zip(weights, fy, ft))
    return total / float(sum(weights))


class CandidateLosses:
    """The five candidate losses; ``losses(y, target, v)`` returns an ordered dict ``{name: scalar}``.

    Args:
        vgg_weights: path of torchvision's ``vgg19-dcbb9e9d.pth`` (default: env ``TRICO_VGG19_WEIGHTS``
            or torchvision's cache ``torch.hub.get_dir()/checkpoints/``).
        allow_random_init: use a randomly initialised VGG19 (logged as a warning) when no weights exist.
        ssim_kernel_size: SSIM window size.
        ssim_sigma: SSIM window's Gaussian standard deviation.
        device: where the VGG19 lives (``.to(device)`` moves it later).

    ``v`` is the tensor the luminance loss regularises (the enhanced / illumination output); ``None`` uses
    ``y``. Not an ``nn.Module`` on purpose: its frozen VGG19 never shows up in a model's parameters.

    ``names``: the candidate set T actually used (a subset of ``LOSS_NAMES``, in that order). Without
    ``"perceptual"`` no VGG19 is built: where no pretrained VGG19 exists, a randomly initialised one measures
    nothing a person would call perceptual, and its forward/backward passes are most of a small network's step.
    """

    def __init__(self, vgg_weights: str | os.PathLike | None = None, allow_random_init: bool = False,
                 ssim_kernel_size: int = 11, ssim_sigma: float = 1.5, device: str | torch.device = "cpu",
                 names: Sequence[str] = LOSS_NAMES):
        unknown = [n for n in names if n not in LOSS_NAMES]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"candidate losses: a non-empty subset of {list(LOSS_NAMES)} without repeats, "
                             f"got {list(names)}")
        self.names = tuple(n for n in LOSS_NAMES if n in names)
        self.vgg = (VGG19Features(vgg_weights, allow_random_init=allow_random_init).to(device)
                    if "perceptual" in self.names else None)
        self.ssim_kernel_size = int(ssim_kernel_size)
        self.ssim_sigma = float(ssim_sigma)

    @property
    def vgg_source(self) -> str:
        return self.vgg.source if self.vgg is not None else "not used"

    def to(self, device: str | torch.device) -> CandidateLosses:
        if self.vgg is not None:
            self.vgg = self.vgg.to(device)
        return self

    def __call__(self, y: torch.Tensor, target: torch.Tensor, v: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
        if y.shape != target.shape:
            raise ValueError(f"output {tuple(y.shape)} and target {tuple(target.shape)} differ in shape")
        terms = {
            "luminance": lambda: luminance_loss(y if v is None else v),
            "l1": lambda: l1_loss(y, target),
            "perceptual": lambda: perceptual_loss(y, target, self.vgg),
            "ssim": lambda: ssim_loss(y, target, self.ssim_kernel_size, self.ssim_sigma),
            "tv": lambda: tv_loss(y),
        }
        return {n: terms[n]() for n in self.names}

    def stacked(self, y: torch.Tensor, target: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
        """The losses as a ``(len(names),)`` tensor in ``names`` order."""
        d = self(y, target, v)
        return torch.stack([d[n] for n in self.names])
