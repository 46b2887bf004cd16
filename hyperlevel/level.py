"""A level of a nested problem: its parameters, its objective, its optimizer and its data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InvalidProblemError
from .precision import Precision, as_precision, check_float32
from .typing import Objective

OptimizerFactory = Callable[[list[Tensor]], torch.optim.Optimizer]


def adam(lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), **kwargs: Any) -> OptimizerFactory:
    """An optimizer factory for :class:`Level` and :class:`~hyperlevel.Phase`: Adam with these settings."""
    return lambda params: torch.optim.Adam(params, lr=lr, betas=betas, **kwargs)


def sgd(lr: float = 1e-2, **kwargs: Any) -> OptimizerFactory:
    """Plain (or momentum) SGD factory."""
    return lambda params: torch.optim.SGD(params, lr=lr, **kwargs)


@dataclass(eq=False)
class Level:
    """One level of a nested problem.

    Args:
        name: unique name; objectives see every level's parameters under this key.
        params: an ``nn.Module`` (its parameters that require grad) or a dict of tensors. The module stays an
            ordinary module: solvers evaluate objectives at hypothetical parameters through the pure
            ``objective`` rather than by mutating it.
        objective: ``objective(params, batch) -> scalar`` where ``params[level][name]`` is a tensor; a pure
            function (use :func:`torch.func.functional_call` with :func:`hyperlevel.prefixed` for modules).
        optimizer: factory ``params -> torch.optim.Optimizer`` used when a phase gives none (default Adam 1e-3).
        data: an iterator (or iterable) of batches for this level's objective; ``None`` when the objective
            needs no data. Use :class:`hyperlevel.data.ResumableLoader` for exact resumption.
        precision: run this level's objective under autocast (``"bfloat16"``, ``"float16"`` or a
            :class:`hyperlevel.precision.Precision`); parameters, solver vectors and optimizer state stay float32.
    """

    name: str
    params: nn.Module | dict[str, Tensor]
    objective: Objective
    optimizer: OptimizerFactory | None = None
    data: Iterable[Any] | Iterator[Any] | None = None
    precision: Precision | str | None = None
    _iterator: Iterator[Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidProblemError(f"a level needs a non-empty string name, got {self.name!r}")
        if not callable(self.objective):
            raise InvalidProblemError(f"level {self.name!r}: objective must be callable(params, batch)")
        if not isinstance(self.params, (nn.Module, dict)):
            raise InvalidProblemError(
                f"level {self.name!r}: params must be an nn.Module or a dict of tensors, got "
                f"{type(self.params).__name__}"
            )
        self.precision = as_precision(self.precision)
        named = self.named_parameters()
        if not named:
            raise InvalidProblemError(f"level {self.name!r} has no trainable parameters")
        check_float32(self.precision, named, f"level {self.name!r}")
        for n, t in named.items():
            if not t.is_floating_point():
                raise InvalidProblemError(f"level {self.name!r}: parameter {n!r} is not floating point")
            if isinstance(self.params, dict) and not t.requires_grad:
                if not t.is_leaf:
                    raise InvalidProblemError(
                        f"level {self.name!r}: parameter {n!r} is computed from other tensors; pass a leaf "
                        "tensor (e.g. t.detach().clone()) so the level can own and update it"
                    )
                t.requires_grad_(True)  # a level's dict tensors are its trainable leaves

    def named_parameters(self) -> dict[str, Tensor]:
        """The level's trainable tensors by name (the live tensors, not copies)."""
        if isinstance(self.params, nn.Module):
            return {n: p for n, p in self.params.named_parameters() if p.requires_grad}
        return dict(self.params)

    def next_batch(self) -> Any:
        """The next batch of this level's data (``None`` when the level has no data)."""
        if self.data is None:
            return None
        if self._iterator is None:
            self._iterator = self.data if isinstance(self.data, Iterator) else iter(self.data)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self.data)  # a finite iterable restarts (an epoch ends)
            return next(self._iterator)

    def data_state(self) -> dict[str, Any] | None:
        state_dict = getattr(self.data, "state_dict", None)
        return state_dict() if callable(state_dict) else None

    def load_data_state(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        load = getattr(self.data, "load_state_dict", None)
        if not callable(load):
            raise InvalidProblemError(
                f"level {self.name!r}: the checkpoint holds a data position but this level's data has no "
                "load_state_dict(); use hyperlevel.data.ResumableLoader for exact resumption"
            )
        load(state)
        self._iterator = None


def prefixed(params: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Prefix parameter names, to address a level that is a sub-module (``"illumination."``) of a larger model
    in :func:`torch.func.functional_call`."""
    return {prefix + k: v for k, v in params.items()}
