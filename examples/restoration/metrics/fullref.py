"""Full-reference image metrics (prediction vs target) and the conventions images are prepared with.

Conventions (:class:`MetricConventions`) default to those of the published RELLISUR numbers: RGB (not Y),
images quantised to uint8 before measuring (full range 0..255, expressed here as k/255 in [0, 1]), no
border crop, LPIPS with the AlexNet backbone.

- PSNR: per image ``10 log10(1 / MSE)`` over all pixels and channels (MSE floored at 1e-10, i.e. a 100 dB
  cap for identical images), averaged over images.
- SSIM: Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, per channel on the valid region
  (equivalent to scikit-image ``structural_similarity(gaussian_weights=True, use_sample_covariance=False,
  sigma=1.5, data_range=255, channel_axis=-1)``), averaged over channels, then over images; no
  down-sampling unless ``ssim_downsample``.
- RMSE: per image ``sqrt(MSE)`` in [0, 1] units, averaged over images.
- FSIM: piq's FSIM (FSIMc for RGB, FSIM for Y).
- LPIPS: reference architecture (Zhang et al. 2018, v0.1): ImageNet AlexNet features (relu1..relu5),
  channel-unit-normalised, squared differences weighted by the learned 1x1 "lin" layers, spatial mean,
  summed over layers; inputs scaled to [-1, 1]. Built from local weight files only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MetricConventions", "prepare", "psnr", "rmse", "ssim", "ssim_value", "fsim", "LPIPSAlex"]


def _gaussian_kernel(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    from piq.functional import gaussian_filter

    k = gaussian_filter(size, sigma, device=like.device, dtype=like.dtype)  # (1, size, size)
    return k.expand(channels, 1, size, size).contiguous()


def ssim_value(x: torch.Tensor, y: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5,
               data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM over batch and channels (piq's per-channel SSIM, no down-sampling, no range assert)."""
    from piq.ssim import _ssim_per_channel

    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"SSIM expects two (N, C, H, W) tensors of the same shape, got {x.shape} and {y.shape}")
    if min(x.shape[-2:]) < kernel_size:
        raise ValueError(f"SSIM window {kernel_size} is larger than the image {tuple(x.shape[-2:])}; "
                         f"use a smaller ssim kernel_size or larger crops")
    kernel = _gaussian_kernel(kernel_size, sigma, x.shape[1], x)
    ssim_map, _ = _ssim_per_channel(x=x / data_range, y=y / data_range, kernel=kernel, data_range=1.0, k1=k1, k2=k2)
    return ssim_map.mean()


@dataclass(frozen=True)
class MetricConventions:
    """How images are prepared before measuring. Defaults: published RELLISUR conventions."""

    color: str = "rgb"  # "rgb" or "y" (ITU-R BT.601 luma as in MATLAB rgb2ycbcr, range 16..235)
    quantize_uint8: bool = True  # round(255 * clamp(x, 0, 1)) before measuring
    crop_border: int = 0  # pixels removed on each side before measuring
    lpips_net: str = "alex"  # only the AlexNet variant is implemented
    ssim_kernel_size: int = 11
    ssim_sigma: float = 1.5
    ssim_downsample: bool = False  # MATLAB-style average-pool down-sampling for large images
    psnr_max_db: float = 100.0  # PSNR of identical images (MSE floored at 10^(-max/10))

    def __post_init__(self):
        if self.color not in ("rgb", "y"):
            raise ValueError(f"color must be 'rgb' or 'y', got {self.color!r}")
        if self.crop_border < 0:
            raise ValueError("crop_border must be >= 0")
        if self.lpips_net != "alex":
            raise ValueError(f"only the AlexNet LPIPS variant is available, got {self.lpips_net!r}")

    def describe(self) -> str:
        colour = "RGB (all three channels)" if self.color == "rgb" else "Y (BT.601 luma, 16..235)"
        quant = "quantised to uint8 (full range 0..255)" if self.quantize_uint8 else "float, not quantised"
        return (f"metric conventions: {colour}; {quant}; border crop {self.crop_border} px; "
                f"LPIPS {self.lpips_net.capitalize()}Net; SSIM Gaussian {self.ssim_kernel_size}x"
                f"{self.ssim_kernel_size} sigma {self.ssim_sigma}, "
                f"{'down-sampled' if self.ssim_downsample else 'no down-sampling'}; "
                f"PSNR capped at {self.psnr_max_db:g} dB; each metric is averaged over images")

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(x: torch.Tensor, conv: MetricConventions) -> torch.Tensor:
    """Apply the conventions to a ``(N, 3, H, W)`` batch in [0, 1]: quantise, crop, convert colour."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    x = x.detach().to(torch.float32).clamp(0.0, 1.0)
    if conv.quantize_uint8:
        x = torch.round(x * 255.0) / 255.0
    b = conv.crop_border
    if b:
        x = x[..., b:-b, b:-b]
    if conv.color == "y":
        w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255.0
        x = (x * w).sum(dim=1, keepdim=True) + 16.0 / 255.0
        if conv.quantize_uint8:
            x = torch.round(x * 255.0) / 255.0
    return x


def _mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x.double() - y.double()) ** 2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB of prepared ``(N, C, H, W)`` tensors with data range 1."""
    return 10.0 * torch.log10(1.0 / _mse(x, y).clamp_min(10.0 ** (-max_db / 10.0)))


