"""Synthetic low-light, low-resolution pairs from any normal-light photo (seeded and documented).

Degradation model (``degrade``), applied to a normal-light sRGB image ``hr`` in [0, 1] (H, W divisible by s):

1. **Linearise**: invert the camera response, here the sRGB transfer curve (IEC 61966-2-1),
   ``lin = srgb_to_linear(hr)``; with ``response="gamma"`` a pure power law ``hr ** gamma`` is used instead.
2. **Downscale** by ``s`` in linear light with an anti-aliased bicubic filter
   (``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``), clamped to [0, 1]. Downscaling
   before the noise is added models a sensor that captures at the low resolution: the noise is not smoothed.
3. **Exposure reduction** by ``ev`` stops: ``lin * 2 ** -ev`` (``ev`` is a positive darkening magnitude,
   RELLISUR uses 2.5 .. 5 stops).
4. **Poisson-Gaussian sensor noise** in linear units where 1.0 is the full-well (white) level:
   ``noisy = Poisson(lin * full_well) / full_well + Normal(0, read_noise ** 2)``. Defaults
   ``full_well = 1000`` photo-electrons at white and ``read_noise = 0.002`` (0.2 % of white, about 2 e-),
   typical of a small phone/compact sensor at base ISO after the exposure is cut. Clamped to [0, 1].
5. **Camera response**: the sRGB OETF (or ``lin ** (1 / gamma)``) maps back to display values.
6. **8-bit quantisation**: ``round(255 * x) / 255``.

The target is the normal-light HR image itself, quantised to 8 bits. Everything is deterministic given
the seed: the noise is drawn from a ``torch.Generator`` seeded per sample from ``(seed, epoch, index)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from examples.restoration.data.common import (
    DataError,
    SampleKey,
    augment_pair,
    centre_crop_box,
    progress,
    random_augment_code,
    random_crop_box,
    sample_generator,
    split_key,
)
from examples.restoration.data.photos import list_images
from examples.restoration.degradations import luminance
from examples.restoration.imageio import read_image

from .degradations import (
    Degradation,
    degrade_with,
    linear_to_srgb,
    quantize_8bit,
    resize_down,
    srgb_to_linear,
)

__all__ = ["DegradationParams", "srgb_to_linear", "linear_to_srgb", "quantize_8bit", "downscale",
           "degrade", "SyntheticPairs", "list_images"]

# ``degrade``/``DegradationParams`` are the first-wave model (fixed noise levels, sRGB or power-law response, one
# kernel), kept for RELLISUR-free smoke tests; training configs use the richer ``degradations.CameraDegradation``.


@dataclass(frozen=True)
class DegradationParams:
    """Parameters of :func:`degrade` (see the module docstring for the model)."""

    response: str = "srgb"  # "srgb" or "gamma"
    gamma: float = 2.2  # used when response == "gamma"
    full_well: float = 1000.0  # photo-electrons at white level (shot noise variance = lin / full_well)
    read_noise: float = 0.002  # std of the Gaussian read noise in linear units
    quantize: bool = True  # 8-bit quantisation of the low-light output

    def __post_init__(self):
        if self.response not in ("srgb", "gamma"):
            raise ValueError(f"response must be 'srgb' or 'gamma', got {self.response!r}")
        if self.full_well <= 0 or self.read_noise < 0 or self.gamma <= 0:
            raise ValueError("full_well and gamma must be > 0 and read_noise >= 0")


def downscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Anti-aliased bicubic downscaling of a ``(C, H, W)`` or ``(N, C, H, W)`` tensor by an integer factor."""
    return resize_down(x, scale, "bicubic")


def degrade(hr: torch.Tensor, scale: int, ev: float, generator: torch.Generator | None = None,
            params: DegradationParams | None = None, seed: int | None = None) -> torch.Tensor:
    """Low-light, low-resolution version of the normal-light ``hr`` image ``(3, H, W)`` in [0, 1].

    Give either a ``generator`` or a ``seed`` (``seed=None`` and no generator means seed 0).
    """
    params = params or DegradationParams()
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    hr = hr.to(torch.float32)
    if params.response == "srgb":
        lin = srgb_to_linear(hr)
    else:
        lin = hr.clamp(0.0, 1.0) ** params.gamma
    lin = downscale(lin, scale)
    lin = lin * (2.0 ** (-float(ev)))
    shot = torch.poisson(lin * params.full_well, generator=generator) / params.full_well
    read = torch.randn(lin.shape, generator=generator) * params.read_noise
    noisy = (shot + read).clamp(0.0, 1.0)
    if params.response == "srgb":
        out = linear_to_srgb(noisy)
    else:
        out = noisy ** (1.0 / params.gamma)
    return quantize_8bit(out) if params.quantize else out


