"""Degradation models: how a dark, small photo is made from a normal-light one.

Two families, deliberately different, so that a model trained on one is *evaluated* on the other as well:

``seen`` (:class:`CameraDegradation`, the training model; every training config uses it)
    1. linearise the normal-light sRGB photo (IEC 61966-2-1 EOTF);
    2. down-sample by ``scale`` in linear light with a kernel drawn from ``kernels`` (anti-aliased bicubic,
       anti-aliased bilinear, box/area, or a Gaussian blur with sigma ~ U(``blur_sigma``) * scale followed by
       decimation): a sensor that captures at the low resolution;
    3. cut the exposure by ``ev`` stops (the caller draws ``ev``: ``data.ev_range``, 2 .. 5 by default);
    4. Poisson-Gaussian sensor noise, independent per pixel and channel: shot noise for ``full_well``
       photo-electrons at white (log-uniform in ``full_well_range``) plus Gaussian read noise (std log-uniform in
       ``read_noise_range``, linear units of white);
    5. a camera tone curve drawn from ``tone_curves``: the sRGB OETF, a power law ``x ** (1 / gamma)`` with
       ``gamma`` ~ U(``gamma_range``), or the sRGB OETF followed by a contrast S-curve of strength
       ~ U(``s_curve_range``);
    6. 8-bit quantisation, then, with probability ``jpeg_prob``, JPEG compression at a quality ~ U(``jpeg_quality``)
       (Pillow's encoder, 4:2:0 chroma sub-sampling, as phones write).

``unseen`` (:class:`UnseenDegradation`, evaluation only: no training config may name it)
    Same photo-to-sensor geometry (bicubic down-sampling in linear light, exposure cut), then a *different*
    noise model and tone curve:

    - noise is added on an RGGB Bayer mosaic, then demosaiced bilinearly: spatially correlated colour noise that
      no independent per-pixel model produces; the shot noise is a Gaussian approximation with per-channel gains
      (green collects twice the photo-electrons of red and blue), plus row (banding) noise;
    - the tone curve is an extended Reinhard global operator with white point ``white`` followed by a 1/2.2 power
      law: a compressive curve unlike the sRGB / power / S-curves of the training model.

The elementary maps, the seeded draws and the registry are the restoration toolkit's
(:mod:`examples.restoration.degradations`); the two models register themselves there. Every draw comes from the
``torch.Generator`` passed in, so a sample is a pure function of its seed; the drawn
parameters are returned by :meth:`Degradation.sample` (and reported with each test image).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from examples.restoration import degradations as kit
from examples.restoration.degradations import (  # noqa: F401  (the elementary maps' old import path)
    KERNELS,
    Degradation,
    check_range,
    choice,
    jpeg_roundtrip,
    linear_to_srgb,
    log_uniform,
    quantize_8bit,
    resize_down,
    srgb_to_linear,
    uniform,
)

__all__ = ["Degradation", "degrade_with", "CameraDegradation", "UnseenDegradation", "DEGRADATIONS", "build_degradation",
           "srgb_to_linear", "linear_to_srgb", "quantize_8bit", "resize_down", "jpeg_roundtrip"]

TONE_CURVES = ("srgb", "gamma", "srgb_s_curve")


def _s_curve(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Contrast S-curve around mid-grey that fixes 0 and 1: ``x + strength * x (1 - x) (2 x - 1)``, monotone
    for ``|strength| <= 1``."""
    return (x + strength * x * (1.0 - x) * (2.0 * x - 1.0)).clamp(0.0, 1.0)


