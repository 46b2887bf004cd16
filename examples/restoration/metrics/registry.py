"""The metric registry: every image metric declares what it needs before anything is measured.

An entry (:class:`Metric`) says whether the metric needs a target (full-reference) or not (no-reference),
whether lower is better, and how it gets its parameters: ``setup(context)`` returns the per-batch function, or
raises :class:`MetricUnavailable` with the reason (weights absent, library missing) so that a report lists the
metric under ``skipped`` with that reason instead of a made-up 0. ``parameters`` is the one-line answer to
"where do its numbers come from" that the docs table shows.

A task adds a metric with one registration (:func:`register_metric`); the accumulator, the reports and every
``--metrics`` option take it from there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..registry import Registry
from .fullref import MetricConventions, prepare

__all__ = ["Metric", "MetricBatch", "MetricContext", "MetricUnavailable", "METRICS", "register_metric",
           "full_reference", "no_reference", "lower_is_better"]


class MetricUnavailable(RuntimeError):
    """A metric cannot run here (parameters or library absent); the message says why and what to provide."""


@dataclass(frozen=True)
class MetricContext:
    """What ``setup`` may use: the conventions, user-given parameter files (``weight_paths``, keys such as
    ``"lpips"``; absent keys mean "the default location") and the device."""

    conventions: MetricConventions = field(default_factory=MetricConventions)
    weight_paths: Mapping[str, str | os.PathLike] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")


class MetricBatch:
    """One batch to measure: raw ``pred`` / ``target`` ``(N, C, H, W)`` in [0, 1] (``target`` may be ``None``)
    and, prepared once per batch under the conventions (quantised, cropped, colour-converted), ``x`` / ``y``."""

    def __init__(self, pred: torch.Tensor, target: torch.Tensor | None, conventions: MetricConventions):
        self.pred = pred if pred.dim() == 4 else pred.unsqueeze(0)
        self.target = None if target is None else (target if target.dim() == 4 else target.unsqueeze(0))
        self.conv = conventions
        self.x = prepare(self.pred, conventions)
        self.y = prepare(self.target, conventions) if self.target is not None else None


MetricFn = Callable[[MetricBatch], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``setup(context) -> fn`` with ``fn(batch) -> (N,)`` per-image values."""

    name: str
    needs_target: bool
    lower_is_better: bool
    setup: Callable[[MetricContext], MetricFn]
    parameters: str = "none (a closed formula)"
    description: str = ""


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric, replace: bool = False) -> Metric:
    """Register ``metric`` under its name."""
    return METRICS.register(metric.name, metric, replace=replace)


def full_reference() -> tuple[str, ...]:
    """Names of the registered metrics that need a target."""
    return tuple(n for n, m in METRICS.items() if m.needs_target)


def no_reference() -> tuple[str, ...]:
    """Names of the registered metrics that judge an image alone."""
    return tuple(n for n, m in METRICS.items() if not m.needs_target)


def lower_is_better(name: str) -> bool:
    return METRICS.get(name).lower_is_better