class SyntheticPairs(Dataset):
    """Seeded low-light LR / normal-light HR pairs built from normal-light photos by :func:`degrade`.

    Args:
        source: a folder of photos, or a sequence of image paths or ``(3, H, W)`` tensors in [0, 1].
        scale: 1, 2 or 4.
        ev_range: darkening in stops; a ``(lo, hi)`` pair (uniform draw per sample) or a single number.
        crop: training crop size in LR pixels (``int`` or ``(h, w)``); ``None`` gives the full image
            (cropped to a multiple of ``scale``).
        seed: base seed; sample ``i`` of epoch ``e`` uses a generator seeded from ``(seed, e, i)``.
        augment: random flips / rot90 (dihedral group) of the aligned pair.
        samples_per_epoch: virtual length (``None``: one sample per image). Sample ``i`` uses image
            ``i % len(images)``.
        centre_crop: deterministic centre crop in LR pixels (test-time option), used when ``crop`` is None.
        fixed_ev: ``True`` makes the exposure and noise of a sample independent of the epoch (test sets).
        params: :class:`DegradationParams` of the first-wave :func:`degrade` (used when ``degradation`` is None).
        degradation: a :class:`~examples.trico.data.degradations.Degradation` (``seen`` for training, ``unseen``
            for evaluation only); its drawn parameters are part of the sample's seeded randomness.
        scene_exposure: training crops are cut from the *whole* degraded photo (degrade, then crop, as a camera
            does), and each item carries ``scene_luminance``: the mean linear luminance (sRGB EOTF, Rec. 709
            weights) of that whole degraded photo. A model whose auto-exposure measures the whole image at
            inference can then be trained with the same gain (``TriCo.gain_for_luminance``) instead of one
            computed from the crop alone (docs/trico.md, "Scene exposure"). Needs ``degradation``.

    Items: ``{"input": (3, h, w), "target": (3, s*h, s*w), "name": str, "ev": float}``, plus
    ``"scene_luminance": float`` with ``scene_exposure``.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike | torch.Tensor], scale: int = 2,
                 ev_range: float | tuple[float, float] = (2.5, 4.5), crop: int | tuple[int, int] | None = None,
                 seed: int = 0, augment: bool = True, samples_per_epoch: int | None = None,
                 centre_crop: int | tuple[int, int] | None = None, fixed_ev: bool = False,
                 params: DegradationParams | None = None, names: Sequence[str] | None = None,
                 degradation: Degradation | None = None, scene_exposure: bool = False):
        if scale not in (1, 2, 3, 4, 8):
            raise ValueError(f"scale must be 1, 2, 3, 4 or 8, got {scale}")
        self.scale = int(scale)
        if isinstance(ev_range, int | float):
            ev_range = (float(ev_range), float(ev_range))
        lo, hi = (float(v) for v in ev_range)
        if lo > hi or lo < 0:
            raise ValueError(f"ev_range must be (lo, hi) with 0 <= lo <= hi, got {ev_range}")
        self.ev_range = (lo, hi)
        self.crop = (crop, crop) if isinstance(crop, int) else (tuple(crop) if crop is not None else None)
        self.centre_crop = (centre_crop, centre_crop) if isinstance(centre_crop, int) else (
            tuple(centre_crop) if centre_crop is not None else None)
        self.seed = int(seed)
        self.augment = bool(augment)
        self.fixed_ev = bool(fixed_ev)
        self.params = params or DegradationParams()
        self.degradation = degradation
        self.scene_exposure = bool(scene_exposure)
        if self.scene_exposure and degradation is None:
            raise ValueError("scene_exposure needs a degradation model (e.g. build_degradation('seen'))")

        if isinstance(source, str | os.PathLike):
            items: list = list(list_images(source))
        else:
            items = list(source)
        if not items:
            raise ValueError("SyntheticPairs needs at least one image")
        self._images: list[torch.Tensor] = []
        self.names: list[str] = []
        for i, item in enumerate(progress(items, "reading images")):  # each file read once, here
            if isinstance(item, torch.Tensor):
                img = item.detach().to(torch.float32)
                if img.dim() != 3 or img.shape[0] != 3:
                    raise ValueError(f"image {i} must be a (3, H, W) tensor, got shape {tuple(img.shape)}")
                name = names[i] if names is not None else f"image{i:04d}"
            else:
                img = read_image(item)
                name = names[i] if names is not None else Path(item).stem
            self._images.append(img.clamp(0.0, 1.0))
            self.names.append(name)
        self.samples_per_epoch = int(samples_per_epoch) if samples_per_epoch else len(self._images)
        if self.crop is not None:
            ch, cw = self.crop[0] * self.scale, self.crop[1] * self.scale
            for name, img in zip(self.names, self._images):
                if img.shape[-2] < ch or img.shape[-1] < cw:
                    item = items[self.names.index(name)]
                    where = repr(name) if isinstance(item, torch.Tensor) else str(item)
                    raise DataError(f"image {where} ({img.shape[-2]}x{img.shape[-1]}) is smaller than the HR crop "
                                    f"{ch}x{cw} (data.crop {self.crop[0]} x scale {self.scale}); lower data.crop "
                                    "or remove the image")

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _hr_window(self, img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = self.scale
        h, w = img.shape[-2:]
        if self.crop is not None:
            ch, cw = self.crop[0] * s, self.crop[1] * s
            top, left = random_crop_box(h, w, ch, cw, gen)
        elif self.centre_crop is not None:
            ch, cw = self.centre_crop[0] * s, self.centre_crop[1] * s
            top, left = centre_crop_box(h, w, ch, cw)
        else:
            ch, cw = (h // s) * s, (w // s) * s
            top, left = (h - ch) // 2, (w - cw) // 2
        return img[:, top : top + ch, left : left + cw]

    def __getitem__(self, key: SampleKey) -> dict:
        index, epoch = split_key(key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if self.fixed_ev:
            epoch = 0
        img_idx = index % len(self._images)
        gen = sample_generator(self.seed, epoch, index)
        if self.scene_exposure:
            return self._scene_item(img_idx, gen)
        hr = self._hr_window(self._images[img_idx], gen)
        if self.augment:
            (hr,) = augment_pair(random_augment_code(gen), hr)
        ev = self._draw_ev(gen)
        if self.degradation is not None:
            lr, _ = degrade_with(self.degradation, hr, self.scale, ev, gen)
        else:
            lr = degrade(hr, self.scale, ev, generator=gen, params=self.params)
        return {"input": lr, "target": quantize_8bit(hr), "name": f"{self.names[img_idx]}-{ev:g}", "ev": ev}

    def _draw_ev(self, gen: torch.Generator) -> float:
        lo, hi = self.ev_range
        return round(lo + (hi - lo) * float(torch.rand((), generator=gen)) if hi > lo else lo, 4)

    def _scene_item(self, img_idx: int, gen: torch.Generator) -> dict:
        """Degrade the whole photo, measure its mean linear luminance, then cut the (LR-aligned) window."""
        s = self.scale
        img = self._images[img_idx]
        h, w = img.shape[-2] // s, img.shape[-1] // s  # LR size of the whole photo
        ev = self._draw_ev(gen)
        lr_full, _ = degrade_with(self.degradation, img[:, : h * s, : w * s], s, ev, gen)
        scene_luminance = float(luminance(srgb_to_linear(lr_full)).mean())
        if self.crop is not None:
            ch, cw = self.crop
            top, left = random_crop_box(h, w, ch, cw, gen)
        elif self.centre_crop is not None:
            ch, cw = self.centre_crop
            top, left = centre_crop_box(h, w, ch, cw)
        else:
            ch, cw, top, left = h, w, 0, 0
        lr = lr_full[:, top : top + ch, left : left + cw]
        hr = img[:, top * s : (top + ch) * s, left * s : (left + cw) * s]
        if self.augment:
            lr, hr = augment_pair(random_augment_code(gen), lr, hr)
        return {"input": lr.contiguous(), "target": quantize_8bit(hr), "name": f"{self.names[img_idx]}-{ev:g}",
                "ev": ev, "scene_luminance": scene_luminance}
