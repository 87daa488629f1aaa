"""Aligning a relative-depth prediction to the ground truth (scale, scale and shift, in depth or disparity)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .masks import as_map
from ..errors import InputError

__all__ = ["ALIGN_MODES", "PRED_FLOOR", "align_prediction"]

ALIGN_MODES = ("none", "median", "lstsq", "lstsq_disparity")

# Predictions are floored here so that log(pred) and 1 / pred stay finite.
PRED_FLOOR = 1e-12


def align_prediction(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    mode: str = "none",
    max_depth: float = math.inf,
) -> np.ndarray:
    """Align a relative-depth prediction to the ground truth on the masked pixels.

    mode 'none': unchanged; 'median': pred * median(gt) / median(pred) (scale only);
    'lstsq': s * pred + t with (s, t) the least-squares fit to gt (scale and shift, depth space);
    'lstsq_disparity': the fit in disparity space, as MiDaS and Depth Anything evaluate relative
    models: s / pred + t fitted to 1 / gt, floored at 1 / max_depth (or 1e-12), then inverted back
    to depth. Only for relative-depth models: metric models are evaluated with mode='none'.
    Mask default: finite gt > 0 and finite pred.
    """
    if mode not in ALIGN_MODES:
        raise InputError(f"unknown align mode {mode!r}; valid modes: {list(ALIGN_MODES)}")
    pred, gt = as_map(pred, "pred"), as_map(gt, "gt")
    if mode == "none":
        return pred
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
        if mode == "lstsq_disparity":
            valid &= pred > 0
    if mask is not None:
        valid &= as_map(mask, "mask").astype(bool)
    if not valid.any():
        raise InputError("align_prediction: no valid pixel to align on")
    if mode == "median":
        return pred * (np.median(gt[valid]) / np.median(pred[valid]))
    if mode == "lstsq":
        return _fit_scale_shift(pred, gt, valid)
    with np.errstate(divide="ignore"):
        disparity = _fit_scale_shift(1.0 / np.maximum(pred, PRED_FLOOR), 1.0 / np.where(valid, gt, 1.0), valid)
    floor = 1.0 / max_depth if math.isfinite(max_depth) else PRED_FLOOR
    return 1.0 / np.maximum(disparity, floor)


def _fit_scale_shift(x: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """s * x + t with (s, t) the least-squares fit of x to target on the valid pixels."""
    p, g = x[valid], target[valid]
    design = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, g, rcond=None)
    return scale * x + shift
