"""The restorer: a noise-conditioned Wiener deconvolution with the true kernel, refined by a small CNN.

The Wiener step is the degradation-specific module: its regulariser ``exp(a + b log sigma) (|L|^2 + exp(c))``
(``L`` the Laplacian) is learned as a function of the noise level, so one network serves every noise level
and kernel. The CNN sees the deconvolved image, the input and a noise-level map and predicts a correction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from examples.restoration.checkpoint import ModelBuilder, register_model_builder


def _otf(k: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Transfer function of (B, 1, K, K) kernels for (H, W) images: the kernel's centre moved to (0, 0)."""
    p = k.shape[-1] // 2
    big = F.pad(k, (0, shape[1] - k.shape[-1], 0, shape[0] - k.shape[-2]))
    return torch.fft.rfft2(torch.roll(big, (-p, -p), dims=(-2, -1)))


class Restorer(nn.Module):
    """``Restorer()(degraded, kernel, sigma) -> restored``; all (B, 1, H, W) images, kernels (B, 1, K, K)."""

    def __init__(self, width: int = 32, depth: int = 5):
        super().__init__()
        self.config = {"width": width, "depth": depth}  # what the toolkit's checkpoint loader rebuilds it from
        self.reg = nn.Parameter(torch.tensor([1.5, 2.0, -3.0]))  # a, b, c of the Wiener regulariser
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.cnn = nn.Sequential(*layers, nn.Conv2d(width, 1, 3, padding=1))

    def wiener(self, y: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Deconvolve ``y`` (reflect-padded by the kernel size against the FFT's wrap-around)."""
        p = k.shape[-1]
        yp = F.pad(y, (p, p, p, p), mode="reflect")
        shape = (yp.shape[-2], yp.shape[-1])
        lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], device=y.device)[None, None]
        a, b, c = self.reg
        lam = torch.exp(a + b * torch.log(sigma.view(-1, 1, 1, 1)))
        H, L = _otf(k, shape), _otf(lap, shape)
        X = H.conj() * torch.fft.rfft2(yp) / (H.abs() ** 2 + lam * (L.abs() ** 2 + torch.exp(c)))
        return torch.fft.irfft2(X, s=shape)[..., p:-p, p:-p]

    def forward(self, y: torch.Tensor, k: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x0 = self.wiener(y, k, sigma)
        level = sigma.view(-1, 1, 1, 1).expand_as(y) * 10
        return x0 + self.cnn(torch.cat([x0, y, level], dim=1))


register_model_builder(ModelBuilder("denoise_deblur", Restorer, label="denoise_deblur restorer"))
