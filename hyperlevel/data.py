"""A resumable, shardable batch iterator: the data side of exact resumption and data parallelism."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from .errors import InvalidProblemError


class ResumableLoader:
    """Endless seeded batches over a map-style dataset, whose position can be saved and restored.

    Each epoch draws a permutation from ``seed + epoch``; a *global* batch is ``batch_size * world_size``
    consecutive indices of it, and process ``rank`` takes its ``batch_size`` slice. So two processes with batch
    ``B`` see exactly the samples one process with batch ``2B`` sees, and the position (samples consumed in the
    epoch) stays meaningful when a run resumes with another number of processes. Incomplete global batches at
    the end of an epoch are dropped. Batches are produced in the calling process (no worker processes), so the
    order never depends on timing. With ``pass_epoch=True`` the dataset is indexed by ``(index, epoch)``, so it
    can derive per-sample augmentation from them and a resumed run sees identical crops.
    """

    def __init__(
        self,
        dataset: Dataset | Sequence[Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
        pass_epoch: bool = False,
    ):
        n = len(dataset)  # type: ignore[arg-type]
        if batch_size < 1:
            raise InvalidProblemError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise InvalidProblemError(f"rank {rank} is outside world_size {world_size}")
        if n < batch_size * world_size:
            raise InvalidProblemError(
                f"the dataset has {n} samples, fewer than one global batch ({batch_size} x {world_size} processes)"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.collate_fn = collate_fn or default_collate
        self.rank = rank
        self.world_size = world_size
        self.pass_epoch = pass_epoch
        self.epoch = 0
        self.consumed = 0  # samples of the current epoch consumed by all processes together
        self._order: torch.Tensor | None = None

    def __len__(self) -> int:
        """Global batches per epoch."""
        return len(self.dataset) // (self.batch_size * self.world_size)  # type: ignore[arg-type]

    def _epoch_order(self) -> torch.Tensor:
        if self._order is None:
            n = len(self.dataset)  # type: ignore[arg-type]
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed + self.epoch)
                self._order = torch.randperm(n, generator=g)
            else:
                self._order = torch.arange(n)
        return self._order

    def __iter__(self) -> ResumableLoader:
        return self

    def __next__(self) -> Any:
        global_batch = self.batch_size * self.world_size
        if self.consumed + global_batch > len(self.dataset):  # type: ignore[arg-type]
            self.epoch += 1
            self.consumed = 0
            self._order = None
        order = self._epoch_order()
        start = self.consumed + self.rank * self.batch_size
        indices = order[start : start + self.batch_size].tolist()
        self.consumed += global_batch
        if self.pass_epoch:
            return self.collate_fn([self.dataset[(i, self.epoch)] for i in indices])  # type: ignore[index]
        return self.collate_fn([self.dataset[i] for i in indices])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise InvalidProblemError(
                f"the checkpoint's data seed {state['seed']} differs from this loader's seed {self.seed}: "
                "resuming would draw a different data order"
            )
        self.epoch = int(state["epoch"])
        self.consumed = int(state["consumed"])
        self._order = None

    def shard(self, rank: int, world_size: int) -> ResumableLoader:
        """The same loader, position included, for process ``rank`` of ``world_size``."""
        other = ResumableLoader(
            self.dataset, self.batch_size, shuffle=self.shuffle, seed=self.seed, collate_fn=self.collate_fn,
            rank=rank, world_size=world_size, pass_epoch=self.pass_epoch,
        )
        other.load_state_dict(self.state_dict())
        return other
