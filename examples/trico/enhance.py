"""``python -m examples.trico enhance``: brighten and upscale photos with a trained TriCo checkpoint.

Without ``--checkpoint`` the model shipped in ``examples/trico/pretrained/`` is used (x2). Photos are read in
their displayed orientation: a JPEG's EXIF orientation tag is applied before processing (``imageio.read_image``),
so the output is upright as a photo viewer shows the input.

Big photos are processed in overlapping tiles (``--tile`` input pixels, ``--tile-overlap`` shared pixels). In
each overlap the outer quarter of each tile is discarded and the middle half is blended with complementary
cosine ramps (see ``blend_ramp``), so seams do not show. This is exact for a purely local model whose receptive
radius is at most a quarter of the overlap; TriCo is only approximately local (IHEM's channel attention and the
semantic encoder use whole-tile statistics), so use the largest tile that fits in memory. The default, 512
input pixels, runs photos up to 1024 x 1024 output pixels whole (2.0 GB peak memory on the CPU for a 512 x 512
input, 3.4 GB at 768 x 768; the shipped model): on the five training and validation photos larger than the former
default of 256, whole-image inference beat 256-pixel tiles on every one (+0.02 to +0.38 dB; docs/trico.md, "EXIF
orientation and tiles").

The scale is the checkpoint's (``--scale`` may only repeat it). The output folder is created and checked before
the model is loaded. Multi-frame inputs (animated GIF/WebP/PNG, multi-page TIFF) are refused and counted as
failed; files of a folder that are not images are listed as skipped. Exit statuses: ``cli_errors.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from examples.restoration.self_ensemble import self_ensemble
from examples.restoration.tiling import blend_ramp, tile_starts
from examples.restoration.tiling import enhance_tiled as _tiled

__all__ = ["add_arguments", "run", "enhance_tiled", "enhance_image", "tile_starts", "blend_ramp"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None,
                        help="TriCo checkpoint (save_model / trainer output / .safetensors); default: the model "
                             "shipped in examples/trico/pretrained/ for --scale")
    parser.add_argument("--input", required=True, help="an image file or a directory of images")
    parser.add_argument("--output", required=True, help="output directory (created if needed)")
    parser.add_argument("--scale", type=int, default=None,
                        help="taken from the checkpoint; if given, it must equal the checkpoint's scale")
    parser.add_argument("--tile", type=int, default=512,
                        help="tile size in input pixels; 0: whole image (default 512: 2 GB of memory on the CPU)")
    parser.add_argument("--tile-overlap", type=int, default=32, help="overlap of neighbouring tiles (pixels)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bits", type=int, default=None, choices=[8, 16],
                        help="output bit depth (default: 16 for TIFF outputs, 8 otherwise)")
    parser.add_argument("--format", default="png", choices=["png", "tif", "jpg"], help="output format")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files in --output (never an input file)")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="average the outputs of the eight flips and quarter turns of each photo (x8 the "
                             "time; +0.1 dB PSNR, +0.015 SSIM on the validation photos, docs/trico.md)")
    parser.add_argument("--exposure-prior-weight", type=float, default=None, metavar="W",
                        help="override the model's exposure-prior weight (0: the network's own exposure; the shipped "
                             "model uses 0.25; docs/trico.md, 'Exposure prior')")


@torch.no_grad()
def enhance_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int = 256, overlap: int = 32,
                  ensemble: bool = False) -> torch.Tensor:
    """Run the TriCo ``model`` on ``x`` ((3, H, W) or (B, 3, H, W)) in overlapping tiles (the toolkit's
    :func:`examples.restoration.tiling.enhance_tiled`) and return the blended ``y`` ((B,) 3, sH, sW).
    ``tile <= 0`` or an image no larger than one tile runs in one piece. ``ensemble``: each tile is the x8
    geometric self-ensemble (:func:`examples.restoration.self_ensemble.self_ensemble`)."""
    h, w = x.shape[-2:]
    whole = {}
    tiled = not (tile <= 0 or (h <= tile and w <= tile)) and hasattr(model, "exposure_gain")
    if tiled:
        # one global exposure for the whole image, not one per tile (tiles of a dark photo differ in brightness):
        # the auto-exposure gain from the whole input, the exposure prior on the whole blended output
        whole = {"gain": model.exposure_gain(x if x.dim() == 4 else x.unsqueeze(0)), "exposure_prior": False}

    def forward(t: torch.Tensor) -> torch.Tensor:
        return model(t, **whole).y

    fn = (lambda t: self_ensemble(forward, t)) if ensemble else forward
    y = _tiled(fn, x, tile, overlap, scale=model.scale)
    if tiled and hasattr(model, "apply_exposure_prior"):
        batched = x.dim() == 4
        y = model.apply_exposure_prior(x if batched else x.unsqueeze(0), y if batched else y.unsqueeze(0))
        y = y if batched else y[0]
    return y


def enhance_image(model: torch.nn.Module, x: torch.Tensor, tile: int, overlap: int, device: str,
                  ensemble: bool = False) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (3, sH, sW) in [0, 1] on the CPU (``ensemble``: x8 self-ensemble)."""
    dtype = next(model.trainable_parameters()).dtype
    y = enhance_tiled(model, x.to(device=device, dtype=dtype), tile, overlap, ensemble)
    return y.float().clamp(0.0, 1.0).cpu()


def run(args: argparse.Namespace) -> int:
    from .cli_errors import handle_errors

    return handle_errors(lambda: _run_cli(args), debug=getattr(args, "debug", False))


def _run_cli(args: argparse.Namespace) -> int:
    from examples.restoration.batch import image_inputs, restore_files

    from .checkpoint import load_model
    from .cli_errors import DataError, UsageError, check_output_dir
    from .evaluate import checkpoint_scale

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
    files, skipped = image_inputs(src)
    if not files:
        raise DataError(f"no images in {src} (looked for {', '.join(sorted(_extensions()))}); "
                        "give a folder holding images")
    out_dir = check_output_dir(args.output)  # before the model is loaded or anything computed
    weight = getattr(args, "exposure_prior_weight", None)
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise UsageError(f"--exposure-prior-weight must be in [0, 1], got {weight}")
    model, config = load_model(args.checkpoint, map_location=args.device)
    checkpoint_scale(config, args.scale, args.checkpoint)
    if weight is not None:
        if getattr(model, "exposure_prior", None) is None:
            if weight > 0:
                raise UsageError(f"{args.checkpoint} has no exposure prior to weight; give it one with `python -m "
                                 "examples.trico exposure-prior --checkpoint CKPT --weight W --out NEW`")
        else:
            model.exposure_prior = {**model.exposure_prior, "weight": weight}
    ensemble = getattr(args, "self_ensemble", False)
    failed = restore_files(lambda x: enhance_image(model, x, args.tile, args.tile_overlap, args.device, ensemble),
                           files, out_dir, ext=ext, bits=bits, overwrite=getattr(args, "overwrite", False),
                           skipped=skipped)
    return 1 if failed else 0


def _extensions() -> tuple[str, ...]:
    from examples.restoration.imageio import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m examples.trico.enhance", description=__doc__)
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))
