"""Image quality metrics for TriCo evaluation: the restoration toolkit's metric registry
(:mod:`examples.restoration.metrics`; every metric, its conventions and its skip reasons are documented there and
in ``docs/restoration_toolkit.md``). This module keeps TriCo's old import path and names: ``niqe`` and
``brisque`` (:mod:`examples.trico.noref`), ``evaluate_pairs``, ``MetricAccumulator``, the name tuples.

Conventions (:class:`MetricConventions`) default to those of the published RELLISUR numbers: RGB (not Y), images
quantised to uint8 before measuring, no border crop, LPIPS with the AlexNet backbone.
"""

from __future__ import annotations

from examples.restoration.metrics import (
    ALEXNET_FILENAME,
    BRISQUE_FILENAME,
    STANDARD_METRICS,
    LPIPSAlex,
    MetricAccumulator,
    MetricConventions,
    evaluate_pairs,
    format_report,
    fsim,
    prepare,
    psnr,
    rmse,
    ssim,
)
from examples.restoration.metrics.noref import brisque, niqe

__all__ = ["FULL_REFERENCE", "NO_REFERENCE", "ALL_METRICS", "DEFAULT_METRICS", "MetricConventions",
           "MetricAccumulator", "evaluate_pairs", "psnr", "rmse", "ssim", "fsim", "LPIPSAlex",
           "prepare", "format_report", "niqe", "brisque", "LOWER_IS_BETTER", "ALEXNET_FILENAME", "BRISQUE_FILENAME"]

#: the metrics TriCo reports (the toolkit's standard ones, in their registration order)
FULL_REFERENCE = tuple(m.name for m in STANDARD_METRICS if m.needs_target)
NO_REFERENCE = tuple(m.name for m in STANDARD_METRICS if not m.needs_target)
ALL_METRICS = FULL_REFERENCE + NO_REFERENCE
DEFAULT_METRICS = ALL_METRICS
LOWER_IS_BETTER = {m.name for m in STANDARD_METRICS if m.lower_is_better}
