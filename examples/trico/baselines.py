"""Baselines measured next to TriCo in every evaluation: same images, same scale, same metrics.

Each baseline maps a low-light, low-resolution batch ``(N, 3, h, w)`` (display-referred RGB in [0, 1]) to
``(N, 3, s*h, s*w)``. None of them sees the ground truth.

- ``bicubic``: bicubic upscaling of the dark input (the floor).
- ``brightened_bicubic``: the one-liner in display space: a global gain that sets the image's mean display value
  to 0.45 (gain clipped to [1, 64]), then bicubic.
- ``linear_gain_bicubic``: the strong version a user would write: linearise (sRGB EOTF), one global gain that
  sets the mean linear luminance (Rec. 709 weights 0.2126 R + 0.7152 G + 0.0722 B) to 0.18, photographic
  mid-grey (the mean linear luminance of a well-exposed scene; gain clipped to [1, 256]), re-encode with the sRGB
  OETF (values clipped to [0, 1]), then bicubic. This is what an exposure slider does.
- ``clahe_bicubic``: contrast-limited adaptive histogram equalisation (``skimage.exposure.equalize_adapthist``,
  defaults: 8x8 tiles, clip limit 0.01, applied to the HSV value channel after a min-max stretch), then bicubic.
- ``zero_dce_bicubic`` / ``bicubic_zero_dce``: the pretrained Zero-DCE++ network of the ``neuro-low-light``
  wheel (:mod:`examples.trico.zero_dce`) before / after bicubic upscaling. When the wheel is missing these two
  raise :class:`~examples.trico.zero_dce.ZeroDCEUnavailable` and evaluations report them as skipped, with why.

``BASELINE_LABELS`` holds the names used in reports.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from examples.restoration.degradations import LUMA_WEIGHTS, linear_to_srgb, luminance, srgb_to_linear

__all__ = ["BASELINES", "BASELINE_LABELS", "LUMA_WEIGHTS", "MID_GREY", "bicubic_baseline",
           "brightened_bicubic_baseline", "linear_gain", "linear_gain_bicubic_baseline", "clahe",
           "clahe_bicubic_baseline", "zero_dce_bicubic_baseline", "bicubic_zero_dce_baseline"]

MID_GREY = 0.18


def bicubic_baseline(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upscaling of ``(N, 3, h, w)`` by ``scale`` (clamped to [0, 1])."""
    if scale == 1:
        return x.clamp(0.0, 1.0)
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


def brightened_bicubic_baseline(x: torch.Tensor, scale: int, target_mean: float = 0.45,
                                max_gain: float = 64.0) -> torch.Tensor:
    """Display-space gain so that each image's mean is ``target_mean`` (gain in [1, max_gain]), then bicubic."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    gain = (target_mean / mean).clamp(1.0, max_gain)
    return bicubic_baseline((x * gain).clamp(0.0, 1.0), scale)


def linear_gain(x: torch.Tensor, target: float = MID_GREY, max_gain: float = 256.0) -> torch.Tensor:
    """One global gain per image in linear light so that its mean linear luminance becomes ``target``."""
    lin = srgb_to_linear(x)
    mean = luminance(lin).mean(dim=(-2, -1)).view(-1, 1, 1, 1).clamp_min(1e-8)
    gain = (target / mean).clamp(1.0, max_gain)
    return linear_to_srgb(lin * gain)


def linear_gain_bicubic_baseline(x: torch.Tensor, scale: int) -> torch.Tensor:
    """:func:`linear_gain` (mean linear luminance to mid-grey), then bicubic."""
    return bicubic_baseline(linear_gain(x), scale)


def clahe(x: torch.Tensor, clip_limit: float = 0.01) -> torch.Tensor:
    """``skimage.exposure.equalize_adapthist`` on each image of the batch (same size out)."""
    from skimage.exposure import equalize_adapthist

    out = []
    for img in x.detach().cpu().double().clamp(0.0, 1.0):
        eq = equalize_adapthist(img.permute(1, 2, 0).numpy(), clip_limit=clip_limit)
        out.append(torch.from_numpy(np.ascontiguousarray(eq)).permute(2, 0, 1))
    return torch.stack(out).to(device=x.device, dtype=x.dtype)


def clahe_bicubic_baseline(x: torch.Tensor, scale: int) -> torch.Tensor:
    """CLAHE, then bicubic."""
    return bicubic_baseline(clahe(x), scale)


def zero_dce_bicubic_baseline(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Pretrained Zero-DCE++ on the low-resolution input, then bicubic."""
    from .zero_dce import zero_dce

    return bicubic_baseline(zero_dce(x), scale)


def bicubic_zero_dce_baseline(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic first, then the pretrained Zero-DCE++ at the output resolution."""
    from .zero_dce import zero_dce

    return zero_dce(bicubic_baseline(x, scale))


BASELINES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "bicubic": bicubic_baseline,
    "brightened_bicubic": brightened_bicubic_baseline,
    "linear_gain_bicubic": linear_gain_bicubic_baseline,
    "clahe_bicubic": clahe_bicubic_baseline,
    "zero_dce_bicubic": zero_dce_bicubic_baseline,
    "bicubic_zero_dce": bicubic_zero_dce_baseline,
}

BASELINE_LABELS: dict[str, str] = {
    "bicubic": "bicubic (dark input)",
    "brightened_bicubic": "display gain (mean 0.45) + bicubic",
    "linear_gain_bicubic": "linear gain (mid-grey) + bicubic",
    "clahe_bicubic": "CLAHE + bicubic",
    "zero_dce_bicubic": "Zero-DCE++ + bicubic",
    "bicubic_zero_dce": "bicubic + Zero-DCE++",
}
