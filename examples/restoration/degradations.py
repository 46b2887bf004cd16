"""Degradations shared by restoration tasks: elementary image maps, seeded draws, and a registry of models.

Elementary maps (pure functions of tensors in [0, 1]): the sRGB transfer curves (:func:`srgb_to_linear`,
:func:`linear_to_srgb`), :func:`quantize_8bit`, integer down-sampling with a choice of kernels
(:func:`resize_down`), Gaussian blur (:func:`gaussian_blur`) and a real JPEG round trip (:func:`jpeg_roundtrip`,
Pillow's encoder). Seeded draws (:func:`uniform`, :func:`log_uniform`, :func:`choice`) take a
``torch.Generator``: a degraded sample is a pure function of its seed.

A degradation *model* (:class:`Degradation`) draws its random parameters with ``sample(generator)`` and applies
them with ``apply(image, drawn=..., generator=..., **conditions)``; the conditions are the task's (TriCo passes
``scale`` and ``ev``, a denoising task a noise level). :func:`degrade_with` does both and returns the drawn
parameters too, so they can be reported with each test image. Models are registered by name in
:data:`DEGRADATIONS` (a task registers its own: ``DEGRADATIONS.register("seen", CameraDegradation)``) and built
from a YAML mapping by :func:`build_degradation`, whose errors name the unknown model or option.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .registry import Registry

__all__ = ["Degradation", "DEGRADATIONS", "register_degradation", "build_degradation", "degrade_with",
           "srgb_to_linear", "linear_to_srgb", "quantize_8bit", "resize_down", "gaussian_kernel1d", "gaussian_blur",
           "jpeg_roundtrip", "uniform", "log_uniform", "choice", "check_range", "KERNELS", "LUMA_WEIGHTS", "luminance"]

KERNELS = ("bicubic", "bilinear", "area", "gaussian")
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)  # Rec. 709 / sRGB primaries


# ------------------------------------------------------------------------------------------ elementary maps
def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB EOTF (IEC 61966-2-1): display values in [0, 1] to linear light."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB OETF: linear light in [0, 1] to display values."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)


def luminance(lin: torch.Tensor) -> torch.Tensor:
    """Relative luminance of linear RGB ``(..., 3, H, W)`` (Rec. 709 weights) as ``(..., H, W)``: what an
    exposure meter reads, and what auto-exposure and the exposure baselines set."""
    r, g, b = lin.unbind(-3)
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit image (values stay in [0, 1])."""
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` (radius ``ceil(3 sigma)``, at least 1)."""
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def resize_down(x: torch.Tensor, scale: int, kernel: str = "bicubic", sigma: float = 0.5) -> torch.Tensor:
    """Down-sample a ``(C, H, W)`` or ``(N, C, H, W)`` tensor by an integer ``scale`` with ``kernel``
    (``bicubic``/``bilinear``: anti-aliased; ``area``: box average; ``gaussian``: blur with ``sigma * scale``
    then keep every ``scale``-th pixel, phase-centred)."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown down-sampling kernel {kernel!r}; known: {list(KERNELS)}")
    if scale == 1:
        return x
    squeeze = x.dim() == 3
    xb = x.unsqueeze(0) if squeeze else x
    h, w = xb.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by the scale {scale}")
    size = (h // scale, w // scale)
    if kernel in ("bicubic", "bilinear"):
        out = F.interpolate(xb, size=size, mode=kernel, antialias=True, align_corners=False)
    elif kernel == "area":
        out = F.avg_pool2d(xb, scale)
    else:
        k = gaussian_kernel1d(float(sigma) * scale).to(xb)
        c = xb.shape[1]
        pad = k.numel() // 2
        y = F.pad(xb, (pad, pad, pad, pad), mode="reflect")
        y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        off = scale // 2
        out = y[..., off::scale, off::scale][..., : size[0], : size[1]]
    out = out.clamp(0.0, 1.0)
    return out[0] if squeeze else out


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode a ``(3, H, W)`` image in [0, 1] as a baseline JPEG (Pillow, 4:2:0) and decode it again."""
    from PIL import Image

    arr = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as img:
        out = np.asarray(img.convert("RGB"))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255.0


def uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    """One draw of U(lo, hi) from ``gen``."""
    return float(lo) + (float(hi) - float(lo)) * float(torch.rand((), generator=gen))


def log_uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    """One log-uniform draw in [lo, hi] (lo > 0) from ``gen``."""
    return math.exp(uniform(gen, math.log(lo), math.log(hi)))


def choice(gen: torch.Generator, options: Sequence[Any]) -> Any:
    """One of ``options``, uniformly, from ``gen``."""
    return options[int(torch.randint(0, len(options), (1,), generator=gen))]


def check_range(name: str, pair: Sequence[float], lo: float = 0.0, positive: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``pair`` is ``[lo_, hi_]`` with ``lo <= lo_ <= hi_`` (``lo_ > 0`` if
    ``positive``)."""
    if len(pair) != 2 or not lo <= pair[0] <= pair[1] or (positive and pair[0] <= 0):
        raise ValueError(f"{name} must be [lo, hi] with {lo} {'<' if positive else '<='} lo <= hi, got {list(pair)}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``(C, H, W)`` or ``(N, C, H, W)`` tensor (reflect padding, same size)."""
    if sigma <= 0:
        return x
    squeeze = x.dim() == 3
    xb = x.unsqueeze(0) if squeeze else x
    k = gaussian_kernel1d(float(sigma)).to(xb)
    c, pad = xb.shape[1], k.numel() // 2
    y = F.pad(xb, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0] if squeeze else y


# ------------------------------------------------------------------------------------------------- models
class Degradation(Protocol):
    """A degradation model: ``sample`` draws its parameters, ``apply`` uses them (both deterministic given the
    generator); ``to_dict`` gives its settings for reports."""

    name: str

    def sample(self, generator: torch.Generator) -> dict[str, Any]: ...

    def apply(self, image: torch.Tensor, *, drawn: dict[str, Any], generator: torch.Generator, **conditions: Any
              ) -> torch.Tensor: ...


def degrade_with(model: Degradation, image: torch.Tensor, generator: torch.Generator, **conditions: Any
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(degraded image, drawn parameters)``: ``model`` applied to ``image`` (float32) under ``conditions``."""
    drawn = model.sample(generator)
    out = model.apply(image.to(torch.float32), drawn=drawn, generator=generator, **conditions)
    return out, drawn


#: name -> factory (usually a frozen dataclass) of a degradation model
DEGRADATIONS: Registry[Callable[..., Degradation]] = Registry("degradation")


def register_degradation(name: str, factory: Callable[..., Degradation], replace: bool = False):
    """Register ``factory`` (called with the YAML options as keyword arguments) under ``name``."""
    return DEGRADATIONS.register(name, factory, replace=replace)


def _options_of(factory: Callable[..., Any]) -> set[str] | None:
    if dataclasses.is_dataclass(factory):
        return {f.name for f in dataclasses.fields(factory) if f.init}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_degradation(name: str, registry: Registry | None = None, **options: Any) -> Degradation:
    """The registered degradation ``name`` with ``options`` overriding its defaults (lists become tuples, as
    YAML has no tuples). Unknown names and options raise ``ValueError`` listing the known ones."""
    registry = DEGRADATIONS if registry is None else registry
    if name not in registry:
        raise ValueError(f"unknown degradation {name!r}; known: {sorted(registry.names())}")
    factory = registry.get(name)
    known = _options_of(factory)
    unknown = sorted(set(options) - known) if known is not None else []
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for degradation {name!r}; known: {sorted(known)}")
    return factory(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items()})
