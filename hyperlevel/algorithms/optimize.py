"""``hyperlevel.optimize``: run a bilevel algorithm end to end and record its convergence."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidProblemError, NonFiniteError
from ..typing import PairLoss, Params
from ..validation import check_params, check_same_dtype
from .base import Algorithm, Oracle
from .registry import get

Monitor = Callable[[Params, Params], Mapping[str, float]]


@dataclass
class HistoryEntry:
    """The state of a run after ``step`` steps.

    ``seconds`` is the wall time spent in the algorithm's steps only (recording, including ``outer_loss`` and
    the monitor, is not counted); ``oracle_calls = gradient_calls + hvp_calls`` (see
    :class:`~hyperlevel.algorithms.Oracle`).
    """

    step: int
    seconds: float
    oracle_calls: int
    gradient_calls: int
    hvp_calls: int
    outer_loss: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns: the final parameters (detached copies) and the recorded history."""

    outer: dict[str, Tensor]
    inner: dict[str, Tensor]
    history: list[HistoryEntry]
    method: str
    algorithm: Algorithm

    @property
    def outer_loss(self) -> float:
        return self.history[-1].outer_loss


def optimize(
    outer_loss: Callable[..., Tensor],
    inner_loss: Callable[..., Tensor],
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    method: str | Algorithm = "implicit",
    steps: int = 1000,
    outer_lr: float = 0.05,
    inner_lr: float = 0.1,
    *,
    record_every: int | None = None,
    monitor: Monitor | None = None,
    until: Callable[[Params, Params], bool] | None = None,
    outer_data: Iterable[Any] | None = None,
    inner_data: Iterable[Any] | None = None,
    **options: Any,
) -> OptimizeResult:
    """Solve ``min_x F(x, y*(x))``, ``y*(x) = argmin_y G(x, y)``, with the bilevel algorithm ``method``.

    Args:
        outer_loss: ``F(outer_params, inner_params) -> scalar`` (``F(outer, inner, batch)`` with ``outer_data``).
        inner_loss: ``G(outer_params, inner_params) -> scalar`` (``G(outer, inner, batch)`` with ``inner_data``).
        outer_params: dict of name -> tensor, the outer starting point (never modified).
        inner_params: dict of name -> tensor, the inner starting point (never modified).
        method: a registered name (``hyperlevel.algorithms.available()``: ``implicit``, ``bome``, ``f2sa``,
            ``pgdo``, ``meso``, ``vfo``, ``soba``) or an :class:`~hyperlevel.algorithms.Algorithm` object.
        steps: iterations of the method.
        outer_lr: step size of the outer variables (every method takes both step sizes).
        inner_lr: step size of the inner variables.
        record_every: record the history every that many steps (default: about 200 records per run); the
            first and last step are always recorded.
        monitor: ``monitor(outer, inner) -> {name: value}``, evaluated at each record outside the timed region
            (e.g. a test accuracy or the exact hypergradient norm), stored in ``HistoryEntry.extra``.
        until: ``until(outer, inner) -> bool``, checked at each record: stop early once it holds.
        outer_data: iterable of minibatches for ``outer_loss``; each step draws the next batch (restarting an
            exhausted iterable) and the loss gets it as third argument: stochastic versions of the methods.
        inner_data: the same for ``inner_loss``.
        **options: the method's own options (docs/algorithms.md); an unknown one is an error listing them.

    Returns:
        :class:`OptimizeResult` with the final ``outer`` and ``inner`` dicts and the ``history``.

    Example:
        >>> import torch, hyperlevel
        >>> F = lambda x, y: 0.5 * (y["y"] - 1.0) ** 2 + 0.05 * x["x"] ** 2   # y*(x) = x
        >>> G = lambda x, y: 0.5 * (y["y"] - x["x"]) ** 2
        >>> x0, y0 = {"x": torch.tensor(0.0, dtype=torch.float64)}, {"y": torch.tensor(0.0, dtype=torch.float64)}
        >>> r = hyperlevel.optimize(F, G, x0, y0, method="soba", steps=2000, outer_lr=0.1, inner_lr=0.5)
        >>> round(r.outer["x"].item(), 4)  # x* = 1 / 1.1
        0.9091
    """
    if isinstance(method, Algorithm):
        if options:
            raise InvalidProblemError("pass options to the Algorithm's constructor, not with an Algorithm object")
        algorithm = method
    else:
        algorithm = get(method, outer_lr=outer_lr, inner_lr=inner_lr, **options)
    for fn, what in ((outer_loss, "outer_loss"), (inner_loss, "inner_loss")):
        if not callable(fn):
            raise InvalidProblemError(f"{what} must be callable(outer_params, inner_params) -> scalar tensor")
    check_params(outer_params, "outer_params")
    check_params(inner_params, "inner_params")
    check_same_dtype([("outer_params", outer_params), ("inner_params", inner_params)])
    if not isinstance(steps, int) or steps < 0:
        raise InvalidProblemError(f"steps must be an integer >= 0, got {steps!r}")
    every = record_every or max(1, steps // 200)
    if every < 1:
        raise InvalidProblemError(f"record_every must be >= 1, got {record_every!r}")

    outer_batches, inner_batches = _Cycle(outer_data), _Cycle(inner_data)
    oracle = Oracle(outer_loss, inner_loss)
    x = {k: v.detach().clone() for k, v in outer_params.items()}
    y = {k: v.detach().clone() for k, v in inner_params.items()}
    algorithm.reset(x, y)
    history: list[HistoryEntry] = []
    seconds = 0.0

    def record(step: int) -> None:
        value = oracle.value("outer", x, y) if outer_data is None else math.nan
        extra = {k: float(v) for k, v in monitor(x, y).items()} if monitor is not None else {}
        history.append(HistoryEntry(step, seconds, oracle.calls, oracle.gradient_calls, oracle.hvp_calls, value,
                                    extra))

    record(0)
    for k in range(1, steps + 1):
        start = time.perf_counter()
        oracle.outer_loss = outer_batches.bind(outer_loss)
        oracle.inner_loss = inner_batches.bind(inner_loss)
        x, y = algorithm.step(oracle, x, y)
        seconds += time.perf_counter() - start
        oracle.outer_loss, oracle.inner_loss = outer_loss, inner_loss
        if k % every == 0 or k == steps:
            _check_finite(x, y, algorithm, k)
            record(k)
            if until is not None and until(x, y):
                break
    return OptimizeResult(outer=x, inner=y, history=history, method=algorithm.name, algorithm=algorithm)


class _Cycle:
    """Next batch of an optional iterable, restarting it when exhausted; binds it to a loss."""

    def __init__(self, data: Iterable[Any] | None):
        self.data = data
        self.iterator = None

    def bind(self, loss: Callable[..., Tensor]) -> PairLoss:
        if self.data is None:
            return loss
        if self.iterator is None:
            self.iterator = iter(self.data)
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.data)
            batch = next(self.iterator)
        return lambda outer, inner: loss(outer, inner, batch)


def _check_finite(x: Params, y: Params, algorithm: Algorithm, step: int) -> None:
    for what, params in (("outer", x), ("inner", y)):
        bad = [k for k, t in params.items() if not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteError(
                f"method {algorithm.name!r}: {what} parameters {bad} became NaN/Inf by step {step}; lower "
                f"outer_lr ({algorithm.outer_lr}) or inner_lr ({algorithm.inner_lr})"
            )
