"""``python -m examples.trico enhance``: brighten and upscale photos with a trained TriCo checkpoint.

Without ``--checkpoint`` the model shipped in ``examples/trico/pretrained/`` is used (x2). Photos are read in
their displayed orientation: a JPEG's EXIF orientation tag is applied before processing (``imageio.read_image``),
so the output is upright as a photo viewer shows the input.

Big photos are processed in overlapping tiles (``--tile`` input pixels, ``--tile-overlap`` shared pixels). In
each overlap the outer quarter of each tile is discarded and the middle half is blended with complementary
cosine ramps (see ``blend_ramp``), so seams do not show. This is exact for a purely local model whose receptive
radius is at most a quarter of the overlap; TriCo is only approximately local (IHEM's channel attention and the
semantic encoder use whole-tile statistics), so use the largest tile that fits in memory.

The scale is the checkpoint's (``--scale`` may only repeat it). The output folder is created and checked before
the model is loaded. Multi-frame inputs (animated GIF/WebP/PNG, multi-page TIFF) are refused and counted as
failed; files of a folder that are not images are listed as skipped. Exit statuses: ``cli_errors.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

__all__ = ["add_arguments", "run", "enhance_tiled", "enhance_image", "tile_starts", "blend_ramp"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="TriCo checkpoint (save_model / trainer output / .safetensors); default: the model "
                             "shipped in examples/trico/pretrained/ for --scale")
    parser.add_argument("--input", required=True, help="an image file or a directory of images")
    parser.add_argument("--output", required=True, help="output directory (created if needed)")
    parser.add_argument("--scale", type=int, default=None,
                        help="taken from the checkpoint; if given, it must equal the checkpoint's scale")
    parser.add_argument("--tile", type=int, default=256, help="tile size in input pixels; 0: whole image")
    parser.add_argument("--tile-overlap", type=int, default=32, help="overlap of neighbouring tiles (pixels)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bits", type=int, default=None, choices=[8, 16],
                        help="output bit depth (default: 16 for TIFF outputs, 8 otherwise)")
    parser.add_argument("--format", default="png", choices=["png", "tif", "jpg"], help="output format")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files in --output (never an input file)")


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


@torch.no_grad()
def enhance_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int = 256, overlap: int = 32) -> torch.Tensor:
    """Run ``model`` on ``x`` ((3, H, W) or (B, 3, H, W)) in overlapping tiles and return the blended ``y``
    ((B,) 3, sH, sW). ``tile <= 0`` or an image no larger than one tile runs in one piece."""
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    b, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        y = model(x).y
        return y[0] if squeeze else y
    # one global exposure for the whole image, not one per tile (tiles of a dark photo differ in brightness)
    gain = {"gain": model.exposure_gain(x)} if hasattr(model, "exposure_gain") else {}
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    s = model.scale
    out = torch.zeros(b, c, s * h, s * w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, s * h, s * w, dtype=torch.float32, device=x.device)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for i, y0 in enumerate(ys):
        th = min(tile, h - y0)
        # ramp over the real overlap with the previous / next tile (none at the image border)
        top = (ys[i - 1] + tile - y0) if i > 0 else 0
        bottom = (y0 + th - ys[i + 1]) if i + 1 < len(ys) else 0
        wy = blend_ramp(s * th, s * top, s * bottom).to(x.device)
        for j, x0 in enumerate(xs):
            tw = min(tile, w - x0)
            left = (xs[j - 1] + tile - x0) if j > 0 else 0
            right = (x0 + tw - xs[j + 1]) if j + 1 < len(xs) else 0
            wx = blend_ramp(s * tw, s * left, s * right).to(x.device)
            y = model(x[..., y0 : y0 + th, x0 : x0 + tw], **gain).y.float()
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[..., s * y0 : s * (y0 + th), s * x0 : s * (x0 + tw)] += y * wt
            weight[..., s * y0 : s * (y0 + th), s * x0 : s * (x0 + tw)] += wt
    y = (out / weight.clamp_min(1e-12)).to(x.dtype)
    return y[0] if squeeze else y


def enhance_image(model: torch.nn.Module, x: torch.Tensor, tile: int, overlap: int, device: str) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, sH, sW) in [0, 1] on the CPU."""
    dtype = next(model.trainable_parameters()).dtype
    y = enhance_tiled(model, x.to(device=device, dtype=dtype), tile, overlap)
    return y.float().clamp(0.0, 1.0).cpu()


