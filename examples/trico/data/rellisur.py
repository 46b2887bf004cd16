"""RELLISUR data set loader (Aakerberg et al., NeurIPS 2021 Datasets; CC BY 4.0).

Layout (under ``root``)::

    {Train,Val,Test}/LLLR/<scene>-<EV>.png                 low-light low-resolution inputs
    {split}/NLHR/X1|X2|X4/<scene>.png                       normal-light high-resolution targets
    {split}/NLHR-Duplicates/X1|X2|X4/<scene>-<EV>.png       the same targets, named like the LLLR file

Pairing: ``NLHR-Duplicates/X<s>/<name>`` when that folder exists, else the ``-<EV>`` suffix is stripped
and ``NLHR/X<s>/<scene>.<ext>`` is used. ``<EV>`` is the darkening in stops, stored here as a positive
magnitude (``00736-5.0.png`` has ``ev == 5.0``; a negative number in a file name is read as its
magnitude). The EV values are read from the names, never from a fixed list.

The folder is scanned and validated at construction, before any training step: every pair must be complete,
every file is opened once (:func:`~examples.trico.imageio.probe_image`: header, size, completeness), targets must
be ``scale`` times their input and inputs at least as large as the crop. The first problem raises
:class:`RellisurError` (a :class:`~examples.trico.data.common.DataError`) naming the file and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from examples.restoration.data.common import (
    DataError,
    SampleKey,
    augment_pair,
    centre_crop_box,
    progress,
    random_augment_code,
    random_crop_box,
    sample_generator,
    split_key,
)
from examples.restoration.imageio import IMAGE_EXTENSIONS, ImageReadError, probe_image, read_image

__all__ = ["RellisurError", "RellisurPair", "Rellisur", "parse_lllr_name", "SPLITS"]

SPLITS = ("Train", "Val", "Test")
_NAME_RE = re.compile(r"^(?P<scene>.+)-(?P<ev>[+-]?\d+(?:\.\d+)?)$")


class RellisurError(DataError):
    """A problem with the RELLISUR tree; the message names the offending file."""


@dataclass(frozen=True)
class RellisurPair:
    input_path: Path
    target_path: Path
    scene: str
    ev: float

    @property
    def name(self) -> str:
        return self.input_path.stem


def parse_lllr_name(stem: str) -> tuple[str, float]:
    """``"00736-5.0"`` -> ``("00736", 5.0)``; raises ``ValueError`` if there is no ``-<EV>`` suffix."""
    m = _NAME_RE.match(stem)
    if m is None:
        raise ValueError(f"file name {stem!r} does not end in -<EV> (e.g. 00736-5.0)")
    return m.group("scene"), abs(float(m.group("ev")))


def _normalise_split(split: str) -> str:
    for s in SPLITS:
        if split.lower() == s.lower():
            return s
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _ev_filter(exposures) -> Callable[[float], bool]:
    """Build a predicate from None, a (lo, hi) range (inclusive), a set/list of values, or a callable."""
    if exposures is None:
        return lambda ev: True
    if callable(exposures):
        return exposures
    if isinstance(exposures, int | float):
        exposures = {exposures}
    if isinstance(exposures, tuple) and len(exposures) == 2 and not isinstance(exposures, set):
        lo, hi = sorted(abs(float(v)) for v in exposures)
        return lambda ev: lo - 1e-6 <= ev <= hi + 1e-6
    values = [abs(float(v)) for v in exposures]
    return lambda ev: any(abs(ev - v) < 1e-6 for v in values)


def _find_with_stem(folder: Path, stem: str) -> Path | None:
    for ext in (".png", *[e for e in IMAGE_EXTENSIONS if e != ".png"]):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def _image_size(path: Path, cache: dict[Path, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(height, width) of a complete image (:func:`probe_image`), each file probed once per scan."""
    if cache is not None and path in cache:
        return cache[path]
    try:
        size = probe_image(path)
    except ImageReadError as exc:
        raise RellisurError(f"unreadable image {str(path)!r}: {exc.reason}; replace or remove it") from exc
    if cache is not None:
        cache[path] = size
    return size


