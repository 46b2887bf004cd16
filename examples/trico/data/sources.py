"""TriCo's data sources, registered once and used by training (``problem.build_train_data``) and evaluation
(``evaluate.build_eval_dataset``) alike: ``embedded``, ``folder:PATH`` and ``rellisur:PATH``.

Every builder takes ``(split, root, **options)`` (the toolkit's :class:`examples.restoration.data.sources.
DataSource`); options a source has no use for are ignored (``exposures`` means nothing to synthetic data).
``crop`` (random training crops, in LR pixels) asks for training samples; without it a source gives full
evaluation images (``centre_crop`` optional). ``degradation``: a model object, a registered name or ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from examples.restoration.data.sources import DataSource, SourceRegistry

from .degradations import build_degradation

__all__ = ["SOURCES"]

SOURCES = SourceRegistry("data spec")


def _model(degradation: Any):
    return build_degradation(degradation) if isinstance(degradation, str) else degradation


def _embedded(split: str, root: str | None, scale: int = 2, seed: int = 0, degradation: Any = "seen",
              crop: int | None = None, ev_range: Sequence[float] = (2.5, 4.5), samples_per_epoch: int = 240,
              holdout: Sequence[str] = (), more_photos: Sequence[str] = (), scene_exposure: bool = False,
              **_: Any) -> Dataset:
    from .embedded import embedded_dataset

    split = split.lower()
    if split == "train":
        return embedded_dataset("train", scale=scale, crop=crop or 48, seed=seed, ev_range=tuple(ev_range),
                                samples_per_epoch=samples_per_epoch, degradation=degradation, holdout=tuple(holdout),
                                more=tuple(more_photos), scene_exposure=scene_exposure)
    return embedded_dataset(split if split in ("val", "extra") else "test", scale=scale, seed=seed, degradation=degradation,
                            holdout=tuple(holdout), more=tuple(more_photos))


def _folder(split: str, root: str | None, scale: int = 2, seed: int = 0, degradation: Any = "seen",
            crop: int | None = None, ev_range: Sequence[float] = (2.5, 4.5), samples_per_epoch: int | None = None,
            centre_crop: int | None = None, scene_exposure: bool = False, **_: Any) -> Dataset:
    from .synthetic import SyntheticPairs

    if crop is not None:  # training: random crops, a new exposure and noise every epoch
        return SyntheticPairs(root, scale=scale, ev_range=tuple(ev_range), crop=crop, seed=seed,
                              samples_per_epoch=samples_per_epoch, degradation=_model(degradation),
                              scene_exposure=scene_exposure)
    return SyntheticPairs(root, scale=scale, ev_range=tuple(ev_range), crop=None, centre_crop=centre_crop,
                          seed=seed, augment=False, fixed_ev=True, degradation=_model(degradation))


def _rellisur(split: str, root: str | None, scale: int = 2, seed: int = 0, crop: int | None = None,
              centre_crop: int | None = None, exposures: Any = None, **_: Any) -> Dataset:
    from .rellisur import Rellisur

    if crop is not None:
        return Rellisur(root, split=split, scale=scale, exposures=exposures, crop=crop, augment=True, seed=seed)
    return Rellisur(root, split=split, scale=scale, exposures=exposures, centre_crop=centre_crop, seed=seed)


SOURCES.add(DataSource("embedded", _embedded, description="the skimage photos, degraded on the fly"))
SOURCES.add(DataSource("folder", _folder, needs_root=True, description="normal-light photos, degraded on the fly"))
SOURCES.add(DataSource("rellisur", _rellisur, needs_root=True, synthetic=False,
                       description="RELLISUR's real low-light / normal-light pairs"))
