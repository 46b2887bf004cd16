"""Image reading and writing for restoration tasks (part of :mod:`examples.restoration`).

``read_image`` returns a ``torch.float32`` tensor of shape ``(3, H, W)`` with values in ``[0, 1]``:

- PNG / JPEG / BMP / WebP through Pillow, TIFF through tifffile (Pillow as a fallback);
- 8-bit images are divided by 255, 16-bit ones by 65535 (floating point TIFFs are clipped to [0, 1]);
- grayscale (and grayscale + alpha) become three identical channels;
- an alpha channel is dropped (not composited on black: for photos the colour channels are the picture);
- palette images are converted to RGB;
- multi-frame files (animated GIF / WebP / PNG, multi-page TIFF) are refused: which frame is "the" image is the
  caller's choice, so ``read_image`` never silently takes the first one.
- an EXIF orientation tag (JPEG; also PNG / WebP, any file read through Pillow) is applied
  (``PIL.ImageOps.exif_transpose``): the tensor has the orientation a photo viewer displays.

Any failure raises :class:`ImageReadError` (a ``ValueError``) that names the file and the reason.

``write_image`` writes 8-bit PNG / JPEG (by extension), or 16-bit PNG / TIFF when ``bits=16``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
_TIFF_EXTENSIONS = (".tif", ".tiff")

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "is_image_file", "read_image", "write_image", "to_numpy_hwc",
           "probe_image", "unfilter_png_rows"]


class ImageReadError(ValueError):
    """Raised when an image cannot be read; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path!r}: {reason}")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _array_to_tensor(arr: np.ndarray, path: str | os.PathLike) -> torch.Tensor:
    arr = np.asarray(arr)
    # Scale to [0, 1] according to the dtype.
    if arr.dtype == np.uint8:
        data = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        data = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.bool_:
        data = arr.astype(np.float32)
    elif arr.dtype in (np.int32, np.int64, np.uint32):
        # Pillow returns mode "I" (int32) for some 16-bit PNGs.
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        data = np.clip(arr.astype(np.float32) / peak, 0.0, 1.0)
    elif np.issubdtype(arr.dtype, np.floating):
        data = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise ImageReadError(path, f"unsupported pixel type {arr.dtype}")

    if data.ndim == 4:
        raise ImageReadError(path, f"it holds {arr.shape[0]} frames (multi-page); extract the one to use first")
    if data.ndim == 2:
        data = np.stack([data] * 3, axis=-1)
    elif data.ndim == 3:
        # tifffile may return planar (C, H, W) data.
        if data.shape[-1] not in (1, 2, 3, 4) and data.shape[0] in (1, 2, 3, 4):
            data = np.moveaxis(data, 0, -1)
        channels = data.shape[-1]
        if channels == 1:
            data = np.repeat(data, 3, axis=-1)
        elif channels == 2:  # grayscale + alpha
            data = np.repeat(data[..., :1], 3, axis=-1)
        elif channels == 4:  # RGBA: drop alpha
            data = data[..., :3]
        elif channels != 3:
            raise ImageReadError(path, f"unsupported channel count {channels}")
    else:
        raise ImageReadError(path, f"unsupported array shape {arr.shape}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ImageReadError(path, "empty image")
    return torch.from_numpy(np.ascontiguousarray(data.transpose(2, 0, 1))).float()


def _png_header(path: Path) -> tuple[int, int] | None:
    """Return (bit_depth, colour_type) of a PNG file, or None if it is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(29)
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _read_png16(path: Path) -> np.ndarray:
    """Decode a 16-bit RGB / RGBA / gray+alpha PNG (Pillow would truncate those to 8 bits).

    Non-interlaced only; all five PNG row filters are undone with numpy (:func:`unfilter_png_rows`).
    """
    import struct
    import zlib

    data = path.read_bytes()
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ImageReadError(path, "PNG without IHDR chunk")
    w, h, depth, ctype, _, _, interlace = header
    if depth != 16 or interlace != 0:
        raise ImageReadError(path, "only non-interlaced 16-bit PNGs are decoded here")
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if channels is None:
        raise ImageReadError(path, f"unsupported PNG colour type {ctype}")
    bpp = 2 * channels
    stride = w * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    if raw.size < h * (stride + 1):
        raise ImageReadError(path, "truncated PNG data")
    raw = raw[: h * (stride + 1)].reshape(h, stride + 1)
    ftypes = raw[:, 0]
    bad = np.flatnonzero(ftypes > 4)
    if bad.size:
        raise ImageReadError(path, f"bad PNG filter type {ftypes[bad[0]]} in row {bad[0]}")
    out = unfilter_png_rows(raw[:, 1:], ftypes, w, bpp)
    arr = out.view(">u2").astype(np.uint16).reshape(h, w, channels)
    return arr[..., 0] if channels == 1 else arr


_WAVEFRONT_ROWS = 1024  # rows per wavefront block: bounds the skewed buffer to (width + 1024) x 1024 pixels


def _unfilter_simple(line: np.ndarray, prev: np.ndarray, ftype: int, bpp: int) -> np.ndarray:
    """One row of filter type None, Sub or Up (uint8 in, uint8 out), vectorised."""
    if ftype == 0:
        return line
    if ftype == 1:
        return (line.reshape(-1, bpp).astype(np.int64).cumsum(axis=0).reshape(-1) & 0xFF).astype(np.uint8)
    return line + prev  # Up: uint8 arithmetic wraps modulo 256


def _unfilter_wavefront(data: np.ndarray, ftypes: np.ndarray, prev: np.ndarray, w: int, bpp: int) -> np.ndarray:
    """Undo any mix of PNG filters on rows ``data`` ((n, w * bpp) uint8) below the row ``prev``.

    Average and Paeth predict a byte from its left neighbour ``a`` (already decoded in the same row), the byte
    above ``b`` and the one above-left ``c``, so a row cannot be decoded in one vector operation. The pixels of
    one anti-diagonal (``y + x = t``) depend only on the two diagonals before it, though: we store the rows
    skewed (pixel ``(y, x)`` at column ``y + x + 1``, so each diagonal is one contiguous column) and decode a
    whole diagonal per numpy operation, ``n + w`` steps instead of ``n * w`` Python iterations.
    """
    n = data.shape[0]
    cols = w + n + 1
    skew = np.zeros((cols, n + 1, bpp), dtype=np.uint8)  # skew[y + x + 1, y] = pixel (y, x); row 0 = prev
    src = np.zeros((cols, n + 1, bpp), dtype=np.uint8)
    skew[1 : w + 1, 0] = prev.reshape(w, bpp)
    pixels = data.reshape(n, w, bpp)
    for y in range(1, n + 1):
        src[y + 1 : y + 1 + w, y] = pixels[y - 1]
    present = {int(k) for k in np.unique(ftypes)}
    masks = {k: (ftypes == k)[:, None] for k in present if k != 4}  # rows of each other filter type
    m = min(n, w)
    bufs = [np.empty((m, bpp), dtype=np.int16) for _ in range(7)]
    for j in range(2, cols):  # column j holds the diagonal t = j - 1
        lo, hi = max(1, j - w), min(n, j - 1)  # rows y with 0 <= x = j - 1 - y < w
        if lo > hi:
            continue
        k = hi - lo + 1
        a, b, c, t1, t2, t3, pred = (buf[:k] for buf in bufs)
        np.copyto(a, skew[j - 1, lo : hi + 1])
        np.copyto(b, skew[j - 1, lo - 1 : hi])
        if 4 in present:
            np.copyto(c, skew[j - 2, lo - 1 : hi])
            _paeth(a, b, c, t1, t2, t3, pred)
        else:
            pred[...] = 0
        rows = slice(lo - 1, hi)
        for kind, mask in masks.items():
            if kind == 3:
                np.add(a, b, out=t1)
                np.right_shift(t1, 1, out=t1)
                np.copyto(pred, t1, where=mask[rows])
            elif kind == 1:
                np.copyto(pred, a, where=mask[rows])
            elif kind == 2:
                np.copyto(pred, b, where=mask[rows])
            elif 4 in present:  # None rows: prediction 0
                np.copyto(pred, 0, where=mask[rows])
        np.add(pred, src[j, lo : hi + 1], out=pred)
        skew[j, lo : hi + 1] = pred  # the cast to uint8 wraps modulo 256
    out = np.empty((n, w, bpp), dtype=np.uint8)
    for y in range(1, n + 1):
        out[y - 1] = skew[y + 1 : y + 1 + w, y]
    return out.reshape(n, w * bpp)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray, pa: np.ndarray, pb: np.ndarray, pc: np.ndarray,
           out: np.ndarray) -> np.ndarray:
    """The PNG Paeth predictor into ``out`` (int16 arrays; ``pa``, ``pb``, ``pc`` are scratch): whichever of a,
    b, c is closest to a + b - c, ties going to a, then b."""
    np.subtract(b, c, out=pa)
    np.subtract(a, c, out=pb)
    np.add(pa, pb, out=pc)
    np.abs(pa, out=pa)
    np.abs(pb, out=pb)
    np.abs(pc, out=pc)
    np.copyto(out, c)
    np.copyto(out, b, where=pb <= pc)
    np.minimum(pb, pc, out=pb)
    np.copyto(out, a, where=pa <= pb)
    return out


def unfilter_png_rows(data: np.ndarray, ftypes: np.ndarray, w: int, bpp: int) -> np.ndarray:
    """Undo the PNG row filters of ``data`` ((h, w * bpp) uint8, filter type byte removed) -> (h, w * bpp).

    Rows of type None/Sub/Up are decoded one vector operation per row; runs containing Average or Paeth rows
    go through the diagonal wavefront (:func:`_unfilter_wavefront`) in blocks of at most 1024 rows.
    """
    h = data.shape[0]
    out = np.empty_like(data)
    prev = np.zeros(data.shape[1], dtype=np.uint8)
    hard = np.flatnonzero(ftypes >= 3)
    first, last = (int(hard[0]), int(hard[-1])) if hard.size else (h, h - 1)
    for y in range(first):
        prev = out[y] = _unfilter_simple(data[y], prev, int(ftypes[y]), bpp)
    for y0 in range(first, last + 1, _WAVEFRONT_ROWS):
        y1 = min(y0 + _WAVEFRONT_ROWS, last + 1)
        out[y0:y1] = _unfilter_wavefront(data[y0:y1], ftypes[y0:y1], prev, w, bpp)
        prev = out[y1 - 1]
    for y in range(last + 1, h):
        prev = out[y] = _unfilter_simple(data[y], prev, int(ftypes[y]), bpp)
    return out


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    header = _png_header(path)
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
        return _read_png16(path)

    from PIL import ImageOps

    with Image.open(path) as img:
        frames = int(getattr(img, "n_frames", 1) or 1)
        if frames > 1:
            raise ImageReadError(path, f"it has {frames} frames (animated or multi-page); restoration tasks take "
                                       "still images: extract the frame to use first (e.g. with PIL.ImageSequence)")
        img.load()
        # the displayed orientation: apply (and drop) an EXIF orientation tag, as photo viewers do
        img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
            img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
        elif mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(img, dtype=np.uint16)
        elif mode == "I":
            return np.asarray(img)
        elif mode == "F":
            return np.asarray(img, dtype=np.float32)
        return np.asarray(img)


def probe_image(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image after checking, in one opening of the file, that it is complete.

    Cheaper than decoding: a PNG's chunks are walked and their CRCs checked (``Image.verify``), a JPEG must end
    with its end-of-image marker, a TIFF's image data must lie inside the file; other formats are decoded.
    Multi-frame files are refused as :func:`read_image` refuses them. Raises :class:`ImageReadError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "no such file")
    size = p.stat().st_size
    if size == 0:
        raise ImageReadError(p, "the file is empty")
    try:
        if p.suffix.lower() in _TIFF_EXTENSIONS:
            import tifffile

            with tifffile.TiffFile(str(p)) as tif:
                page = tif.pages[0]
                shape = page.shape
                if len(tif.series) and len(tif.series[0].shape) > len(shape):
                    raise ImageReadError(p, f"it holds {tif.series[0].shape[0]} frames (multi-page); extract the "
                                            "one to use first")
                ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts)]
                if ends and max(ends) > size:
                    raise ImageReadError(p, f"truncated: image data end at byte {max(ends)}, the file has {size}")
                axes = page.axes
                return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        from PIL import Image

        with Image.open(p) as img:
            w, h = img.size
            frames = int(getattr(img, "n_frames", 1) or 1)
            if frames > 1:
                raise ImageReadError(p, f"it has {frames} frames (animated or multi-page); extract the frame to "
                                        "use first")
            fmt = img.format
            if fmt == "PNG":
                img.verify()  # walks every chunk and checks its CRC: catches truncation and corruption
            elif fmt == "JPEG":
                with open(p, "rb") as fh:
                    fh.seek(max(0, size - 4096))
                    if b"\xff\xd9" not in fh.read():
                        raise ImageReadError(p, "truncated JPEG (no end-of-image marker)")
            else:
                img.load()
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow/tifffile raise many exception types
        raise ImageReadError(p, f"{type(exc).__name__}: {exc}") from exc
    if h == 0 or w == 0:
        raise ImageReadError(p, "empty image")
    return h, w


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file into a ``float32`` tensor ``(3, H, W)`` in ``[0, 1]``."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in _TIFF_EXTENSIONS:
            import tifffile

            try:
                arr = tifffile.imread(str(p))
            except Exception:  # noqa: BLE001 - fall back on Pillow for unusual TIFFs
                arr = _read_pillow(p)
        else:
            arr = _read_pillow(p)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow/tifffile raise many exception types
        raise ImageReadError(p, f"{type(exc).__name__}: {exc}") from exc
    return _array_to_tensor(arr, p)


def to_numpy_hwc(tensor: torch.Tensor, bits: int = 8) -> np.ndarray:
    """Convert a ``(3|1, H, W)`` or ``(H, W)`` float tensor in [0, 1] to a rounded uint8/uint16 HWC array."""
    t = tensor.detach().to("cpu", torch.float32)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3,H,W) or (1,H,W) tensor, got shape {tuple(tensor.shape)}")
    peak = 255.0 if bits == 8 else 65535.0
    arr = (t.clamp(0.0, 1.0) * peak).round().numpy().transpose(1, 2, 0)
    arr = arr.astype(np.uint8 if bits == 8 else np.uint16)
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def write_image(path: str | os.PathLike, tensor: torch.Tensor, bits: int = 8, quality: int = 95) -> None:
    """Write a ``(3, H, W)`` tensor in [0, 1] to ``path``.

    8-bit for PNG / JPEG / BMP / WebP (by extension); ``bits=16`` writes 16-bit PNG or TIFF.
    Values are clamped to [0, 1] and rounded to the nearest integer level.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if bits == 16 and suffix not in (".png", *_TIFF_EXTENSIONS):
        raise ValueError(f"16-bit output is supported for PNG and TIFF only, not {suffix!r}")
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(f"unsupported image extension {suffix!r}; use one of {IMAGE_EXTENSIONS}")
    arr = to_numpy_hwc(tensor, bits=bits)
    p.parent.mkdir(parents=True, exist_ok=True)
    if suffix in _TIFF_EXTENSIONS:
        import tifffile

        tifffile.imwrite(str(p), arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
        return
    if bits == 16:
        # Pillow cannot write 16-bit RGB PNGs; use a minimal writer built on zlib.
        _write_png16(p, arr)
        return
    from PIL import Image

    img = Image.fromarray(arr)
    if suffix in (".jpg", ".jpeg"):
        img.save(p, quality=quality)
    else:
        img.save(p)


def _write_png16(path: Path, arr: np.ndarray) -> None:
    import struct
    import zlib

    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    colour_type = {1: 0, 3: 2, 4: 6}[c]
    raw = arr.astype(">u2").reshape(h, w * c)
    rows = b"".join(b"\x00" + raw[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))
