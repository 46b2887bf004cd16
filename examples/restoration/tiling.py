"""Tiled inference for any image-to-image callable: overlapping tiles, blended seams.

A restoration network often cannot take a whole photo at once (memory), and a tile's border pixels are worse
than its centre (missing context). :func:`enhance_tiled` runs ``fn`` (a callable ``(B, C, h, w) -> (B, C', s*h,
s*w)`` on tensors, any model wrapped in a lambda) on overlapping tiles and blends them with cosine ramps that
discard the outer quarter of every overlap (:func:`blend_ramp`); the weights of two neighbours add up to 1, so a
pointwise ``fn`` gives exactly the untiled result. The integer scale ``s`` is read from the first tile's output
unless given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["tile_starts", "blend_ramp", "enhance_tiled"]

TensorFn = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``, evenly spread, with neighbours sharing
    at least ``overlap`` pixels."""
    if tile >= length:
        return [0]
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    return sorted({round(i * (length - tile) / (n - 1)) for i in range(n)})


def blend_ramp(length: int, ramp_start: int, ramp_end: int, dtype=torch.float32) -> torch.Tensor:
    """1-D blending weights of a tile of ``length`` samples that overlaps its neighbours by ``ramp_start`` and
    ``ramp_end`` samples (0: image border, weight 1 up to the edge).

    In an overlap of ``n`` samples the outer ``n // 4`` are discarded (weight 0: the tile's own border effects
    live there), the middle part is a cosine ramp and the inner ``n // 4`` keep weight 1. The neighbour's ramp
    is the mirror image, so the weights of two neighbours add up to exactly 1 across their overlap.
    """
    w = torch.ones(length, dtype=dtype)
    for n, side in ((ramp_start, "start"), (ramp_end, "end")):
        n = min(n, length)
        if n <= 0:
            continue
        m = n // 4
        r = n - 2 * m
        up = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(r, dtype=dtype) + 0.5) / r)
        ramp = torch.cat([torch.zeros(m, dtype=dtype), up, torch.ones(m, dtype=dtype)])
        if side == "start":
            w[:n] = torch.minimum(w[:n], ramp)
        else:
            w[length - n :] = torch.minimum(w[length - n :], ramp.flip(0))
    return w


def _scale_of(y: torch.Tensor, h: int, w: int) -> int:
    sh, sw = y.shape[-2] / h, y.shape[-1] / w
    if sh != sw or sh != int(sh) or sh < 1:
        raise ValueError(f"fn maps a {h}x{w} tile to {tuple(y.shape[-2:])}: not an integer up-scaling")
    return int(sh)


@torch.no_grad()
def enhance_tiled(fn: TensorFn, x: torch.Tensor, tile: int = 256, overlap: int = 32,
                  scale: int | None = None) -> torch.Tensor:
    """Run ``fn`` on ``x`` ((C, H, W) or (B, C, H, W)) in overlapping ``tile`` x ``tile`` tiles sharing at least
    ``overlap`` pixels and return the blended output ((B,) C', sH, sW). ``tile <= 0`` or an image no larger than
    one tile runs in one piece. ``scale``: the up-scaling of ``fn`` (default: read from the first tile)."""
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    b, _, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        y = fn(x)
        return y[0] if squeeze else y
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = weight = None
    s = scale
    for i, y0 in enumerate(ys):
        th = min(tile, h - y0)
        # ramp over the real overlap with the previous / next tile (none at the image border)
        top = (ys[i - 1] + tile - y0) if i > 0 else 0
        bottom = (y0 + th - ys[i + 1]) if i + 1 < len(ys) else 0
        for j, x0 in enumerate(xs):
            tw = min(tile, w - x0)
            left = (xs[j - 1] + tile - x0) if j > 0 else 0
            right = (x0 + tw - xs[j + 1]) if j + 1 < len(xs) else 0
            y = fn(x[..., y0 : y0 + th, x0 : x0 + tw]).float()
            if out is None:
                s = s if s is not None else _scale_of(y, th, tw)
                out = torch.zeros(b, y.shape[1], s * h, s * w, dtype=torch.float32, device=x.device)
                weight = torch.zeros(1, 1, s * h, s * w, dtype=torch.float32, device=x.device)
            wy = blend_ramp(s * th, s * top, s * bottom).to(x.device)
            wx = blend_ramp(s * tw, s * left, s * right).to(x.device)
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[..., s * y0 : s * (y0 + th), s * x0 : s * (x0 + tw)] += y * wt
            weight[..., s * y0 : s * (y0 + th), s * x0 : s * (x0 + tw)] += wt
    y = (out / weight.clamp_min(1e-12)).to(x.dtype)
    return y[0] if squeeze else y
