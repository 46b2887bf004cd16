"""LFR: the feature refinement network N_fr with IHEM in its decoder, and the upsampler (parameters ``w_s``).

``N_fr`` is a three-level encoder-decoder on the reflectance ``v`` (widths ``C1, C2, C3`` at 1, 1/2, 1/4 of the
input resolution, by default). Every decoder level (1/4, 1/2, 1) is modulated by one IHEM with the illumination feature
``f_i`` of the same level of ``N_ir``'s decoder and, when a semantic encoder is used, the semantic feature
``f_s`` assigned to that level. After a few full-resolution residual blocks the features are upsampled by A2U
(or pixel shuffle) and a 3x3 convolution produces the residual over a bilinear upsampling of ``v``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Downsample, ResBlock, Upsample
from .ihem import IHEM
from .upsample import build_upsampler

__all__ = ["RefinementNetwork"]


def _blocks(channels: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(channels) for _ in range(n)])


class NoModulation(nn.Module):
    """Stands in for an IHEM in the "w/o IHEM" ablation: the reflectance feature passes unchanged."""

    def forward(self, f_r: torch.Tensor, f_i: torch.Tensor, f_s: torch.Tensor | None = None) -> torch.Tensor:
        return f_r


class RefinementNetwork(nn.Module):
    """``N_fr`` + IHEM + upsampler. Input height and width must be multiples of 4.

    Args:
        scale: upscaling factor of the output.
        illumination_channels: widths of ``f_i``, coarsest first (from ``IlluminationRegulator.channels``).
        semantic_channels: widths of ``f_s``, coarsest first, or ``None`` (no semantic branch).
        widths: widths at 1, 1/2 and 1/4 resolution (multiples of 4; divisible by the heads).
        enc_blocks: residual blocks per encoder level (1, 1/2, 1/4).
        dec_blocks: residual blocks per decoder level before its IHEM (1/4, 1/2, 1).
        refine_blocks: full-resolution residual blocks after the decoder.
        hr_blocks: residual blocks at the output resolution, after the upsampler.
        heads: attention heads of the IHEMs per decoder level (1/4, 1/2, 1).
        ffn_expansion: hidden-width factor of the gated FFNs.
        upsampler: ``"a2u"`` or ``"pixelshuffle"``.
        ihem: ``False`` removes the three IHEMs (the paper's "w/o IHEM" ablation, Table 3): the decoder is then
            a plain U-Net decoder that sees neither the illumination nor the semantic features.
    """

    def __init__(
        self,
        scale: int,
        illumination_channels: Sequence[int],
        semantic_channels: Sequence[int] | None = None,
        widths: Sequence[int] = (32, 64, 128),
        enc_blocks: Sequence[int] = (1, 1, 1),
        dec_blocks: Sequence[int] = (0, 0, 0),
        refine_blocks: int = 1,
        hr_blocks: int = 0,
        heads: Sequence[int] = (4, 2, 1),
        ffn_expansion: float = 2.0,
        upsampler: str = "a2u",
        ihem: bool = True,
    ) -> None:
        super().__init__()
        self.scale = scale
        c1, c2, c3 = widths
        sem = list(semantic_channels) if semantic_channels is not None else [None, None, None]
        self.stem = nn.Conv2d(3, c1, 3, padding=1)
        self.enc1 = _blocks(c1, enc_blocks[0])
        self.down1 = Downsample(c1, c2)
        self.enc2 = _blocks(c2, enc_blocks[1])
        self.down2 = Downsample(c2, c3)
        self.enc3 = _blocks(c3, enc_blocks[2])
        self.dec3 = _blocks(c3, dec_blocks[0])
        self.ihem3 = (IHEM(c3, illumination_channels[0], sem[0], heads[0], ffn_expansion)
                      if ihem else NoModulation())
        self.up2 = Upsample(c3, c2)
        self.fuse2 = nn.Conv2d(2 * c2, c2, 1)
        self.dec2 = _blocks(c2, dec_blocks[1])
        self.ihem2 = (IHEM(c2, illumination_channels[1], sem[1], heads[1], ffn_expansion)
                      if ihem else NoModulation())
        self.up1 = Upsample(c2, c1)
        self.fuse1 = nn.Conv2d(2 * c1, c1, 1)
        self.dec1 = _blocks(c1, dec_blocks[2])
        self.ihem1 = (IHEM(c1, illumination_channels[2], sem[2], heads[2], ffn_expansion)
                      if ihem else NoModulation())
        self.refine = _blocks(c1, refine_blocks)
        self.upsample = build_upsampler(upsampler, c1, scale)
        self.hr = _blocks(c1, hr_blocks)
        self.tail = nn.Conv2d(c1, 3, 3, padding=1)

    def forward(
        self,
        v: torch.Tensor,
        f_i: Sequence[torch.Tensor],
        f_s: Sequence[torch.Tensor] | None = None,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``y = tail(...) + up(base)``: the residual is added to ``base`` upsampled bicubically (TriCo passes the
        auto-exposed input), or, when ``base`` is None, to ``v`` upsampled bilinearly (the first-wave form)."""
        s3, s2, s1 = f_s if f_s is not None else (None, None, None)
        e1 = self.enc1(F.leaky_relu(self.stem(v), 0.2))
        e2 = self.enc2(self.down1(e1))
        d3 = self.ihem3(self.dec3(self.enc3(self.down2(e2))), f_i[0], s3)
        d2 = self.fuse2(torch.cat([self.up2(d3), e2], dim=1))
        d2 = self.ihem2(self.dec2(d2), f_i[1], s2)
        d1 = self.fuse1(torch.cat([self.up1(d2), e1], dim=1))
        d1 = self.ihem1(self.dec1(d1), f_i[2], s1)
        feat = self.upsample(self.refine(d1) + e1)
        if base is None:
            up = F.interpolate(v, scale_factor=self.scale, mode="bilinear", align_corners=False)
        else:
            up = F.interpolate(base, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)
        return self.tail(self.hr(feat)) + up