def degrade_with(model: Degradation, hr: torch.Tensor, scale: int, ev: float, generator: torch.Generator
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(lr, drawn parameters)``: ``model`` applied to the normal-light ``hr`` ``(3, H, W)`` in [0, 1] with the
    exposure cut by ``ev`` stops (the toolkit's :func:`~examples.restoration.degradations.degrade_with` with
    TriCo's two conditions)."""
    if not math.isfinite(float(ev)) or ev < 0:
        raise ValueError(f"ev must be a finite number of stops >= 0, got {ev}")
    return kit.degrade_with(model, hr, generator, scale=int(scale), ev=float(ev))


@dataclass(frozen=True)
class CameraDegradation:
    """The training ("seen") degradation; see the module docstring. Every range is ``[lo, hi]``."""

    full_well_range: tuple[float, float] = (300.0, 3000.0)
    read_noise_range: tuple[float, float] = (0.0005, 0.004)
    kernels: tuple[str, ...] = KERNELS
    blur_sigma: tuple[float, float] = (0.35, 0.6)
    tone_curves: tuple[str, ...] = TONE_CURVES
    gamma_range: tuple[float, float] = (1.8, 2.4)
    s_curve_range: tuple[float, float] = (0.0, 0.6)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)
    quantize: bool = True
    name: str = field(default="seen", init=False)

    def __post_init__(self):
        check_range("full_well_range", self.full_well_range, positive=True)
        check_range("read_noise_range", self.read_noise_range, positive=True)
        check_range("blur_sigma", self.blur_sigma, positive=True)
        check_range("gamma_range", self.gamma_range, positive=True)
        check_range("s_curve_range", self.s_curve_range)
        if self.s_curve_range[1] > 1.0:
            raise ValueError(f"s_curve_range must lie in [0, 1] (monotone curve), got {list(self.s_curve_range)}")
        check_range("jpeg_quality", self.jpeg_quality, lo=1)
        if self.jpeg_quality[1] > 100:
            raise ValueError(f"jpeg_quality must lie in [1, 100], got {list(self.jpeg_quality)}")
        if not 0.0 <= self.jpeg_prob <= 1.0:
            raise ValueError(f"jpeg_prob must lie in [0, 1], got {self.jpeg_prob}")
        for k in self.kernels:
            if k not in KERNELS:
                raise ValueError(f"unknown kernel {k!r} in kernels; known: {list(KERNELS)}")
        for t in self.tone_curves:
            if t not in TONE_CURVES:
                raise ValueError(f"unknown tone curve {t!r} in tone_curves; known: {list(TONE_CURVES)}")
        if not self.kernels or not self.tone_curves:
            raise ValueError("kernels and tone_curves must name at least one entry each")

    def sample(self, generator: torch.Generator) -> dict[str, Any]:
        g = generator
        drawn: dict[str, Any] = {
            "full_well": log_uniform(g, *self.full_well_range),
            "read_noise": log_uniform(g, *self.read_noise_range),
            "kernel": choice(g, self.kernels),
            "blur_sigma": uniform(g, *self.blur_sigma),
            "tone_curve": choice(g, self.tone_curves),
            "gamma": uniform(g, *self.gamma_range),
            "s_curve": uniform(g, *self.s_curve_range),
        }
        use_jpeg = float(torch.rand((), generator=g)) < self.jpeg_prob
        quality = int(round(uniform(g, *self.jpeg_quality)))
        drawn["jpeg_quality"] = quality if use_jpeg else None
        return drawn

    def apply(self, hr: torch.Tensor, scale: int, ev: float, drawn: dict[str, Any], generator: torch.Generator
              ) -> torch.Tensor:
        lin = resize_down(srgb_to_linear(hr), scale, drawn["kernel"], drawn["blur_sigma"])
        lin = lin * 2.0 ** (-float(ev))
        fw = float(drawn["full_well"])
        shot = torch.poisson(lin * fw, generator=generator) / fw
        noisy = (shot + torch.randn(lin.shape, generator=generator) * float(drawn["read_noise"])).clamp(0.0, 1.0)
        curve = drawn["tone_curve"]
        if curve == "gamma":
            out = noisy ** (1.0 / float(drawn["gamma"]))
        else:
            out = linear_to_srgb(noisy)
            if curve == "srgb_s_curve":
                out = _s_curve(out, float(drawn["s_curve"]))
        if self.quantize:
            out = quantize_8bit(out)
        if drawn.get("jpeg_quality") is not None:
            out = jpeg_roundtrip(out, drawn["jpeg_quality"])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "name"}