def rmse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _mse(x, y).sqrt()


def ssim(x: torch.Tensor, y: torch.Tensor, conv: MetricConventions | None = None) -> torch.Tensor:
    """Per-image SSIM of prepared tensors."""
    conv = conv or MetricConventions()
    out = []
    for a, b in zip(x, y):
        a, b = a[None].double(), b[None].double()
        f = max(1, round(min(a.shape[-2:]) / 256))
        if conv.ssim_downsample and f > 1:
            a, b = F.avg_pool2d(a, f), F.avg_pool2d(b, f)
        out.append(ssim_value(a, b, kernel_size=conv.ssim_kernel_size, sigma=conv.ssim_sigma))
    return torch.stack(out).float()


def fsim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import piq

    return piq.fsim(x, y, data_range=1.0, reduction="none", chromatic=x.shape[1] == 3)


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone, from local weight files only.

    ``lin_weights``: the five 1x1 "lin" layers (``alex.pth`` of the reference ``lpips`` package, keys
    ``lin0.model.1.weight`` .. ``lin4.model.1.weight``). ``backbone_weights``: torchvision's ImageNet
    AlexNet (``alexnet-owt-7be5be79.pth``).
    """

    _shift = (-0.030, -0.088, -0.188)
    _scale = (0.458, 0.448, 0.450)

    def __init__(self, lin_weights: str | os.PathLike, backbone_weights: str | os.PathLike):
        super().__init__()
        from torchvision.models import alexnet

        features = alexnet(weights=None).features
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
        feat = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        features.load_state_dict(feat)
        self.features = features.eval()
        self.taps = (1, 4, 7, 9, 11)  # relu1 .. relu5
        lin_state = torch.load(lin_weights, map_location="cpu", weights_only=True)
        chans = (64, 192, 384, 256, 256)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        for i, lin in enumerate(self.lins):
            key = next((k for k in (f"lin{i}.model.1.weight", f"lins.{i}.model.1.weight", f"lin{i}.weight")
                        if k in lin_state), None)
            if key is None:
                raise KeyError(f"LPIPS lin weights {str(lin_weights)!r} lack layer {i} (lin{i}.model.1.weight)")
            lin.weight.data.copy_(lin_state[key])
        self.register_buffer("shift", torch.tensor(self._shift).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self._scale).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS of ``(N, 3, H, W)`` tensors in [0, 1]."""
        def feats(z):
            h = ((z * 2.0 - 1.0) - self.shift) / self.scale
            out = []
            for i, layer in enumerate(self.features):
                h = layer(h)
                if i in self.taps:
                    out.append(h)
            return out

        total = 0.0
        for lin, a, b in zip(self.lins, feats(x), feats(y)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total
