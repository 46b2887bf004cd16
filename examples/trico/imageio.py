"""Image reading and writing for the TriCo example.

``read_image`` returns a ``torch.float32`` tensor of shape ``(3, H, W)`` with values in ``[0, 1]``:

- PNG / JPEG / BMP / WebP through Pillow, TIFF through tifffile (Pillow as a fallback);
- 8-bit images are divided by 255, 16-bit ones by 65535 (floating point TIFFs are clipped to [0, 1]);
- grayscale (and grayscale + alpha) become three identical channels;
- an alpha channel is dropped (not composited on black: for photos the colour channels are the picture);
- palette images are converted to RGB;
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

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_TIFF_EXTENSIONS = (".tif", ".tiff")

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "is_image_file", "read_image", "write_image", "to_numpy_hwc"]


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

    Non-interlaced only; all five PNG row filters are undone with numpy (Average and Paeth rows
    need a loop over pixels, which is slow in pure Python but exact).
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
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        ftype, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 1:
            cur = line.reshape(w, bpp).cumsum(axis=0).reshape(-1) % 256
        elif ftype == 2:
            cur = (line + prev) % 256
        elif ftype in (3, 4):
            cur = line.copy()
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                if ftype == 3:
                    pred = (a + b) // 2
                else:
                    c = prev[x - bpp] if x >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                cur[x] = (cur[x] + pred) % 256
        else:
            raise ImageReadError(path, f"bad PNG filter type {ftype} in row {y}")
        out[y] = cur
        prev = cur.astype(np.int32)
    arr = out.view(">u2").astype(np.uint16).reshape(h, w, channels)
    return arr[..., 0] if channels == 1 else arr


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    header = _png_header(path)
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
        return _read_png16(path)

    from PIL import ImageOps

    with Image.open(path) as img:
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
