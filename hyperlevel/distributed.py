"""Data parallelism on PyTorch's own engine (``torch.distributed``, launched with ``torchrun``).

Every process (rank) holds a full replica of every level and draws its slice of each global batch
(:class:`~hyperlevel.ResumableLoader` with ``rank``/``world_size``). The engine hands the solvers a ``reduce``
that averages a tensor over the ranks, and the solvers apply it to every data-dependent quantity *before* any
non-linear use, so all ranks run the identical computation and the result equals one process on the union of
the data (docs/distributed.md)::

    ctx = init_from_env()                          # torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
    loader = ResumableLoader(data, batch_size, seed=0, rank=ctx.rank, world_size=ctx.world_size)
    ...build the levels and the problem on ctx.device...
    ctx.broadcast_parameters(problem)              # replicas start identical
    engine = Engine(problem, phases, reduce=ctx.reduce, is_main_process=ctx.is_main, ...)
    engine.run(resume)
    ctx.cleanup()

A single process started without torchrun's variables is a plain run: ``world_size`` 1, no process group,
``ctx.reduce`` is ``None`` and the engine runs exactly its single-process code.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import InvalidProblemError

__all__ = ["DistributedContext", "MeanReduce", "broadcast_parameters", "distributed", "init_from_env", "shard_loader"]

_ENV = ("RANK", "WORLD_SIZE")


class MeanReduce:
    """The engine's ``reduce`` hook for a process group: averages a tensor over its ranks.

    Calling it is the plain (non-differentiable) all-reduce the solvers apply to gradients, right-hand sides and
    Hessian-vector products. :attr:`differentiable` is the autograd-aware variant
    (``torch.distributed.nn.functional.all_reduce``), which :class:`~hyperlevel.solvers.Unrolled` uses for the
    steps it differentiates through: their averaged gradient is itself differentiated, and the backward of a
    sum over ranks is again a sum over ranks.
    """

    def __init__(self, world_size: int, device: torch.device, backend: str, group: Any = None):
        self.world_size = int(world_size)
        self.device = device
        self.backend = backend
        self.group = group

    def _to_comm(self, tensor: Tensor) -> Tensor:
        # NCCL only moves CUDA tensors; gloo handles CPU ones (and is what CPU runs use).
        if self.backend == "nccl" and tensor.device.type != "cuda":
            return tensor.to(self.device)
        return tensor

    def __call__(self, tensor: Tensor) -> Tensor:
        if self.world_size == 1:
            return tensor
        with torch.no_grad():
            t = self._to_comm(tensor.detach()).clone(memory_format=torch.contiguous_format)
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
            t.div_(self.world_size)
        return t.to(tensor.device)

    def differentiable(self, tensor: Tensor) -> Tensor:
        if self.world_size == 1:
            return tensor
        from torch.distributed.nn.functional import all_reduce

        t = self._to_comm(tensor)
        out = all_reduce(t, op=dist.ReduceOp.SUM, group=self.group) / self.world_size
        return out.to(tensor.device)

    def __repr__(self) -> str:
        return f"MeanReduce(world_size={self.world_size}, backend={self.backend!r})"


@dataclass
class DistributedContext:
    """Where this process stands in a data-parallel run; see :func:`init_from_env`.

    Attributes:
        rank: global rank (0 .. world_size - 1).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: ``cuda:local_rank`` when CUDA is available, else the CPU.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` for a plain single-process run.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes logs, reports and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def reduce(self) -> MeanReduce | None:
        """The engine's ``reduce=`` argument: a :class:`MeanReduce`, or ``None`` in a single process."""
        if not self.distributed:
            return None
        return MeanReduce(self.world_size, self.device, self.backend or "gloo")

    def reduce_mean(self, tensor: Tensor) -> Tensor:
        """Average ``tensor`` over the ranks (all-reduce SUM / world_size); not differentiable."""
        reduce = self.reduce
        return tensor if reduce is None else reduce(tensor)

    def reduce_mean_differentiable(self, tensor: Tensor) -> Tensor:
        """Average ``tensor`` over the ranks through ``torch.distributed.nn.functional.all_reduce`` (autograd
        flows back through it: the gradient of a sum over ranks is the sum of the ranks' gradients)."""
        reduce = self.reduce
        return tensor if reduce is None else reduce.differentiable(tensor)

    def broadcast_parameters(self, problem: Any) -> None:
        """Copy rank 0's parameters (and module buffers) into every rank; see :func:`broadcast_parameters`."""
        if self.distributed:
            broadcast_parameters(problem, device=self.device)

    def engine_kwargs(self) -> dict[str, Any]:
        """``reduce`` and ``is_main_process`` for :class:`~hyperlevel.Engine` (or a ``train`` function)."""
        return {"reduce": self.reduce, "is_main_process": self.is_main}

    def shard(self, loader: Any) -> Any:
        """``loader.shard(rank, world_size)`` (a :class:`~hyperlevel.ResumableLoader`, position kept)."""
        return shard_loader(loader, self.rank, self.world_size)

    def barrier(self) -> None:
        if self.distributed and dist.is_initialized():
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()

    def cleanup(self) -> None:
        """Destroy the process group if :func:`init_from_env` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def broadcast_parameters(problem: Any, src: int = 0, device: str | torch.device | None = None) -> None:
    """Copy rank ``src``'s parameters (and module buffers) into every rank, in place, so replicas start
    identical; a no-op without a process group.

    ``problem`` is a :class:`~hyperlevel.Problem`, an ``nn.Module``, a dict or an iterable of tensors. With NCCL,
    CPU tensors travel through ``device`` (default: the current CUDA device).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    nccl = dist.get_backend() == "nccl"
    with torch.no_grad():
        for t in _tensors_of(problem):
            comm = t.detach()
            if nccl and comm.device.type != "cuda":
                target = torch.device(device) if device is not None else torch.device("cuda")
                if target.type != "cuda":
                    target = torch.device("cuda", torch.cuda.current_device())
                moved = comm.to(target)
                dist.broadcast(moved, src=src)
                comm.copy_(moved)
            else:
                dist.broadcast(comm, src=src)


@contextmanager
def distributed(backend: str | None = None, *, device: str | torch.device | None = None,
                timeout: float | None = None) -> Iterator[DistributedContext]:
    """``with distributed(device=args.device) as ctx:`` :func:`init_from_env`, then on exit wait for every rank
    (rank 0 may still be writing its last checkpoint) and destroy the process group this created."""
    ctx = init_from_env(backend, device=device, timeout=timeout)
    try:
        yield ctx
        ctx.barrier()
    finally:
        ctx.cleanup()


def _tensors_of(obj: Any) -> list[Tensor]:
    from .problem import Problem

    if isinstance(obj, Problem):
        out: list[Tensor] = []
        for lv in obj.levels:
            out.extend(_tensors_of(lv.params))
        return out
    if isinstance(obj, nn.Module):
        return [*obj.parameters(), *obj.buffers()]
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, Iterable):
        return list(obj)
    raise InvalidProblemError(f"cannot broadcast the parameters of a {type(obj).__name__}")


def shard_loader(loader: Any, rank: int, world_size: int) -> Any:
    """The process ``rank`` shard of a loader with a ``shard(rank, world_size)`` method (returned as is when
    ``world_size`` is 1 and it is already unsharded)."""
    if world_size == 1 and getattr(loader, "world_size", 1) == 1:
        return loader
    shard = getattr(loader, "shard", None)
    if not callable(shard):
        raise InvalidProblemError(
            f"a {type(loader).__name__} cannot be sharded across processes; use hyperlevel.ResumableLoader"
        )
    return shard(rank, world_size)


def init_from_env(backend: str | None = None, *, device: str | torch.device | None = None,
                  timeout: float | None = None) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them (a plain
    ``python`` run), or with ``WORLD_SIZE=1``, it returns a single-process context and creates no process group.
    When a process group already exists it is reused (and not destroyed by :meth:`DistributedContext.cleanup`).

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available (or ``device`` is CUDA), else
            gloo (and gloo whenever ``device`` is the CPU).
        device: the device the caller asked for (``"cpu"``, ``"cuda"``). A CUDA device becomes this process's
            GPU, ``cuda:LOCAL_RANK``; default ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
        timeout: seconds a collective may wait before failing (default: PyTorch's, 10 minutes for gloo).
    """
    cuda = torch.cuda.is_available()
    if device is not None:
        cuda = cuda and torch.device(device).type == "cuda"
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        return DistributedContext(rank, world_size, local_rank, device, str(dist.get_backend()), owns_group=False)
    if not all(k in os.environ for k in _ENV):
        single = torch.device(device) if device is not None else torch.device("cuda" if cuda else "cpu")
        return DistributedContext(device=single)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not 0 <= rank < world_size:
        raise InvalidProblemError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    backend = backend or ("nccl" if cuda else "gloo")
    if backend == "nccl":
        if not cuda:
            raise InvalidProblemError("backend 'nccl' needs CUDA; use 'gloo' on CPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if world_size == 1:
        return DistributedContext(rank, 1, local_rank, device, None)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise InvalidProblemError(
            f"RANK/WORLD_SIZE are set but {missing} are not; launch with torchrun, or set them yourself"
        )
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=timeout)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistributedContext(rank, world_size, local_rank, device, backend, owns_group=True)
