"""The standard depth metrics of one image, R^2, SSIM, and the accumulator over a dataset."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from depthsmith.ssim import ssim as _ssim

from .align import PRED_FLOOR, align_prediction
from .masks import _as_map, valid_mask

__all__ = ["METRIC_KEYS", "compute_metrics", "r2_score", "ssim_score", "MetricAccumulator"]

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3", "silog_da")

# Sufficient statistics of the metrics: sums over valid pixels (plus the count `n`).
_SUM_KEYS = ("n", "abs_rel", "sq_rel", "sq_err", "log_sq", "log", "log10", "d1", "d2", "d3")


def _sums(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Sufficient statistics over 1-D arrays of valid pixels (pred already clamped > 0)."""
    diff = pred - gt
    log_diff = np.log(pred) - np.log(gt)
    ratio = np.maximum(pred / gt, gt / pred)
    return {
        "n": float(gt.size),
        "abs_rel": float(np.sum(np.abs(diff) / gt)),
        "sq_rel": float(np.sum(diff**2 / gt)),
        "sq_err": float(np.sum(diff**2)),
        "log_sq": float(np.sum(log_diff**2)),
        "log": float(np.sum(log_diff)),
        "log10": float(np.sum(np.abs(np.log10(pred) - np.log10(gt)))),
        "d1": float(np.sum(ratio < 1.25)),
        "d2": float(np.sum(ratio < 1.25**2)),
        "d3": float(np.sum(ratio < 1.25**3)),
    }


def _metrics_from_sums(s: Mapping[str, float]) -> dict[str, float]:
    n = s["n"]
    mean_log, mean_log_sq = s["log"] / n, s["log_sq"] / n
    return {
        "abs_rel": s["abs_rel"] / n,
        "sq_rel": s["sq_rel"] / n,
        "rmse": math.sqrt(s["sq_err"] / n),
        "rmse_log": math.sqrt(mean_log_sq),
        "log10": s["log10"] / n,
        # max(., 0): rounding can make the variance a hair negative when all e are equal.
        "silog": 100.0 * math.sqrt(max(mean_log_sq - mean_log**2, 0.0)),
        # Depth-Anything-V2 / MMSeg's SILog, named apart: lambda = 0.5 and no x100.
        "silog_da": math.sqrt(max(mean_log_sq - 0.5 * mean_log**2, 0.0)),
        "d1": s["d1"] / n,
        "d2": s["d2"] / n,
        "d3": s["d3"] / n,
    }


