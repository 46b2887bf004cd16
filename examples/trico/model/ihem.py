"""IHEM: the Integrated Hybrid Expert Modulator (Sec. 3.1, Fig. 3, Eq. 2-3).

Each decoder level of ``N_fr`` is modulated twice:

1. S-InA (Eq. 2): query from the semantic feature ``f_s``, key and value from the reflectance feature ``f_r``;
   each goes through layer norm, a 1x1 convolution and a 3x3 depth-wise convolution; the attention map is
   ``C x C`` (transposed, over channels, Restormer's MDTA), softmax-normalised with a learnable temperature;
   a 1x1 output convolution and a residual connection give ``W_S-InR``; a gated-dconv FFN follows.
2. I-InA (Eq. 3): the same with the query from the illumination feature ``f_i`` of ``N_ir``'s decoder.

Conventions (the paper's supplementary material is not available):

- ``Softmax(Q K / tau)`` is parametrised like Restormer: query and key are L2-normalised along the pixels and
  multiplied by a learnable per-head ``temperature`` (= ``1 / tau``), initialised to 1.
- The guidance may have another width and resolution than ``f_r``: its 1x1 projection maps it to the width of
  ``f_r`` and, when the sizes differ, the projected guidance is resized bilinearly before the depth-wise
  convolution (1x1 convolution and bilinear resizing commute, so this equals resizing first, only cheaper).
- FFN is Restormer's gated-dconv feed-forward network (GDFN) with a pre-norm and a residual connection.
- ``semantic_channels=None`` builds no semantic branch: S-InA and its FFN are skipped, not fed zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d

__all__ = ["GuidedTransposedAttention", "GatedFFN", "IHEM"]


class GuidedTransposedAttention(nn.Module):
    """``Conv1x1[V_r Softmax(Q_g K_r^T * temperature)] + f_r`` with channel (transposed) attention."""

    def __init__(self, channels: int, guide_channels: int, heads: int = 1, bias: bool = False) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.norm_g = LayerNorm2d(guide_channels)
        self.norm_r = LayerNorm2d(channels)
        self.q = nn.Conv2d(guide_channels, channels, 1, bias=bias)
        self.q_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias)
        self.kv = nn.Conv2d(channels, 2 * channels, 1, bias=bias)
        self.kv_dw = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels, bias=bias)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, f_r: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f_r.shape
        q = self.q(self.norm_g(guide))
        if q.shape[-2:] != (h, w):
            q = F.interpolate(q, size=(h, w), mode="bilinear", align_corners=False)
        q = self.q_dw(q)
        k, v = self.kv_dw(self.kv(self.norm_r(f_r))).chunk(2, dim=1)
        q = F.normalize(q.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        out = (attn @ v).reshape(b, c, h, w)
        return self.project_out(out) + f_r


class GatedFFN(nn.Module):
    """Restormer's gated-dconv FFN with pre-norm and residual: ``x + W3 (gelu(W1' x) * W2' x)``."""

    def __init__(self, channels: int, expansion: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.norm = LayerNorm2d(channels)
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=bias)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.dw(self.project_in(self.norm(x))).chunk(2, dim=1)
        return x + self.project_out(F.gelu(a) * g)


class IHEM(nn.Module):
    """S-InA -> FFN -> I-InA -> FFN (Eq. 2-3). ``semantic_channels=None`` skips the semantic half."""

    def __init__(
        self,
        channels: int,
        illumination_channels: int,
        semantic_channels: int | None = None,
        heads: int = 1,
        ffn_expansion: float = 2.0,
    ) -> None:
        super().__init__()
        if semantic_channels is not None:
            self.s_ina = GuidedTransposedAttention(channels, semantic_channels, heads)
            self.s_ffn = GatedFFN(channels, ffn_expansion)
        else:
            self.s_ina = None
            self.s_ffn = None
        self.i_ina = GuidedTransposedAttention(channels, illumination_channels, heads)
        self.i_ffn = GatedFFN(channels, ffn_expansion)

    def forward(
        self, f_r: torch.Tensor, f_i: torch.Tensor, f_s: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.s_ina is not None:
            if f_s is None:
                raise ValueError("this IHEM has a semantic branch but no semantic feature was given")
            f_r = self.s_ffn(self.s_ina(f_r, f_s))
        return self.i_ffn(self.i_ina(f_r, f_i))
