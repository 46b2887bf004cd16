"""Restore a folder of photos with any image function, never destroying data (the core of an ``enhance``
command).

:func:`image_inputs` lists the images of a file or folder (other files are reported as skipped);
:func:`restore_files` reads each, applies ``fn`` (``(3, H, W)`` in [0, 1] -> ``(3, sH, sW)``; tiling is the
caller's choice, :mod:`.tiling`), and writes the result into ``out_dir``. It never writes over an input image,
over a file it wrote earlier in the same run (``a.png`` and ``a.jpg`` both give ``a.png``), or over an existing
file unless ``overwrite``. A file that cannot be read, restored or written is reported on stderr and counted;
the others go on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .imageio import is_image_file, read_image, write_image

__all__ = ["image_inputs", "restore_files"]


def image_inputs(path: str | Path) -> tuple[list[Path], list[Path]]:
    """``(images, skipped)``: the image files to process (``path`` itself, or a folder's non-hidden images in
    name order) and the other files of the folder."""
    path = Path(path)
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return [p for p in entries if is_image_file(p)], [p for p in entries if not is_image_file(p)]
    return [path], []


def restore_files(fn: Callable[[torch.Tensor], torch.Tensor], files: Sequence[Path], out_dir: Path,
                  ext: str = ".png", bits: int = 8, overwrite: bool = False, skipped: Sequence[Path] = ()) -> int:
    """Apply ``fn`` to every file and write ``out_dir / (stem + ext)``; return the number of failed files (each
    reported on stderr with the reason; one line per written file on stdout)."""
    inputs = {Path(p).resolve() for p in files}
    written: dict[Path, Path] = {}
    failed = 0
    for path in files:
        target = out_dir / (path.stem + ext)
        resolved = target.resolve()
        reason = None
        if resolved in inputs:
            reason = "it is an input image; choose another --output"
        elif resolved in written:
            reason = f"it was already written for {written[resolved]} (same name, other extension)"
        elif target.exists() and not overwrite:
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
            y = fn(x)
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
    return failed
