"""Upper/lower data split (D_ul : D_ll = 1 : 5 by default) and seeded, resumable, shardable batch iterators.

``split_upper_lower`` partitions the indices of a data set into two disjoint subsets with a seeded
permutation. ``BatchIterator`` draws an infinite stream of batches: every epoch is a permutation of the
data set drawn from a generator seeded with ``(seed, epoch)``; with ``world_size > 1`` each rank takes the
interleaved slice ``perm[rank::world_size]`` of the permutation (truncated to a multiple of
``world_size``), so shards are disjoint and of equal length. Every sample is fetched as
``dataset[(index, epoch)]`` so random crops and flips are a function of ``(seed, epoch, index)`` only.
``state_dict()`` records ``(seed, epoch, position)``; ``load_state_dict`` restores it, and the resumed
iterator yields exactly the batches the original would have yielded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from .common import SampleKey, derive_seed, split_key

__all__ = ["IndexedSubset", "split_upper_lower", "BatchIterator", "collate_samples"]


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


class BatchIterator:
    """Infinite, seeded, resumable iterator of batches over a map-style data set.

    Args:
        dataset: items are fetched as ``dataset[(index, epoch)]``.
        batch_size: samples per batch (per rank).
        seed: permutation seed; epoch ``e`` uses ``randperm`` seeded with ``(seed, e)``.
        shuffle: ``False`` walks the indices in order each epoch.
        drop_last: drop the last incomplete batch of an epoch (default ``True``, so all batches are full).
        rank, world_size: take the disjoint shard ``perm[rank::world_size]`` of each epoch.
        collate_fn: batch builder (default :func:`collate_samples`).

    ``state_dict()`` -> ``{"seed", "epoch", "position", "batch_size", "rank", "world_size", ...}``, where
    ``position`` counts the batches already drawn in ``epoch``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1,
                 collate_fn: Callable[[list], Any] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.collate_fn = collate_fn or collate_samples
        self.epoch = 0
        self.position = 0
        self._order: list[int] | None = None
        if self.batches_per_epoch() == 0:
            raise ValueError(f"data set of {len(dataset)} samples gives no batch of {batch_size} per rank "
                             f"(world_size={world_size}, drop_last={drop_last})")

    def shard(self, rank: int, world_size: int) -> BatchIterator:
        """A copy of this iterator (same seed and state) that draws shard ``rank`` of ``world_size``."""
        it = BatchIterator(self.dataset, self.batch_size, self.seed, self.shuffle, self.drop_last, rank,
                           world_size, self.collate_fn)
        it.epoch, it.position = self.epoch, self.position
        return it

    def _shard_size(self) -> int:
        return len(self.dataset) // self.world_size

    def batches_per_epoch(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_indices(self, epoch: int) -> list[int]:
        """Indices this rank visits in ``epoch``, in order."""
        n = len(self.dataset)
        if self.shuffle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            perm = torch.randperm(n, generator=gen).tolist()
        else:
            perm = list(range(n))
        usable = (n // self.world_size) * self.world_size
        return perm[:usable][self.rank :: self.world_size]

    def __iter__(self) -> BatchIterator:
        return self

    def next_indices(self) -> tuple[int, list[int]]:
        """Advance the state and return ``(epoch, indices)`` of the next batch without loading it."""
        if self.position >= self.batches_per_epoch():
            self.epoch += 1
            self.position = 0
            self._order = None
        if self._order is None:
            self._order = self.epoch_indices(self.epoch)
        start = self.position * self.batch_size
        indices = self._order[start : start + self.batch_size]
        epoch = self.epoch
        self.position += 1
        return epoch, indices

    def __next__(self):
        epoch, indices = self.next_indices()
        return self.collate_fn([self.dataset[(i, epoch)] for i in indices])

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "batch_size": self.batch_size, "rank": self.rank, "world_size": self.world_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last, "dataset_len": len(self.dataset)}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``seed``, ``epoch`` and ``position``; batch size, sharding and data length must match."""
        for key in ("batch_size", "world_size", "rank", "dataset_len"):
            mine = len(self.dataset) if key == "dataset_len" else getattr(self, key)
            if key in state and int(state[key]) != mine:
                raise ValueError(f"cannot resume: saved {key}={state[key]} but this iterator has {mine}")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.shuffle = bool(state.get("shuffle", self.shuffle))
        self.drop_last = bool(state.get("drop_last", self.drop_last))
        self._order = None
