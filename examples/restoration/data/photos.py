"""Clean photos for synthetic restoration data: the colour photos shipped inside scikit-image, or a folder.

No download is involved: only images that ``skimage.data`` ships in its wheel are used (those that need
``pooch`` downloads, e.g. ``eagle`` or ``lily``, are excluded). ``TRAIN_IMAGES`` and ``TEST_IMAGES`` are disjoint:
a task trains on the first (minus any held-out validation photos) and reports on the second.
``EXTRA_TEST_IMAGES`` (split ``"extra"``) are three more photos from *other* sources, shipped in the scikit-learn
and matplotlib wheels (``china.jpg``, ``flower.jpg``, ``grace_hopper.jpg``): other cameras, other JPEG
pipelines, never trained on, a second test set against which a model tuned on the scikit-image photos is checked.
``MORE_TRAIN_IMAGES`` are further scikit-image photos a task may add to its training set (``more=...``): six
grayscale photos and textures (used as neutral RGB) and the colour fundus photo ``retina``; they widen the range of
scene content and brightness a model learns from (dark backgrounds: ``coins``, ``retina``; bright: ``camera``).
:class:`FixedPairs` holds precomputed ``{"input", "target", "name", ...}`` samples (test and validation splits).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..degradations import quantize_8bit
from ..imageio import is_image_file
from .common import DataNotFoundError, SampleKey, split_key

__all__ = ["TRAIN_IMAGES", "TEST_IMAGES", "EXTRA_TEST_IMAGES", "MORE_TRAIN_IMAGES", "load_skimage_photo", "embedded_photo_names", "list_images",
           "FixedPairs"]

TRAIN_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "motorcycle_left", "motorcycle_right",
                                 "hubble_deep_field", "immunohistochemistry")
TEST_IMAGES: tuple[str, ...] = ("chelsea", "rocket")
EXTRA_TEST_IMAGES: tuple[str, ...] = ("china", "flower", "grace_hopper")
#: optional extra training photos (``skimage.data``; the grayscale ones are repeated into three channels)
MORE_TRAIN_IMAGES: tuple[str, ...] = ("camera", "moon", "coins", "brick", "grass", "gravel", "retina")
#: where the extra photos live: (package, path inside it)
_WHEEL_PHOTOS: dict[str, tuple[str, str]] = {
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def _load_wheel_photo(name: str) -> np.ndarray:
    from importlib.resources import files

    from PIL import Image

    package, path = _WHEEL_PHOTOS[name]
    try:
        resource = files(package).joinpath(path)
    except ModuleNotFoundError:
        raise DataNotFoundError(f"photo {name!r} ships with the {package} package, which is not installed "
                                f"(pip install {'scikit-learn' if package == 'sklearn' else package})") from None
    with resource.open("rb") as fh, Image.open(fh) as im:
        return np.asarray(im.convert("RGB"))


@lru_cache(maxsize=16)
def _load_uint8(name: str) -> np.ndarray:
    import skimage.data as skd

    if name in _WHEEL_PHOTOS:
        arr = _load_wheel_photo(name)
    elif name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skd.stereo_motorcycle()
        arr = left if name == "motorcycle_left" else right
    else:
        arr = getattr(skd, name)()
    arr = np.asarray(arr)
    if name in MORE_TRAIN_IMAGES and arr.ndim == 2:  # a grayscale photo as neutral RGB
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"photo {name} is not an 8-bit RGB photo (shape {arr.shape}, {arr.dtype})")
    return arr


def load_skimage_photo(name: str, short_side: int | None = None) -> torch.Tensor:
    """An embedded photo (``skimage.data`` or ``EXTRA_TEST_IMAGES``) as ``(3, H, W)`` float in [0, 1], optionally resized (anti-aliased bicubic, then
    8-bit quantised) so that min(H, W) == short_side."""
    img = torch.from_numpy(_load_uint8(name).copy()).permute(2, 0, 1).float() / 255.0
    if short_side is not None:
        h, w = img.shape[-2:]
        f = short_side / min(h, w)
        size = (max(short_side, round(h * f)), max(short_side, round(w * f)))
        img = F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
        img = quantize_8bit(img)
    return img


def embedded_photo_names(split: str, holdout: Sequence[str] = (), more: Sequence[str] = ()) -> tuple[str, ...]:
    """The embedded photos of ``split``: ``train`` (``TRAIN_IMAGES`` plus ``more``, minus ``holdout``), ``val``
    (the held-out training photos), ``test`` (``TEST_IMAGES``), ``extra`` (``EXTRA_TEST_IMAGES``). ``more``: names
    from ``MORE_TRAIN_IMAGES``. ``ValueError`` for unknown names or an empty split."""
    bad_more = sorted(set(more) - set(MORE_TRAIN_IMAGES))
    if bad_more:
        raise ValueError(f"more photos {bad_more}: not in MORE_TRAIN_IMAGES; choose from {list(MORE_TRAIN_IMAGES)}")
    pool = TRAIN_IMAGES + tuple(n for n in MORE_TRAIN_IMAGES if n in more)
    unknown = sorted(set(holdout) - set(pool))
    if unknown:
        raise ValueError(f"holdout {unknown}: not embedded training photos; choose from {list(pool)}")
    split = split.lower()
    if split == "train":
        names = tuple(n for n in pool if n not in holdout)
        if not names:
            raise ValueError("holdout keeps every training photo out of training")
        return names
    if split == "val":
        if not holdout:
            raise ValueError("split 'val' is made of the held-out training photos: pass holdout=[...]")
        return tuple(holdout)
    if split == "test":
        return TEST_IMAGES
    if split == "extra":
        return EXTRA_TEST_IMAGES
    raise ValueError(f"split must be 'train', 'val', 'test' or 'extra', got {split!r}")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files (by extension) directly inside ``folder`` or in its sub-folders."""
    root = Path(folder)
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {str(root)!r} does not exist; check data.root (or --data folder:PATH)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise DataNotFoundError(f"no image files ({', '.join(sorted({'png', 'jpg', 'tif'}))}...) in {str(root)!r}; "
                                "point data.root at a folder of photos")
    return files


class FixedPairs(Dataset):
    """A fixed list of precomputed samples (accepts ``int`` or ``(index, epoch)`` keys; epoch ignored). Each
    item is a fresh dict of the entries named in ``keys`` (default: all), tensors cloned, so a caller may modify
    what it gets; entries left out (e.g. drawn degradation parameters holding ``None``) stay in ``samples``."""

    def __init__(self, samples: Sequence[dict], keys: Sequence[str] | None = None):
        self.samples = list(samples)
        self.keys = tuple(keys) if keys is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> dict:
        index, _ = split_key(key)
        s = self.samples[index]
        keys = self.keys if self.keys is not None else tuple(s)
        return {k: (s[k].clone() if isinstance(s[k], torch.Tensor) else s[k]) for k in keys}
