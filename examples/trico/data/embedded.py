"""Embedded default data set: the colour photos shipped inside scikit-image, degraded on the fly.

The photos and their train/test lists are the restoration toolkit's (:mod:`examples.restoration.data.photos`);
this module degrades them the TriCo way. Sources are resized (anti-aliased) so the data set is small enough for
a CPU demo.

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
- **extra** (``EXTRA_TEST_IMAGES``): china, flower (scikit-learn) and grace_hopper (matplotlib), built like
  the test split with seeds of their own: 9 pairs from photos of other sources, a second test set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from examples.restoration.data.common import derive_seed
from examples.restoration.data.photos import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    embedded_photo_names,
    load_skimage_photo,
)
from examples.restoration.data.photos import FixedPairs as _FixedPairs

from .degradations import Degradation, build_degradation, degrade_with
from .synthetic import DegradationParams, SyntheticPairs, degrade

__all__ = ["TRAIN_IMAGES", "TEST_IMAGES", "load_skimage_photo", "embedded_dataset", "FixedPairs"]



class FixedPairs(_FixedPairs):
    """The toolkit's fixed sample list, items ``{"input", "target", "name", "ev"}`` (the drawn degradation
    parameters stay in ``samples``)."""

    def __init__(self, samples: Sequence[dict]):
        super().__init__(samples, keys=("input", "target", "name", "ev"))


def embedded_dataset(split: str = "train", scale: int = 2, crop: int = 48, seed: int = 0,
                     ev_range: tuple[float, float] = (2.5, 4.5), samples_per_epoch: int = 240,
                     hr_size: int = 256, train_short_side: int = 320, test_evs: Sequence[float] = (2.5, 3.5, 4.5),
                     params: DegradationParams | None = None, augment: bool = True,
                     degradation: str | Degradation | None = None, holdout: Sequence[str] = (),
                     more: Sequence[str] = (), scene_exposure: bool = False) -> Dataset:
    """The embedded data set. ``split="train"``: a :class:`SyntheticPairs` of ``samples_per_epoch`` random
    crops (``crop`` LR pixels). ``split="test"``: :class:`FixedPairs` of full ``hr_size`` images.
    ``degradation``: a registered name (``"seen"``, ``"unseen"``), a degradation object, or ``None`` (first-wave
    model). Training refuses ``"unseen"``: it exists to measure generalisation.

    ``holdout``: training photos kept out of ``"train"``; ``split="val"`` is made of them (full images at the
    test exposures, with seeds of their own), so that checkpoints can be chosen without touching the test split.
    ``scene_exposure``: see :class:`SyntheticPairs` (training only).
    ``more``: photos of ``MORE_TRAIN_IMAGES`` added to the training photos (and available to ``holdout``).
    """
    split = split.lower()
    if isinstance(degradation, str):
        if split == "train" and degradation == "unseen":
            raise ValueError("the 'unseen' degradation is for evaluation only; train with 'seen'")
        degradation = build_degradation(degradation)
    names = list(embedded_photo_names(split, holdout, more))  # checks holdout and split
    if split == "train":
        images = [load_skimage_photo(n, train_short_side) for n in names]
        return SyntheticPairs(images, scale=scale, ev_range=ev_range, crop=crop, seed=seed, augment=augment,
                              samples_per_epoch=samples_per_epoch, params=params, names=names,
                              degradation=degradation, scene_exposure=scene_exposure)
    if split in ("test", "val", "extra"):
        if hr_size % scale:
            raise ValueError(f"hr_size {hr_size} must be divisible by the scale {scale}")
        salt = {"test": 0x7E57, "val": 0x7A1, "extra": 0xE7A}[split]
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
    raise ValueError(f"split must be 'train', 'val', 'test' or 'extra', got {split!r}")
