"""The task's data: grey photos from scikit-image, split by photo, degraded on the fly with seeds.

A degradation is a random blur kernel (anisotropic Gaussian or linear motion, 15x15) followed by Gaussian or
Poisson noise. Every sample carries what a non-blind method is given: the true kernel and the noise level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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


def kernel(g: torch.Generator) -> tuple[torch.Tensor, str]:
    """A random (KSIZE, KSIZE) blur kernel summing to 1 and its kind: anisotropic Gaussian or linear motion."""
    r = torch.arange(KSIZE, dtype=torch.float32) - KSIZE // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    u = torch.rand(4, generator=g)
    theta = math.pi * float(u[1])
    c, s = math.cos(theta), math.sin(theta)
    along, across = c * xx + s * yy, -s * xx + c * yy
    if u[0] < 0.5:  # Gaussian, std 0.7-2.2 px along, 0.7 px to the along one across
        sa = 0.7 + 1.5 * float(u[2])
        sc = 0.7 + (sa - 0.7) * float(u[3])
        k = torch.exp(-0.5 * (along / sa) ** 2 - 0.5 * (across / sc) ** 2)
    else:  # motion: a segment of length 3-11 px, anti-aliased by a 0.5 px cross profile
        half = 1.5 + 4.0 * float(u[2])
        k = torch.clamp(half + 0.5 - along.abs(), 0, 1) * torch.exp(-0.5 * (across / 0.5) ** 2)
    return k / k.sum(), "gauss" if u[0] < 0.5 else "motion"


def blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Convolve (B, 1, H, W) images with per-image (B, 1, K, K) kernels, reflect-padded, same size."""
    p = k.shape[-1] // 2
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    out = F.conv2d(xp.transpose(0, 1), k.flip(-1, -2), groups=x.shape[0])  # true convolution, one group per image
    return out.transpose(0, 1)


def degrade(clean: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(degraded, kernel, sigma, description) for a (1, H, W) image: blur, then Gaussian noise (std 0.01-0.05)
    or Poisson noise (peak 30-300 photons); ``sigma`` is the noise std (Poisson: at the blurred image's mean)."""
    k, kind = kernel(g)
    k = k[None]
    b = blur(clean[None], k[None])[0]
    u = torch.rand(2, generator=g)
    if u[0] < 0.5:
        sigma = 0.01 + 0.04 * float(u[1])
        y, noise = b + sigma * torch.randn(b.shape, generator=g), f"gaussian {sigma:.3f}"
    else:
        peak = 30.0 * 10 ** float(u[1])
        y = torch.poisson(b.clamp_min(0) * peak, generator=g) / peak
        sigma, noise = math.sqrt(float(b.mean()) / peak), f"poisson peak {peak:.0f}"
    return y, k, torch.tensor([sigma]), f"{kind} blur, {noise}"


class Patches(torch.utils.data.Dataset):
    """``n`` seeded samples ``(degraded, kernel, sigma, clean)`` of ``size`` crops of a split's photos.

    Sample ``i`` of epoch ``e`` is a pure function of ``(seed, i, e)``: the same in every process and resumed run.
    """

    def __init__(self, split: str, n: int, size: int, seed: int):
        self.photos = [photo(name) for name in SPLITS[split]]
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int | tuple[int, int]):
        i, epoch = key if isinstance(key, tuple) else (key, 0)  # epochs draw fresh crops (``pass_epoch``)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + i) * 1009 + epoch)
        img = self.photos[int(torch.randint(len(self.photos), (1,), generator=g))]
        y0 = int(torch.randint(img.shape[1] - self.size + 1, (1,), generator=g))
        x0 = int(torch.randint(img.shape[2] - self.size + 1, (1,), generator=g))
        clean = img[:, y0 : y0 + self.size, x0 : x0 + self.size]
        return (*degrade(clean, g)[:3], clean)
