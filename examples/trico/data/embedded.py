"""Embedded default data set: the colour photos shipped inside scikit-image, degraded on the fly.

No download is involved: only images that ``skimage.data`` ships in its wheel are used (those that need
``pooch`` downloads, e.g. ``eagle`` or ``lily``, are excluded). Sources are resized (anti-aliased) so the
data set is small enough for a CPU demo.

- **train** (``TRAIN_IMAGES``): astronaut, coffee, motorcycle_left, motorcycle_right, hubble_deep_field,
  immunohistochemistry. Shorter side resized to ``train_short_side`` (320 px); random crops of ``crop``
  LR pixels with random flips/rot90 and a random exposure in ``ev_range`` per sample, degraded by
  :func:`~examples.trico.data.synthetic.degrade`; randomness from ``(seed, epoch, index)``.
- **test** (``TEST_IMAGES``): chelsea and rocket, never used for training. Shorter side resized to
  ``hr_size`` (256) and centre-cropped to ``hr_size x hr_size`` (divisible by 2 and 4), each degraded at the
  fixed exposures ``test_evs`` (2.5, 3.5, 4.5 stops) with fixed seeds: 6 fixed pairs, identical on every
  call with the same arguments. ``degradation`` picks the model: ``"seen"`` (the training model,
  :class:`~examples.trico.data.degradations.CameraDegradation`, its random kernel / noise / tone curve / JPEG
  drawn from the test split's own fixed seed) or ``"unseen"`` (the evaluation-only model); ``None`` keeps the
  first-wave :func:`~examples.trico.data.synthetic.degrade` with ``params``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .common import SampleKey, derive_seed, split_key
from .degradations import Degradation, build_degradation, degrade_with
from .synthetic import DegradationParams, SyntheticPairs, degrade, quantize_8bit

__all__ = ["TRAIN_IMAGES", "TEST_IMAGES", "load_skimage_photo", "embedded_dataset", "FixedPairs"]

TRAIN_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "motorcycle_left", "motorcycle_right",
                                 "hubble_deep_field", "immunohistochemistry")
TEST_IMAGES: tuple[str, ...] = ("chelsea", "rocket")


@lru_cache(maxsize=16)
def _load_uint8(name: str) -> np.ndarray:
    import skimage.data as skd

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skd.stereo_motorcycle()
        arr = left if name == "motorcycle_left" else right
    else:
        arr = getattr(skd, name)()
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is not an 8-bit RGB photo (shape {arr.shape}, {arr.dtype})")
    return arr


def load_skimage_photo(name: str, short_side: int | None = None) -> torch.Tensor:
    """``skimage.data`` photo as ``(3, H, W)`` float in [0, 1], optionally resized so min(H, W) == short_side."""
    img = torch.from_numpy(_load_uint8(name).copy()).permute(2, 0, 1).float() / 255.0
    if short_side is not None:
        h, w = img.shape[-2:]
        f = short_side / min(h, w)
        size = (max(short_side, round(h * f)), max(short_side, round(w * f)))
        img = F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
        img = quantize_8bit(img)
    return img


class FixedPairs(Dataset):
    """A fixed list of precomputed samples (accepts ``int`` or ``(index, epoch)`` keys; epoch ignored)."""

    def __init__(self, samples: Sequence[dict]):
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> dict:
        index, _ = split_key(key)
        s = self.samples[index]
        return {"input": s["input"].clone(), "target": s["target"].clone(), "name": s["name"], "ev": s["ev"]}


def embedded_dataset(split: str = "train", scale: int = 2, crop: int = 48, seed: int = 0,
                     ev_range: tuple[float, float] = (2.5, 4.5), samples_per_epoch: int = 240,
                     hr_size: int = 256, train_short_side: int = 320, test_evs: Sequence[float] = (2.5, 3.5, 4.5),
                     params: DegradationParams | None = None, augment: bool = True,
                     degradation: str | Degradation | None = None, holdout: Sequence[str] = ()) -> Dataset:
    """The embedded data set. ``split="train"``: a :class:`SyntheticPairs` of ``samples_per_epoch`` random
    crops (``crop`` LR pixels). ``split="test"``: :class:`FixedPairs` of full ``hr_size`` images.
    ``degradation``: a registered name (``"seen"``, ``"unseen"``), a degradation object, or ``None`` (first-wave
    model). Training refuses ``"unseen"``: it exists to measure generalisation.

    ``holdout``: training photos kept out of ``"train"``; ``split="val"`` is made of them (full images at the
    test exposures, with seeds of their own), so that checkpoints can be chosen without touching the test split.
    """
    split = split.lower()
    if isinstance(degradation, str):
        if split == "train" and degradation == "unseen":
            raise ValueError("the 'unseen' degradation is for evaluation only; train with 'seen'")
        degradation = build_degradation(degradation)
    unknown = sorted(set(holdout) - set(TRAIN_IMAGES))
    if unknown:
        raise ValueError(f"holdout {unknown}: not embedded training photos; choose from {list(TRAIN_IMAGES)}")
    if split == "train":
        names = [n for n in TRAIN_IMAGES if n not in holdout]
        if not names:
            raise ValueError("holdout keeps every training photo out of training")
        images = [load_skimage_photo(n, train_short_side) for n in names]
        return SyntheticPairs(images, scale=scale, ev_range=ev_range, crop=crop, seed=seed, augment=augment,
                              samples_per_epoch=samples_per_epoch, params=params, names=names,
                              degradation=degradation)
    if split in ("test", "val"):
        if hr_size % scale:
            raise ValueError(f"hr_size {hr_size} must be divisible by the scale {scale}")
        if split == "val" and not holdout:
            raise ValueError("split 'val' is made of the held-out training photos: pass holdout=[...]")
        names, salt = (TEST_IMAGES, 0x7E57) if split == "test" else (tuple(holdout), 0x7A1)
        samples = []
        for i, name in enumerate(names):
            img = load_skimage_photo(name, hr_size)
            h, w = img.shape[-2:]
            top, left = (h - hr_size) // 2, (w - hr_size) // 2
            hr = img[:, top : top + hr_size, left : left + hr_size].contiguous()
            for j, ev in enumerate(test_evs):
                gen = torch.Generator().manual_seed(derive_seed(seed, salt, i, j))
                if degradation is None:
                    lr, drawn = degrade(hr, scale, float(ev), generator=gen, params=params), {}
                else:
                    lr, drawn = degrade_with(degradation, hr, scale, float(ev), gen)
                samples.append({"input": lr, "target": hr.clone(), "name": f"{name}-{float(ev):g}",
                                "ev": float(ev), "degradation": drawn})
        return FixedPairs(samples)
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