@dataclass(frozen=True)
class UnseenDegradation:
    """The evaluation-only ("unseen") degradation; see the module docstring."""

    photo_electrons: float = 800.0  # green-channel electrons at white; red and blue collect half
    read_noise: float = 0.002
    row_noise: float = 0.0015  # std of a per-row offset (banding), linear units
    white: float = 0.9  # Reinhard white point (linear values >= white map to 1)
    display_gamma: float = 2.2
    quantize: bool = True
    name: str = field(default="unseen", init=False)

    def __post_init__(self):
        if self.photo_electrons <= 0 or self.read_noise < 0 or self.row_noise < 0 or self.white <= 0:
            raise ValueError("photo_electrons and white must be > 0, read_noise and row_noise >= 0")

    def sample(self, generator: torch.Generator) -> dict[str, Any]:
        return {}  # a fixed model: nothing is drawn besides the noise itself

    def _tone(self, lin: torch.Tensor) -> torch.Tensor:
        """Extended Reinhard ``L (1 + L / w^2) / (1 + L)`` (``white`` maps to 1), then a ``1 / gamma`` power."""
        mapped = lin * (1.0 + lin / self.white**2) / (1.0 + lin)  # equals 1 at lin = white
        return mapped.clamp(0.0, 1.0) ** (1.0 / self.display_gamma)

    def apply(self, hr: torch.Tensor, scale: int, ev: float, drawn: dict[str, Any], generator: torch.Generator
              ) -> torch.Tensor:
        lin = resize_down(srgb_to_linear(hr), scale, "bicubic") * 2.0 ** (-float(ev))
        _, h, w = lin.shape
        # RGGB mosaic: which colour each photosite records
        mask = torch.zeros(3, h, w)
        mask[0, 0::2, 0::2] = 1.0
        mask[1, 0::2, 1::2] = 1.0
        mask[1, 1::2, 0::2] = 1.0
        mask[2, 1::2, 1::2] = 1.0
        mosaic = (lin * mask).sum(0)
        gains = torch.tensor([0.5, 1.0, 0.5]) * self.photo_electrons  # electrons at white per channel
        site_gain = (gains.view(3, 1, 1) * mask).sum(0)
        shot_std = (mosaic.clamp_min(0.0) / site_gain).sqrt()
        mosaic = mosaic + shot_std * torch.randn(h, w, generator=generator)
        mosaic = mosaic + self.read_noise * torch.randn(h, w, generator=generator)
        mosaic = mosaic + self.row_noise * torch.randn(h, 1, generator=generator)
        # bilinear demosaicing: each channel from its own photosites, normalised by the kernel's coverage
        kernel = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
        planes = F.pad((mask * mosaic).unsqueeze(0), (1, 1, 1, 1), mode="reflect")
        cover = F.pad(mask.unsqueeze(0), (1, 1, 1, 1), mode="reflect")
        k = kernel.view(1, 1, 3, 3).expand(3, 1, 3, 3)
        rgb = F.conv2d(planes, k, groups=3) / F.conv2d(cover, k, groups=3).clamp_min(1e-6)
        out = self._tone(rgb[0].clamp(0.0, 1.0))
        return quantize_8bit(out) if self.quantize else out

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "name"}


# TriCo's two models in the toolkit's registry (``build_degradation("seen", ...)`` from a YAML mapping)
kit.register_degradation("seen", CameraDegradation, replace=True)
kit.register_degradation("unseen", UnseenDegradation, replace=True)
DEGRADATIONS: dict[str, type] = {"seen": CameraDegradation, "unseen": UnseenDegradation}


def build_degradation(name: str = "seen", **options: Any) -> Degradation:
    """The registered degradation ``name`` (``seen`` or ``unseen``) with ``options`` overriding its defaults."""
    return kit.build_degradation(name, **options)
