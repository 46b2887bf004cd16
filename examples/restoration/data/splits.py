"""Upper/lower data split of a bilevel restoration task (D_ul : D_ll = 1 : 5 by default).

``split_upper_lower`` partitions the indices of a data set into two disjoint subsets with a seeded
permutation; the subsets forward ``(index, epoch)`` keys. Batches come from the core's seeded, resumable,
shardable :class:`hyperlevel.ResumableLoader` with ``pass_epoch=True`` (every sample is fetched as
``dataset[(index, epoch)]``, so random crops and flips are a function of ``(seed, epoch, index)`` only) and
``collate_fn=collate_samples``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, default_collate

from .common import SampleKey, derive_seed, split_key

__all__ = ["IndexedSubset", "split_upper_lower", "collate_samples"]


class IndexedSubset(Dataset):
    """Subset of a data set that forwards ``(index, epoch)`` keys (torch's ``Subset`` would drop the epoch).

    The global index is passed on, so a sample's randomness is the same whichever subset it belongs to.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: SampleKey):
        index, epoch = split_key(key)
        return self.dataset[(self.indices[index], epoch)]


def split_upper_lower(dataset: Dataset, ratio: tuple[float, float] = (1.0, 5.0), seed: int = 0
                      ) -> tuple[IndexedSubset, IndexedSubset]:
    """Split ``dataset`` into ``(D_ul, D_ll)`` with sizes in the proportion ``ratio`` (upper : lower).

    ``n_ul = round(n * r_ul / (r_ul + r_ll))``, clipped so that both parts hold at least one sample.
    The assignment is a seeded random permutation (deterministic given ``seed``); the parts are disjoint and
    cover the data set. Indices inside each part are sorted.
    """
    r_ul, r_ll = (float(r) for r in ratio)
    if r_ul <= 0 or r_ll <= 0:
        raise ValueError(f"ratio parts must be positive, got {ratio}")
    n = len(dataset)
    if n < 2:
        raise ValueError(f"cannot split a data set of {n} sample(s) into upper and lower parts")
    n_ul = min(max(1, round(n * r_ul / (r_ul + r_ll))), n - 1)
    gen = torch.Generator().manual_seed(derive_seed(seed, 0x5EED))
    perm = torch.randperm(n, generator=gen).tolist()
    return IndexedSubset(dataset, sorted(perm[:n_ul])), IndexedSubset(dataset, sorted(perm[n_ul:]))


def collate_samples(samples: list[dict]) -> dict:
    """Stack ``input``/``target`` tensors; keep ``name`` as a list and ``ev`` as a float tensor."""
    return default_collate(samples)