def _inputs(path: Path) -> tuple[list[Path], list[Path]]:
    """The image files to enhance, and the other files of a folder (skipped, but reported)."""
    from .imageio import is_image_file

    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return [p for p in entries if is_image_file(p)], [p for p in entries if not is_image_file(p)]
    return [path], []


def run(args: argparse.Namespace) -> int:
    from .cli_errors import handle_errors

    return handle_errors(lambda: _run_cli(args), debug=getattr(args, "debug", False))


def _run_cli(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .cli_errors import DataError, UsageError, check_output_dir
    from .evaluate import checkpoint_scale
    from .imageio import read_image, write_image

    src = Path(args.input)
    if not src.exists():
        raise DataError(f"--input {src} does not exist; give an image file or a folder of images")
    if args.checkpoint is None:
        from .pretrained import shipped_checkpoint

        wanted = args.scale if args.scale is not None else 2
        shipped = shipped_checkpoint(wanted)
        if shipped is None:
            raise UsageError(f"no --checkpoint given and no shipped x{wanted} model in examples/trico/pretrained/; "
                             "pass --checkpoint CKPT")
        args.checkpoint = str(shipped)
    ext = {"png": ".png", "tif": ".tif", "jpg": ".jpg"}[args.format]
    bits = args.bits if args.bits is not None else (16 if args.format == "tif" else 8)
    if args.format == "jpg" and bits == 16:
        raise UsageError("JPEG output is 8-bit only; use --format png or tif for --bits 16")
    files, skipped = _inputs(src)
    if not files:
        raise DataError(f"no images in {src} (looked for {', '.join(sorted(_extensions()))}); "
                        "give a folder holding images")
    out_dir = check_output_dir(args.output)  # before the model is loaded or anything computed
    model, config = load_model(args.checkpoint, map_location=args.device)
    checkpoint_scale(config, args.scale, args.checkpoint)
    inputs = {p.resolve() for p in files}
    written: dict[Path, Path] = {}
    failed = 0
    for path in files:
        target = out_dir / (path.stem + ext)
        resolved = target.resolve()
        # Never destroy data: an input, a file written earlier in this run (a.png and a.jpg both give a.png), or
        # an existing file unless --overwrite.
        reason = None
        if resolved in inputs:
            reason = "it is an input image; choose another --output"
        elif resolved in written:
            reason = f"it was already written for {written[resolved]} (same name, other extension)"
        elif target.exists() and not getattr(args, "overwrite", False):
            reason = "it exists (pass --overwrite to replace it)"
        if reason is not None:
            failed += 1
            print(f"error: not writing {target} for {path}: {reason}", file=sys.stderr)
            continue
        try:
            x = read_image(path)
        except (OSError, ValueError) as exc:
            failed += 1
            print(f"error: cannot read {path}: {exc}", file=sys.stderr)
            continue
        try:
            y = enhance_image(model, x, args.tile, args.tile_overlap, args.device)
            write_image(target, y, bits=bits)
            written[resolved] = path
        except (RuntimeError, OSError, ValueError) as exc:
            failed += 1
            print(f"error: cannot enhance {path}: {exc}", file=sys.stderr)
            continue
        print(f"{path} -> {target} ({x.shape[-1]}x{x.shape[-2]} -> {y.shape[-1]}x{y.shape[-2]})")
    if skipped:
        shown = ", ".join(p.name for p in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"skipped {len(skipped)} file(s) that are not images: {shown}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _extensions() -> tuple[str, ...]:
    from .imageio import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m examples.trico.enhance", description=__doc__)
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))
