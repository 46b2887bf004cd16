"""Feature upsamplers: A2U (affinity-aware upsampling, Dai et al., CVPR 2021; the paper's reference [7]) and a
pixel-shuffle alternative.

A2U, as implemented here, for a low-resolution feature ``X`` (B, C, H, W), scale ``r``, reassembly window ``s``:

1. Two banks of ``k x k`` filters, one per channel and rank component, are predicted from ``X`` by a 1x1
   convolution of ``adaptive_avg_pool(X, k)``; each bank is applied depth-wise to ``X`` (per sample).
2. The channel mean of the product of the two responses is a rank-``rank`` bilinear ("second-order")
   affinity map ``(B, rank, H, W)``.
3. A 1x1 head turns it into ``r*r*s*s`` logits per location; pixel shuffle spreads them to the output grid and a
   softmax over the ``s*s`` taps normalises each kernel (the taps sum to 1).
4. Each output pixel is the kernel-weighted sum of the ``s x s`` neighbourhood of its source pixel in ``X``
   (CARAFE-style reassembly). ``X`` is replicate-padded, so a constant map stays constant, borders included.

Defaults follow the A2U paper: ``s = 3``, ``k = 6``, ``rank = 1``. Any integer scale is predicted in one step
(``r = 4`` for x4 rather than two chained x2 modules).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["A2U", "PixelShuffleUpsampler", "build_upsampler"]


class A2U(nn.Module):
    def __init__(
        self, channels: int, scale: int = 2, kernel_size: int = 3, filter_size: int = 6, rank: int = 1
    ) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size (reassembly window s) must be odd, got {kernel_size}")
        self.scale, self.s, self.k, self.rank = scale, kernel_size, filter_size, rank
        self.filters_a = nn.Conv2d(channels, channels * rank, 1)
        self.filters_b = nn.Conv2d(channels, channels * rank, 1)
        self.head = nn.Conv2d(rank, scale * scale * kernel_size * kernel_size, 1)

    def _depthwise(self, x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        """Apply per-sample, per-channel ``k x k`` filters ``(B, rank*C, k, k)`` to ``x``: ``(B, C, rank, H, W)``."""
        b, c, h, w = x.shape
        k = self.k
        weight = filters.reshape(b, self.rank, c, k, k).transpose(1, 2).reshape(b * c * self.rank, 1, k, k)
        xp = F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2), mode="replicate")
        out = F.conv2d(xp.reshape(1, b * c, xp.shape[-2], xp.shape[-1]), weight, groups=b * c)
        return out.reshape(b, c, self.rank, h, w)

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised reassembly kernels ``(B, s*s, r*H, r*W)``; they sum to 1 over dim 1."""
        pooled = F.adaptive_avg_pool2d(x, self.k)
        ra = self._depthwise(x, self.filters_a(pooled))
        rb = self._depthwise(x, self.filters_b(pooled))
        affinity = (ra * rb).mean(dim=1)  # (B, rank, H, W)
        logits = F.pixel_shuffle(self.head(affinity), self.scale)
        return torch.softmax(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kern = self.kernels(x)
        r, s = self.scale, self.s
        h, w = x.shape[-2:]
        xp = F.pad(x, (s // 2,) * 4, mode="replicate")
        xn = F.interpolate(xp, scale_factor=r, mode="nearest") if r > 1 else xp
        out = None
        for j in range(s * s):
            dy, dx = divmod(j, s)
            term = kern[:, j : j + 1] * xn[..., dy * r : dy * r + r * h, dx * r : dx * r + r * w]
            out = term if out is None else out + term
        return out


class PixelShuffleUpsampler(nn.Module):
    """3x3 convolution to ``C * r * r`` channels, then pixel shuffle."""

    def __init__(self, channels: int, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, channels * scale * scale, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), self.scale)


def build_upsampler(kind: str, channels: int, scale: int) -> nn.Module:
    if kind == "a2u":
        return A2U(channels, scale)
    if kind in ("pixelshuffle", "pixel_shuffle"):
        return PixelShuffleUpsampler(channels, scale)
    raise ValueError(f"unknown upsampler {kind!r}; choose 'a2u' or 'pixelshuffle'")
