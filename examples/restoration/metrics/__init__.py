"""Image metrics for restoration tasks: a registry (each metric declares needs-target / lower-is-better / where
its parameters come from or why it is skipped), the standard full- and no-reference metrics, and the
accumulator that measures a data set. See ``docs/restoration_toolkit.md``."""

from .accumulator import MetricAccumulator, evaluate_pairs, format_report
from .fullref import LPIPSAlex, MetricConventions, fsim, prepare, psnr, rmse, ssim, ssim_value
from .noref import brisque, niqe
from .registry import (
    METRICS,
    Metric,
    MetricBatch,
    MetricContext,
    MetricUnavailable,
    full_reference,
    lower_is_better,
    no_reference,
    register_metric,
)
from .standard import ALEXNET_FILENAME, BRISQUE_FILENAME, STANDARD_METRICS

__all__ = ["METRICS", "Metric", "MetricBatch", "MetricContext", "MetricUnavailable", "register_metric",
           "full_reference", "no_reference", "lower_is_better", "MetricAccumulator", "evaluate_pairs",
           "format_report", "MetricConventions", "prepare", "psnr", "rmse", "ssim", "ssim_value", "fsim",
           "LPIPSAlex", "niqe", "brisque", "ALEXNET_FILENAME", "BRISQUE_FILENAME", "STANDARD_METRICS"]
