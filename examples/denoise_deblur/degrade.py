"""The task's data: grey photos from scikit-image, split by photo, degraded on the fly with seeds.

A degradation (registered in the toolkit as ``blur+noise``) is a random blur kernel (anisotropic Gaussian or
linear motion, 15x15) followed by Gaussian or Poisson noise. Every sample carries what a non-blind method is
given: the true kernel and the noise level. The data source ``photos`` serves training, validation and test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from examples.restoration.data.common import centre_crop_box, random_crop_box, sample_generator, split_key
from examples.restoration.data.sources import DataSource, SourceRegistry
from examples.restoration.degradations import (
    build_degradation,
    degrade_with,
    log_uniform,
    register_degradation,
    uniform,
)

KSIZE = 15
#: photos by split (scikit-image ships them; no download): no photo appears in two splits.
SPLITS = {"train": ["astronaut", "coffee", "rocket", "coins", "gravel", "moon"],
          "val": ["chelsea", "grass"], "test": ["camera", "stereo_motorcycle", "brick"]}


def photo(name: str) -> torch.Tensor:
    """Photo ``name`` as a (1, H, W) float tensor in [0, 1] (luminance of colour photos)."""
    from skimage import color, data

    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img  # the stereo pair: its left view
    img = color.rgb2gray(img) if img.ndim == 3 else img / 255.0
    return torch.as_tensor(img, dtype=torch.float32)[None]


def blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Convolve (B, 1, H, W) images with per-image (B, 1, K, K) kernels, reflect-padded, same size."""
    p = k.shape[-1] // 2
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    out = F.conv2d(xp.transpose(0, 1), k.flip(-1, -2), groups=x.shape[0])  # true convolution, one group per image
    return out.transpose(0, 1)


@dataclass(frozen=True)
class BlurNoise:
    """Blur by a Gaussian (std ``gauss_std`` along, down to 0.7 px across) or motion (``motion_length`` px)
    kernel, equally often, then Gaussian (std ``noise_std``) or Poisson (``poisson_peak`` photons) noise."""

    name: str = "blur+noise"
    gauss_std: tuple[float, float] = (0.7, 2.2)
    motion_length: tuple[float, float] = (3.0, 11.0)
    noise_std: tuple[float, float] = (0.01, 0.05)
    poisson_peak: tuple[float, float] = (30.0, 300.0)

    def sample(self, g: torch.Generator) -> dict[str, Any]:
        r = torch.arange(KSIZE, dtype=torch.float32) - KSIZE // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        kind, theta = ("gauss", "motion")[int(uniform(g, 0, 2))], uniform(g, 0, math.pi)
        along = math.cos(theta) * xx + math.sin(theta) * yy
        across = math.cos(theta) * yy - math.sin(theta) * xx
        if kind == "gauss":
            sa = uniform(g, *self.gauss_std)
            sc = uniform(g, 0.7, sa)
            k = torch.exp(-0.5 * (along / sa) ** 2 - 0.5 * (across / sc) ** 2)
        else:  # a segment, anti-aliased by a 0.5 px cross profile
            k = torch.clamp(uniform(g, *self.motion_length) / 2 + 0.5 - along.abs(), 0, 1)
            k = k * torch.exp(-0.5 * (across / 0.5) ** 2)
        poisson = uniform(g, 0, 1) < 0.5
        level = log_uniform(g, *self.poisson_peak) if poisson else uniform(g, *self.noise_std)
        return {"kernel": (k / k.sum())[None], "kind": kind, "noise": "poisson" if poisson else "gaussian",
                "level": level}

    def apply(self, image: torch.Tensor, *, drawn: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        b = blur(image[None], drawn["kernel"][None])[0]
        if drawn["noise"] == "gaussian":
            return b + drawn["level"] * torch.randn(b.shape, generator=generator)
        return torch.poisson(b.clamp_min(0) * drawn["level"], generator=generator) / drawn["level"]


register_degradation("blur+noise", BlurNoise)


class Patches(torch.utils.data.Dataset):
    """``n`` seeded samples ``{"input", "kernel", "sigma", "target", "name"}`` of ``size`` crops of a split's
    photos: random crops of random photos, or (``centre``) the centre crop of photo ``i mod #photos``.
    ``sigma`` is the noise std (Poisson: at the degraded image's mean). Sample ``i`` of epoch ``e`` is a pure
    function of ``(seed, e, i)``: the same in every process and resumed run (``ResumableLoader(pass_epoch=True)``).
    """

    def __init__(self, split: str, n: int, size: int, seed: int, centre: bool = False, **degradation: Any):
        self.photos = [(name, photo(name)) for name in SPLITS[split]]
        self.n, self.size, self.seed, self.centre = n, size, seed, centre
        self.degradation = build_degradation("blur+noise", **degradation)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = split_key(key)
        if not 0 <= i < self.n:
            raise IndexError(f"sample {i} of {self.n}")
        g = sample_generator(self.seed, epoch, i)
        name, img = self.photos[i % len(self.photos) if self.centre else int(uniform(g, 0, len(self.photos)))]
        box = (centre_crop_box if self.centre else lambda *a: random_crop_box(*a, g))(*img.shape[1:], *[self.size] * 2)
        clean = img[:, box[0] : box[0] + self.size, box[1] : box[1] + self.size]
        y, d = degrade_with(self.degradation, clean, g)
        sigma = d["level"] if d["noise"] == "gaussian" else math.sqrt(max(float(y.mean()), 1e-6) / d["level"])
        level = f"{d['level']:.3f}" if d["noise"] == "gaussian" else f"peak {d['level']:.0f}"
        return {"input": y, "kernel": d["kernel"], "sigma": torch.tensor([sigma]), "target": clean,
                "name": f"{name}#{i}: {d['kind']} blur, {d['noise']} {level}"}


SOURCES = SourceRegistry("denoise_deblur data source")
SOURCES.add(DataSource("photos", lambda split, root, **options: Patches(split, **options), synthetic=True,
                       description="scikit-image photos, split by photo, blur+noise on the fly"))
