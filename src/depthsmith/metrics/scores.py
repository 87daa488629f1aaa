"""The standard depth metrics of one image, R^2, SSIM, and the accumulator over a dataset."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from depthsmith.ssim import ssim as _ssim

from ..errors import InputError
from .align import PRED_FLOOR, align_prediction
from .masks import as_map, crop_mask, valid_mask
from .table import METRIC_KEYS, METRICS, sum_terms

__all__ = ["METRIC_KEYS", "compute_metrics", "r2_score", "ssim_score", "MetricAccumulator", "Prepared", "prepare",
           "NoValidPixelError"]


class NoValidPixelError(InputError):
    """An image without any valid ground-truth pixel under the evaluation's range, crop and mask."""


def _sums(pred: np.ndarray, gt: np.ndarray, holes: bool = False) -> dict[str, float]:
    """Sums of the metric table's per-pixel terms over 1-D arrays of pixels (pred already > 0), and
    their count ``n``. ``holes``: pixels without ground truth (gt = 0), summed for the metrics that
    count them (``Metric.holes``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sums = {name: float(np.sum(term(pred, gt))) for name, term in sum_terms(holes).items()}
    return {"n": float(gt.size), **sums}


def _metrics_from_sums(s: Mapping[str, float], h: Mapping[str, float] | None = None) -> dict[str, float]:
    """Every summed metric from the valid pixels' sums ``s``; a ``holes`` metric adds the holes' ``h``."""
    out = {}
    for metric in METRICS.values():
        if metric.from_sums is not None:
            both = s if h is None or not metric.holes else {k: s[k] + h.get(k, 0.0) for k in s}
            out[metric.key] = metric.from_sums(both)
    return out


@dataclass
class Prepared:
    """One image as the metrics see it: ``pred`` (H x W) sanitised, aligned on the valid pixels and
    clamped; ``valid`` the evaluated pixels; ``holes`` the crop's pixels without valid ground truth
    (counted by ``Metric.holes`` metrics under an unmasked protocol), or None."""

    pred: np.ndarray
    gt: np.ndarray
    valid: np.ndarray
    holes: np.ndarray | None = None


def prepare(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    min_depth: float,
    max_depth: float,
    crop: str | tuple[int, int, int, int] | None,
    mask: np.ndarray | torch.Tensor | None,
    align: str,
    crop_mode: str = "exact",
    clamp: bool = True,
    holes: bool = False,
) -> Prepared:
    """The valid pixels and the prediction as evaluated: sanitised (NaN, -inf -> min_depth, +inf ->
    max_depth), aligned (``align``) on the valid pixels, and clamped (``clamp``) to [min_depth,
    max_depth]. Without the clamp the prediction is only floored at 1e-12, so that its logarithm stays
    finite. ``holes``: also mark the crop's pixels that are not valid (an unmasked protocol's)."""
    pred, gt = as_map(pred, "pred"), as_map(gt, "gt")
    if pred.shape != gt.shape:
        raise InputError(f"pred {pred.shape} and gt {gt.shape} differ: resize the prediction to the ground truth first")
    valid = valid_mask(gt, min_depth, max_depth, crop, mask, crop_mode)
    if not valid.any():
        raise NoValidPixelError("no valid ground-truth pixel (check min/max depth, crop and mask)")
    hi = max_depth if math.isfinite(max_depth) else np.finfo(np.float64).max
    pred = np.nan_to_num(pred, nan=min_depth, posinf=hi, neginf=min_depth)
    pred = align_prediction(pred, gt, valid, align, max_depth)
    pred = np.clip(pred, max(min_depth, PRED_FLOOR), max_depth) if clamp else np.maximum(pred, PRED_FLOOR)
    hole_mask = crop_mask(gt.shape, crop, crop_mode) & ~valid if holes else None
    return Prepared(pred, gt, valid, hole_mask)


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
    prep = prepare(pred, gt, min_depth, max_depth, crop, mask, align, crop_mode, clamp)
    g = prep.gt[prep.valid]
    result: dict[str, float] = _metrics_from_sums(_sums(prep.pred[prep.valid], g))
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
    pred, gt = as_map(pred, "pred"), as_map(gt, "gt")
    valid = np.isfinite(gt) & np.isfinite(pred)
    if mask is not None:
        valid &= as_map(mask, "mask").astype(bool)
    if not valid.any():
        raise InputError("r2_score: no valid pixel")
    p, g = pred[valid], gt[valid]
    ss_tot = float(np.sum((g - g.mean()) ** 2))
    if ss_tot == 0.0:
        raise InputError("r2_score: ground truth is constant on the valid pixels (SS_tot = 0)")
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
    pred, gt = as_map(pred, "pred"), as_map(gt, "gt")
    pred = np.clip(np.nan_to_num(pred, nan=0.0, posinf=max_depth, neginf=0.0), 0.0, max_depth)
    valid = np.isfinite(gt)
    if mask is not None:
        valid &= as_map(mask, "mask").astype(bool)
    mask_t = None if valid.all() else _image_tensor(valid)
    gt = np.where(valid, gt, 0.0)
    value = float(_ssim(_image_tensor(pred / max_depth), _image_tensor(gt / max_depth), mask_t))
    if math.isnan(value):
        raise InputError("ssim_score: no 11x11 window lies entirely on valid pixels")
    return value


# Options of `compute_metrics` that MetricAccumulator accepts as defaults or per update.
_EVAL_DEFAULTS: dict[str, Any] = {"min_depth": 1e-3, "max_depth": 10.0, "crop": None, "mask": None, "align": "none",
                                  "crop_mode": "exact", "clamp": True, "holes": False}


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
        self._sums: dict[str, float] = {"n": 0.0}
        self._hole_sums: dict[str, float] = {}

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
        return self.add(self.prepare(pred, gt, **kw), name)

    def prepare(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, **kw: Any) -> Prepared:
        """``prepare`` with this accumulator's options (kw override them)."""
        _check_options(kw)
        return prepare(pred, gt, **{**_EVAL_DEFAULTS, **self.defaults, **kw})

    def add(self, prep: Prepared, name: str | None = None) -> dict[str, Any]:
        """Add one prepared image; returns its metrics row."""
        sums = _sums(prep.pred[prep.valid], prep.gt[prep.valid])
        hole_sums = None if prep.holes is None else _sums(prep.pred[prep.holes], prep.gt[prep.holes], holes=True)
        for key, value in sums.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        for key, value in (hole_sums or {}).items():
            self._hole_sums[key] = self._hole_sums.get(key, 0.0) + value
        row: dict[str, Any] = {} if name is None else {"name": name}
        row.update(_metrics_from_sums(sums, hole_sums))
        row["n_valid"] = int(sums["n"] + (hole_sums["n"] if hole_sums else 0))
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
            raise InputError("MetricAccumulator.compute: no image was added")
        pooled = self.pooled if pooled is None else pooled
        if pooled:
            result = _metrics_from_sums(self._sums, self._hole_sums or None)
        else:
            result = {key: float(np.mean([row[key] for row in self.rows])) for key in METRIC_KEYS}
        result["n_images"] = len(self.rows)
        result["n_valid"] = int(sum(row["n_valid"] for row in self.rows))
        return result
