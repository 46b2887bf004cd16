"""LII: the illumination regulator N_ir (Eq. 1 of the paper).

``N_ir`` is a small U-Net that maps the dark input ``x`` to per-pixel, per-channel interpolation factors
``alpha, beta = 1 - alpha`` in ``[0, 1]``. The illumination is ``u = alpha * x + beta * 1`` so that
``x <= u <= 1`` holds by construction (``u - x = beta * (1 - x) >= 0``), and the reflectance is
``v = x / max(u, eps)`` with ``eps = REFLECTANCE_EPS = 1e-3``. Because ``u >= x``, ``v`` lies in ``[0, 1]``.
The eps is below the smallest non-zero 8-bit level (1/255), so it only changes pure-black pixels of 8-bit inputs.

The decoder's features at 1/4, 1/2 and full resolution are the illumination features ``f_i`` that IHEM uses.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import Downsample, ResBlock, Upsample

__all__ = ["IlluminationRegulator", "IlluminationOutput", "REFLECTANCE_EPS"]

REFLECTANCE_EPS = 1e-3


class IlluminationOutput(NamedTuple):
    alpha: torch.Tensor
    beta: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    features: list[torch.Tensor]  # decoder features f_i, coarsest first: [1/4, 1/2, 1]


class IlluminationRegulator(nn.Module):
    """U-Net ``N_ir`` (parameters ``w_i``). Input height and width must be multiples of 4.

    Args:
        width: channels at full resolution; 2x and 4x that at 1/2 and 1/4 resolution.
        alpha_channels: 3 (one factor per colour channel, the default) or 1 (shared by the channels).
        eps: guard of the division ``v = x / max(u, eps)``.
    """

    def __init__(self, width: int = 16, alpha_channels: int = 3, eps: float = REFLECTANCE_EPS) -> None:
        super().__init__()
        if alpha_channels not in (1, 3):
            raise ValueError(f"alpha_channels must be 1 or 3, got {alpha_channels}")
        c1, c2, c3 = width, 2 * width, 4 * width
        self.channels = (c3, c2, c1)  # channels of f_i, coarsest first
        self.eps = eps
        self.stem = nn.Conv2d(3, c1, 3, padding=1)
        self.enc1 = ResBlock(c1)
        self.down1 = Downsample(c1, c2)
        self.enc2 = ResBlock(c2)
        self.down2 = Downsample(c2, c3)
        self.bottleneck = ResBlock(c3)
        self.up2 = Upsample(c3, c2)
        self.fuse2 = nn.Conv2d(2 * c2, c2, 1)
        self.dec2 = ResBlock(c2)
        self.up1 = Upsample(c2, c1)
        self.fuse1 = nn.Conv2d(2 * c1, c1, 1)
        self.dec1 = ResBlock(c1)
        self.head = nn.Conv2d(c1, alpha_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> IlluminationOutput:
        e1 = self.enc1(F.leaky_relu(self.stem(x), 0.2))
        e2 = self.enc2(self.down1(e1))
        f3 = self.bottleneck(self.down2(e2))
        f2 = self.dec2(self.fuse2(torch.cat([self.up2(f3), e2], dim=1)))
        f1 = self.dec1(self.fuse1(torch.cat([self.up1(f2), e1], dim=1)))
        alpha = torch.sigmoid(self.head(f1))
        beta = 1.0 - alpha
        u = alpha * x + beta
        v = x / u.clamp_min(self.eps)
        if alpha.shape[1] != x.shape[1]:
            alpha, beta = alpha.expand_as(x), beta.expand_as(x)
        return IlluminationOutput(alpha, beta, u, v, [f3, f2, f1])