class Rellisur(Dataset):
    """RELLISUR pairs as ``{"input": (3,h,w), "target": (3,s*h,s*w), "name": str, "ev": float}``.

    Args:
        root: folder holding ``Train``, ``Val`` and ``Test``.
        split: ``"Train"``, ``"Val"`` or ``"Test"`` (case-insensitive).
        scale: 1, 2 or 4 (selects ``X1``, ``X2`` or ``X4`` targets).
        exposures: ``None`` (all), a ``(lo, hi)`` inclusive range of EV magnitudes, a set/list of EV
            values, or a predicate ``ev -> bool``.
        crop: random aligned crop size in LR pixels (``int`` or ``(h, w)``); the HR crop is ``scale`` times.
        augment: random flips / rot90 of the aligned crop (training).
        centre_crop: deterministic centre crop in LR pixels (test), used when ``crop`` is None.
        seed: sample ``i`` of epoch ``e`` draws its crop/flip from a generator seeded with ``(seed, e, i)``.
        verify: ``"header"`` (default) opens every file once at construction, checks that it is complete
            (no decoding, :func:`probe_image`), that the target is exactly ``scale`` times the input and that
            the input is at least ``crop``; ``"full"`` decodes every image; ``"none"`` only checks that the
            pairs exist.
    """

    def __init__(self, root: str | os.PathLike, split: str = "Train", scale: int = 2,
                 exposures: Iterable[float] | tuple[float, float] | float | None = None,
                 crop: int | tuple[int, int] | None = None, augment: bool = False,
                 centre_crop: int | tuple[int, int] | None = None, seed: int = 0, verify: str = "header"):
        if scale not in (1, 2, 4):
            raise ValueError(f"RELLISUR scale must be 1, 2 or 4, got {scale}")
        if verify not in ("none", "header", "full"):
            raise ValueError(f"verify must be 'none', 'header' or 'full', got {verify!r}")
        self.root = Path(root)
        self.split = _normalise_split(split)
        self.scale = int(scale)
        self.crop = (crop, crop) if isinstance(crop, int) else (tuple(crop) if crop is not None else None)
        self.centre_crop = (centre_crop, centre_crop) if isinstance(centre_crop, int) else (
            tuple(centre_crop) if centre_crop is not None else None)
        self.augment = bool(augment)
        self.seed = int(seed)
        keep = _ev_filter(exposures)

        split_dir = self.root / self.split
        lllr = split_dir / "LLLR"
        if not self.root.is_dir():
            raise RellisurError(f"RELLISUR folder {str(self.root)!r} does not exist; check data.root "
                                "(or --data rellisur:PATH)")
        if not lllr.is_dir():
            raise RellisurError(f"missing input folder {str(lllr)!r} (expected {{Train,Val,Test}}/LLLR under the "
                                "RELLISUR root); check data.root")
        dup_dir = split_dir / "NLHR-Duplicates" / f"X{self.scale}"
        nlhr_dir = split_dir / "NLHR" / f"X{self.scale}"
        if not dup_dir.is_dir() and not nlhr_dir.is_dir():
            raise RellisurError(f"missing target folder: neither {str(dup_dir)!r} nor {str(nlhr_dir)!r} exists (this scale's targets); check data.root and model.scale")

        pairs: list[RellisurPair] = []
        for path in sorted(lllr.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                scene, ev = parse_lllr_name(path.stem)
            except ValueError as exc:
                raise RellisurError(f"cannot parse input file {str(path)!r}: {exc}; rename or remove it") from exc
            if not keep(ev):
                continue
            target = _find_with_stem(dup_dir, path.stem) if dup_dir.is_dir() else None
            if target is None and nlhr_dir.is_dir():
                target = _find_with_stem(nlhr_dir, scene)
            if target is None:
                raise RellisurError(
                    f"unpaired input {str(path)!r}: no target {path.stem}.* in {str(dup_dir)!r} "
                    f"and no {scene}.* in {str(nlhr_dir)!r}; add its target or remove it")
            pairs.append(RellisurPair(path, target, scene, ev))
        if not pairs:
            raise RellisurError(f"no input images in {str(lllr)!r} match the exposure filter {exposures!r}; check the folder and "
                                "data.exposures / --exposures")

        if verify != "none":
            sizes: dict[Path, tuple[int, int]] = {}
            for pair in progress(pairs, f"checking RELLISUR {self.split} (x{self.scale})"):
                if verify == "full":
                    try:
                        lr = read_image(pair.input_path)
                        hr = read_image(pair.target_path)
                    except ImageReadError as exc:
                        raise RellisurError(str(exc)) from exc
                    (lh, lw), (hh, hw) = lr.shape[-2:], hr.shape[-2:]
                else:
                    lh, lw = _image_size(pair.input_path, sizes)
                    hh, hw = _image_size(pair.target_path, sizes)
                if (hh, hw) != (lh * self.scale, lw * self.scale):
                    raise RellisurError(
                        f"size mismatch: target {str(pair.target_path)!r} is {hh}x{hw}, expected "
                        f"{self.scale} x {lh}x{lw} of input {str(pair.input_path)!r}; replace or remove the pair")
                small = self.crop or self.centre_crop
                if small is not None and (lh < small[0] or lw < small[1]):
                    raise RellisurError(
                        f"input {str(pair.input_path)!r} is {lh}x{lw}, smaller than the crop {small[0]}x{small[1]}"
                        f" (LR pixels); lower the crop (data.crop / --centre-crop) or remove the pair")
        self.pairs = pairs

    @property
    def exposures(self) -> list[float]:
        """Sorted EV magnitudes present after filtering."""
        return sorted({p.ev for p in self.pairs})

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: SampleKey) -> dict:
        index, epoch = split_key(key)
        pair = self.pairs[index]
        lr = read_image(pair.input_path)
        hr = read_image(pair.target_path)
        s = self.scale
        h, w = lr.shape[-2:]
        if hr.shape[-2:] != (h * s, w * s):
            raise RellisurError(f"size mismatch: target {str(pair.target_path)!r} is {tuple(hr.shape[-2:])}, "
                                f"expected {(h * s, w * s)} for input {str(pair.input_path)!r}")
        gen = sample_generator(self.seed, epoch, index)
        box = None
        if self.crop is not None:
            top, left = random_crop_box(h, w, self.crop[0], self.crop[1], gen)
            box = (top, left, *self.crop)
        elif self.centre_crop is not None:
            top, left = centre_crop_box(h, w, *self.centre_crop)
            box = (top, left, *self.centre_crop)
        if box is not None:
            top, left, ch, cw = box
            lr = lr[:, top : top + ch, left : left + cw]
            hr = hr[:, s * top : s * (top + ch), s * left : s * (left + cw)]
        if self.augment:
            lr, hr = augment_pair(random_augment_code(gen), lr, hr)
        return {"input": lr.contiguous(), "target": hr.contiguous(), "name": pair.name, "ev": float(pair.ev)}
