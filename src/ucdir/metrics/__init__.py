"""Image-restoration metrics and the paper's evaluation protocol (§4.2).

`Metrics` scores restored images against ground truth (PSNR, SSIM, 3-D SSIM, LPIPS, NIQE, FID,
KID, ...: the table `METRICS`); `write_results` and `log_results_table` turn its results into the
paper's tables.
"""

from ucdir.metrics.collection import METRIC_NAMES, Metrics, MetricsResult
from ucdir.metrics.fid import PatchDistances, extract_patches
from ucdir.metrics.niqe import niqe
from ucdir.metrics.results import (
    log_results_table,
    markdown_table,
    results_markdown,
    results_row,
    write_results,
)
from ucdir.metrics.specs import (
    METRICS,
    PAPER_METRICS,
    VALIDATION_METRICS,
    MetricSpec,
    per_image,
)
from ucdir.metrics.weights import CorruptWeightsError, MetricUnavailableError, MissingWeightsError

__all__ = [
    "METRICS",
    "METRIC_NAMES",
    "PAPER_METRICS",
    "VALIDATION_METRICS",
    "CorruptWeightsError",
    "MetricSpec",
    "MetricUnavailableError",
    "Metrics",
    "MetricsResult",
    "MissingWeightsError",
    "PatchDistances",
    "extract_patches",
    "log_results_table",
    "markdown_table",
    "niqe",
    "per_image",
    "results_markdown",
    "results_row",
    "write_results",
]
