"""Measuring many images: stream prediction/target pairs through the selected registered metrics.

Metrics that cannot run are resolved once, at construction, into ``skipped`` with the reason (their
``setup`` raised :class:`~.registry.MetricUnavailable`); a report never shows a skipped metric as 0. The report
is a plain dict (``conventions``, ``conventions_text``, ``num_images``, ``metrics``: per metric ``mean``,
``count``, ``lower_is_better``, ``non_finite`` when some values were not finite, ``skipped``: reasons).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import torch

from . import standard as _standard  # noqa: F401  (registers the standard metrics)
from .fullref import MetricConventions
from .registry import METRICS, MetricBatch, MetricContext, MetricUnavailable

__all__ = ["MetricAccumulator", "evaluate_pairs", "format_report"]


class MetricAccumulator:
    """Streams image pairs through the selected metrics and builds the report.

    Metrics that cannot run are resolved once, at construction, into ``skipped`` with the reason.
    """

    def __init__(self, conventions: MetricConventions | None = None, metric_names: Sequence[str] | None = None,
                 weight_paths: Mapping[str, str | os.PathLike | None] | None = None,
                 device: str | torch.device = "cpu"):
        self.conv = conventions or MetricConventions()
        names = list(metric_names) if metric_names is not None else METRICS.names()
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {tuple(METRICS.names())}")
        self.names = names
        self.device = torch.device(device)
        self.weight_paths = {k: v for k, v in (weight_paths or {}).items() if v}
        self.values: dict[str, list[float]] = {n: [] for n in names}
        self.skipped: dict[str, str] = {}
        self.per_image: list[dict] = []
        self._fns: dict[str, object] = {}
        ctx = MetricContext(self.conv, self.weight_paths, self.device)
        for n in names:  # each metric loads its parameters once, here, or says why it cannot run
            try:
                self._fns[n] = METRICS.get(n).setup(ctx)
            except MetricUnavailable as exc:
                self.skipped[n] = str(exc)
                self.values.pop(n, None)

    @property
    def active(self) -> list[str]:
        return [n for n in self.names if n not in self.skipped]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor | None, names: Sequence[str] | None = None) -> None:
        """Add a batch (``(N, 3, H, W)`` or ``(3, H, W)``) of predictions and their targets in [0, 1]."""
        batch = MetricBatch(pred, target, self.conv)
        x, y = batch.x, batch.y
        if y is not None and x.shape != y.shape:
            raise ValueError(f"prediction {tuple(x.shape)} and target {tuple(y.shape)} differ in shape")
        per: dict[str, torch.Tensor] = {}
        for n in self.active:
            if y is None and METRICS.get(n).needs_target:
                raise ValueError(f"metric {n} needs a target")
            per[n] = self._fns[n](batch)
        count = x.shape[0]
        for i in range(count):
            row = {"name": names[i] if names is not None else f"image{len(self.per_image):05d}"}
            for n, v in per.items():
                val = float(v[i])
                self.values[n].append(val)
                row[n] = val
            self.per_image.append(row)

    def report(self, include_per_image: bool = False) -> dict:
        metrics = {}
        for n in self.active:
            vals = self.values[n]
            finite = [v for v in vals if math.isfinite(v)]
            metrics[n] = {"mean": (sum(finite) / len(finite)) if finite else None, "count": len(finite),
                          "lower_is_better": METRICS.get(n).lower_is_better}
            if len(finite) != len(vals):
                metrics[n]["non_finite"] = len(vals) - len(finite)
        out = {"conventions": self.conv.to_dict(), "conventions_text": self.conv.describe(),
               "num_images": len(self.per_image), "metrics": metrics, "skipped": dict(self.skipped)}
        if include_per_image:
            out["per_image"] = list(self.per_image)
        return out


def evaluate_pairs(preds: Iterable[torch.Tensor], targets: Iterable[torch.Tensor | None],
                   conventions: MetricConventions | None = None, metric_names: Sequence[str] | None = None,
                   weight_paths: Mapping[str, str | os.PathLike | None] | None = None,
                   names: Sequence[str] | None = None, include_per_image: bool = False,
                   device: str | torch.device = "cpu") -> dict:
    """Measure prediction/target pairs (tensors ``(3, H, W)`` or batches) and return the report dict:
    ``{"conventions", "conventions_text", "num_images", "metrics": {m: {"mean", "count", ...}},
    "skipped": {m: reason}}``.
    """
    acc = MetricAccumulator(conventions, metric_names, weight_paths, device)
    k = 0
    for p, t in zip(preds, targets, strict=True):
        n = 1 if p.dim() == 3 else p.shape[0]
        acc.update(p, t, None if names is None else list(names[k : k + n]))
        k += n
    return acc.report(include_per_image)


def format_report(report: dict) -> str:
    """Human-readable report text; always starts with the conventions."""
    lines = [report["conventions_text"], f"images: {report['num_images']}"]
    for n, m in report["metrics"].items():
        arrow = "lower is better" if m.get("lower_is_better") else "higher is better"
        mean = "n/a" if m["mean"] is None else f"{m['mean']:.4f}"
        lines.append(f"  {n:8s} {mean:>10s}  ({arrow}, n={m['count']})")
    for n, reason in report["skipped"].items():
        lines.append(f"  {n:8s}    SKIPPED: {reason}")
    return "\n".join(lines)


