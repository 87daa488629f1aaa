"""Depth metrics: pure functions on one image, and an accumulator over a dataset.

Standard protocol (BTS, AdaBins, ZoeDepth, NeWCRFs: their ``eval`` / ``compute_errors`` code):
- inputs are H x W depth maps in metres (NumPy arrays or torch tensors); the prediction
  must already be resized to the ground-truth resolution (no silent resizing here);
- valid pixels: finite and min_depth < gt < max_depth, AND the optional crop AND mask;
- prediction: NaN -> min_depth, +inf -> max_depth, -inf -> min_depth, then clamped to
  [min_depth, max_depth];
- metrics per image, then averaged over images (`MetricAccumulator(pooled=False)`).
  DenseDepth pools all pixels of the dataset instead (`pooled=True`), kept for comparison.

Each metric is one record of the metric table (``metrics/table.py``).
Everything is computed in float64 from per-image sums, so that pooled metrics are exactly
the metrics of all valid pixels concatenated (up to float64 summation order).
"""

from .align import ALIGN_MODES, PRED_FLOOR, align_prediction
from .masks import CROP_MODES, CROP_REFERENCE_SIZE, CROPS, FRACTION_CROPS, as_map, crop_box, crop_mask, valid_mask
from .scores import MetricAccumulator, NoValidPixelError, Prepared, compute_metrics, prepare, r2_score, ssim_score
from .table import METRIC_KEYS, METRICS, Metric, metrics_in, register_metric

__all__ = [
    "METRIC_KEYS",
    "METRICS",
    "Metric",
    "metrics_in",
    "register_metric",
    "as_map",
    "Prepared",
    "prepare",
    "NoValidPixelError",
    "CROP_REFERENCE_SIZE",
    "CROPS",
    "FRACTION_CROPS",
    "CROP_MODES",
    "crop_box",
    "PRED_FLOOR",
    "crop_mask",
    "valid_mask",
    "ALIGN_MODES",
    "align_prediction",
    "compute_metrics",
    "r2_score",
    "ssim_score",
    "MetricAccumulator",
]
