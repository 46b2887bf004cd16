"""Helpers shared by restoration data sets: sample keys, per-sample generators, aligned crops and flips.

Every data set built on them accepts as index either an ``int`` or a ``(index, epoch)`` tuple. All the
randomness of a sample (crop position, flips, exposure, noise) is drawn from a generator seeded by
``(seed, epoch, index)`` (see :func:`sample_generator`), never from a global RNG, so a sample can be
reproduced exactly after a resume, in any worker process, in any order.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["DataError", "DataNotFoundError", "progress", "SampleKey", "split_key", "sample_generator", "derive_seed",
           "random_crop_box", "centre_crop_box", "augment_pair", "random_augment_code"]

SampleKey = int | tuple[int, int]


class DataError(ValueError):
    """A data set cannot be used (missing, empty or malformed folder; unpaired, unreadable or too small image);
    the message names the file or folder and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data folder does not exist or holds no images."""


def progress(items, desc: str, threshold: int = 200):
    """Iterate ``items`` with a progress bar on stderr when there are at least ``threshold`` of them (a
    terminal shows a bar; elsewhere one line says what is being checked)."""
    import sys

    items = list(items)
    if len(items) < threshold:
        return items
    if not sys.stderr.isatty():
        print(f"{desc}: {len(items)} files", file=sys.stderr)
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False, unit="file")


def split_key(key: SampleKey) -> tuple[int, int]:
    """Return ``(index, epoch)`` for an ``int`` (epoch 0) or an ``(index, epoch)`` key."""
    if isinstance(key, tuple | list):
        index, epoch = key
        return int(index), int(epoch)
    if isinstance(key, torch.Tensor | np.integer):
        return int(key), 0
    if isinstance(key, int):
        return key, 0
    raise TypeError(f"sample key must be an int or an (index, epoch) tuple, got {key!r}")


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers with numpy's SeedSequence (well mixed, platform independent)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def sample_generator(seed: int, epoch: int, index: int, stream: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, epoch, index, stream)``."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, index, stream))


def _randint(gen: torch.Generator, high: int) -> int:
    """Uniform integer in ``[0, high)``; ``high <= 0`` gives 0."""
    if high <= 1:
        return 0
    return int(torch.randint(0, high, (1,), generator=gen).item())


def random_crop_box(height: int, width: int, crop_h: int, crop_w: int, gen: torch.Generator) -> tuple[int, int]:
    """Top-left corner of a random ``crop_h x crop_w`` window inside ``height x width``."""
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} is larger than the image {height}x{width}")
    return _randint(gen, height - crop_h + 1), _randint(gen, width - crop_w + 1)


def centre_crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    if crop_h > height or crop_w > width:
        raise ValueError(f"centre crop {crop_h}x{crop_w} is larger than the image {height}x{width}")
    return (height - crop_h) // 2, (width - crop_w) // 2


def random_augment_code(gen: torch.Generator) -> int:
    """One of the 8 dihedral transforms (bit 0: horizontal flip, bit 1: vertical flip, bit 2: transpose)."""
    return _randint(gen, 8)


def augment_pair(code: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Apply the same dihedral transform ``code`` (0..7) to each ``(C, H, W)`` tensor.

    The transpose (bit 2) is skipped for non-square tensors so that the shape never changes and batches of
    equal crops stay stackable.
    """
    if any(t.shape[-1] != t.shape[-2] for t in tensors):
        code &= 3
    out = []
    for t in tensors:
        if code & 1:
            t = t.flip(-1)
        if code & 2:
            t = t.flip(-2)
        if code & 4:
            t = t.transpose(-1, -2)
        out.append(t.contiguous())
    return tuple(out)