def _prepare(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    min_depth: float,
    max_depth: float,
    crop: str | tuple[int, int, int, int] | None,
    mask: np.ndarray | torch.Tensor | None,
    align: str,
    crop_mode: str = "exact",
    clamp: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """1-D arrays (pred, gt) of the valid pixels, pred sanitised, aligned and clamped (``clamp``)
    to [min_depth, max_depth]. Without the clamp the prediction is only floored at 1e-12, so that
    its logarithm stays finite."""
    pred, gt = _as_map(pred, "pred"), _as_map(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ: resize the prediction to the ground truth first")
    valid = valid_mask(gt, min_depth, max_depth, crop, mask, crop_mode)
    if not valid.any():
        raise ValueError("no valid ground-truth pixel (check min/max depth, crop and mask)")
    hi = max_depth if math.isfinite(max_depth) else np.finfo(np.float64).max
    pred = np.nan_to_num(pred, nan=min_depth, posinf=hi, neginf=min_depth)
    pred = align_prediction(pred, gt, valid, align, max_depth)
    pred = np.clip(pred, max(min_depth, PRED_FLOOR), max_depth) if clamp else np.maximum(pred, PRED_FLOOR)
    return pred[valid], gt[valid]


def compute_metrics(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    crop: str | tuple[int, int, int, int] | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    *,
    align: str = "none",
    crop_mode: str = "exact",
    clamp: bool = True,
) -> dict[str, float]:
    """Standard depth metrics of one H x W prediction against its ground truth (metres).

    Returns METRIC_KEYS (abs_rel, sq_rel, rmse, rmse_log, log10, silog (x100), d1, d2, d3)
    and n_valid. `align` ('none' | 'median' | 'lstsq') is applied on the valid pixels
    before clamping, for relative-depth models. Raises ValueError if no pixel is valid.
    """
    p, g = _prepare(pred, gt, min_depth, max_depth, crop, mask, align, crop_mode, clamp)
    result: dict[str, float] = _metrics_from_sums(_sums(p, g))
    result["n_valid"] = int(g.size)
    return result


def r2_score(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot of one image over the masked pixels.

    Pixels with non-finite gt or pred are excluded. Raises ValueError with no valid pixel
    or a constant ground truth (SS_tot = 0, R^2 undefined).
    """
    pred, gt = _as_map(pred, "pred"), _as_map(gt, "gt")
    valid = np.isfinite(gt) & np.isfinite(pred)
    if mask is not None:
        valid &= _as_map(mask, "mask").astype(bool)
    if not valid.any():
        raise ValueError("r2_score: no valid pixel")
    p, g = pred[valid], gt[valid]
    ss_tot = float(np.sum((g - g.mean()) ** 2))
    if ss_tot == 0.0:
        raise ValueError("r2_score: ground truth is constant on the valid pixels (SS_tot = 0)")
    return 1.0 - float(np.sum((g - p) ** 2)) / ss_tot


def _image_tensor(a: np.ndarray) -> torch.Tensor:
    """H x W array -> 1 x 1 x H x W tensor (float64 stays float64, bool stays bool)."""
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def ssim_score(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    max_depth: float = 10.0,
    mask: np.ndarray | torch.Tensor | None = None,
) -> float:
    """SSIM of two H x W depth maps in metres, computed on depth / max_depth (range 1).

    The prediction is sanitised and clamped to [0, max_depth]. Non-finite gt pixels and
    pixels outside `mask` are invalid: only 11x11 windows made of valid pixels count.
    Without a mask and with a finite gt this is plain SSIM (tf.image.ssim / skimage).
    """
    pred, gt = _as_map(pred, "pred"), _as_map(gt, "gt")
    pred = np.clip(np.nan_to_num(pred, nan=0.0, posinf=max_depth, neginf=0.0), 0.0, max_depth)
    valid = np.isfinite(gt)
    if mask is not None:
        valid &= _as_map(mask, "mask").astype(bool)
    mask_t = None if valid.all() else _image_tensor(valid)
    gt = np.where(valid, gt, 0.0)
    value = float(_ssim(_image_tensor(pred / max_depth), _image_tensor(gt / max_depth), mask_t))
    if math.isnan(value):
        raise ValueError("ssim_score: no 11x11 window lies entirely on valid pixels")
    return value


# Options of `compute_metrics` that MetricAccumulator accepts as defaults or per update.
_EVAL_DEFAULTS: dict[str, Any] = {"min_depth": 1e-3, "max_depth": 10.0, "crop": None, "mask": None, "align": "none",
                                  "crop_mode": "exact", "clamp": True}


def _check_options(options: Mapping[str, Any]) -> None:
    unknown = set(options) - set(_EVAL_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown evaluation options {sorted(unknown)}; valid: {sorted(_EVAL_DEFAULTS)}")


class MetricAccumulator:
    """Collects per-image metrics over a dataset.

    update(pred, gt, **kw) evaluates one image with `compute_metrics` (kw override the
    defaults given to the constructor: min_depth, max_depth, crop, align) and appends the
    row (with an optional `name`) to `.rows`, ready for a CSV. compute() gives:
    - pooled=False (standard): the mean over images of each per-image metric;
    - pooled=True (DenseDepth): the metrics of all valid pixels of all images pooled,
      computed from summed statistics, identical to evaluating the concatenated pixels.
    Both also report n_images and n_valid (total valid pixels).
    """

    def __init__(self, pooled: bool = False, **defaults: Any) -> None:
        _check_options(defaults)
        self.pooled = pooled
        self.defaults = defaults
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._sums = dict.fromkeys(_SUM_KEYS, 0.0)

    def __len__(self) -> int:
        return len(self.rows)

    def update(
        self,
        pred: np.ndarray | torch.Tensor,
        gt: np.ndarray | torch.Tensor,
        name: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Evaluate one H x W image; returns its metrics row. Raises if it has no valid pixel."""
        _check_options(kw)
        options = {**_EVAL_DEFAULTS, **self.defaults, **kw}
        p, g = _prepare(pred, gt, **options)
        sums = _sums(p, g)
        for key in _SUM_KEYS:
            self._sums[key] += sums[key]
        row: dict[str, Any] = {} if name is None else {"name": name}
        row.update(_metrics_from_sums(sums))
        row["n_valid"] = int(g.size)
        self.rows.append(row)
        return row

    def update_batch(
        self,
        pred: np.ndarray | torch.Tensor,
        gt: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor | None = None,
        names: list[str] | None = None,
        **kw: Any,
    ) -> None:
        """Loop `update` over a batch (B x H x W or B x 1 x H x W)."""
        for i in range(len(gt)):
            if mask is not None:
                kw["mask"] = mask[i]
            self.update(pred[i], gt[i], name=None if names is None else names[i], **kw)

    def compute(self, pooled: bool | None = None) -> dict[str, float]:
        """Dataset metrics; `pooled` overrides the constructor's choice for this call."""
        if not self.rows:
            raise ValueError("MetricAccumulator.compute: no image was added")
        pooled = self.pooled if pooled is None else pooled
        if pooled:
            result = _metrics_from_sums(self._sums)
        else:
            result = {key: float(np.mean([row[key] for row in self.rows])) for key in METRIC_KEYS}
        result["n_images"] = len(self.rows)
        result["n_valid"] = int(self._sums["n"])
        return result
