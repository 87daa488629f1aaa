"""Which pixels count: input maps, the named evaluation crops and the valid-pixel mask."""

from __future__ import annotations

import math

import numpy as np
import torch
from ..errors import InputError

__all__ = ["as_map", "CROP_REFERENCE_SIZE", "CROPS", "FRACTION_CROPS", "CROP_MODES", "crop_box", "crop_mask", "valid_mask"]

# Named evaluation crops, (top, bottom, left, right), 0-based, end-exclusive, defined on
# 480 x 640 (height x width) NYU Depth V2 ground truth.
CROP_REFERENCE_SIZE = (480, 640)
CROPS: dict[str, tuple[int, int, int, int]] = {
    # Eigen et al. 2014 crop, as used by BTS / AdaBins / ZoeDepth / NeWCRFs `eval` code
    # (`eval_mask[45:471, 41:601] = 1`).
    "eigen": (45, 471, 41, 601),
    # DenseDepth's crop, stored as `crop` with its NYU test zip (`[20:460, 24:616]`).
    "densedepth": (20, 460, 24, 616),
    # The seed notebook's: it writes `crop = [20, 460, 24, 616]` itself and then slices
    # `crop[0]:crop[1]+1, crop[2]:crop[3]+1` as DenseDepth's code does with DenseDepth's
    # end-inclusive crop file, so it keeps one row and one column more than DenseDepth.
    "seed": (20, 461, 24, 617),
}
# Crops as fractions (top, bottom, left, right) of the ground truth's height and width, applied as
# BTS's eval code does: rows int(top * H):int(bottom * H), cols int(left * W):int(right * W).
FRACTION_CROPS: dict[str, tuple[float, float, float, float]] = {
    # Garg et al. 2016, the crop of the 652-image KITTI Eigen test set with ground truth.
    "kitti-garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    # Eigen et al. 2014's own KITTI crop.
    "kitti-eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """float64 NumPy copy of an array or tensor (any device, any float dtype)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def as_map(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """H x W float64 map; leading singleton dims (1 x H x W, 1 x 1 x H x W) are dropped."""
    arr = _to_numpy(x)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"{name} must be an H x W map, got shape {arr.shape}")
    return arr


CROP_MODES = ("exact", "scaled", "literal")


def crop_box(shape: tuple[int, int], crop: str | tuple[int, int, int, int], crop_mode: str = "exact") -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a crop on an H x W ground truth (see :func:`crop_mask`)."""
    height, width = shape
    if not isinstance(crop, str):
        return tuple(int(v) for v in crop)  # type: ignore[return-value]
    if crop in FRACTION_CROPS:  # BTS / ZoeDepth: int(fraction * size), truncated
        ft, fb, fl, fr = FRACTION_CROPS[crop]
        return int(ft * height), int(fb * height), int(fl * width), int(fr * width)
    if crop not in CROPS:
        raise InputError(f"unknown crop {crop!r}; valid crops: {sorted([*CROPS, *FRACTION_CROPS])} "
                         "or a (top, bottom, left, right) tuple")
    if crop_mode not in CROP_MODES:
        raise InputError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
    top, bottom, left, right = CROPS[crop]
    if (height, width) == CROP_REFERENCE_SIZE:
        return top, bottom, left, right
    ref = "x".join(map(str, CROP_REFERENCE_SIZE))
    if crop_mode == "exact":
        raise InputError(
            f"crop {crop!r} is defined on {ref} ground truth, got {height}x{width}. Choose how to apply it: "
            f"crop_mode='scaled' (bounds scaled per axis, the same fraction of the border removed) or "
            f"'literal' (rows {top}:{bottom}, cols {left}:{right} sliced as is, as BTS, ZoeDepth and MMSeg do)"
        )
    if crop_mode == "literal":  # Python slicing: bounds past the edge stop at the edge
        return min(top, height), min(bottom, height), min(left, width), min(right, width)
    sy, sx = height / CROP_REFERENCE_SIZE[0], width / CROP_REFERENCE_SIZE[1]
    return (math.floor(top * sy + 0.5), math.floor(bottom * sy + 0.5),
            math.floor(left * sx + 0.5), math.floor(right * sx + 0.5))


def crop_mask(shape: tuple[int, int], crop: str | tuple[int, int, int, int] | None,
              crop_mode: str = "exact") -> np.ndarray:
    """Bool H x W mask, True inside the crop.

    crop: None (everything), a name in CROPS (pixel bounds on 480 x 640) or FRACTION_CROPS
    (fractions of the height and width, as BTS computes KITTI's), or an explicit
    (top, bottom, left, right) pixel tuple used as is. A pixel crop on ground truth of another
    size needs ``crop_mode``: 'scaled' scales the bounds per axis, rounded half up (eigen on
    240 x 320 -> (23, 236, 21, 301)); 'literal' slices the same indices as BTS / ZoeDepth / MMSeg
    do; the default 'exact' refuses, because the two differ (RMSE 6% apart on 224 x 224).
    """
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    if crop is None:
        mask[:] = True
        return mask
    top, bottom, left, right = crop_box(shape, crop, crop_mode)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise InputError(f"crop (top, bottom, left, right)={(top, bottom, left, right)} does not fit {shape}")
    mask[top:bottom, left:right] = True
    return mask


def valid_mask(
    gt: np.ndarray | torch.Tensor,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    crop: str | tuple[int, int, int, int] | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    crop_mode: str = "exact",
) -> np.ndarray:
    """Evaluation mask: finite, min_depth < gt < max_depth, inside the crop and the mask."""
    gt = as_map(gt, "gt")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    valid &= crop_mask(gt.shape, crop, crop_mode)
    if mask is not None:
        valid &= as_map(mask, "mask").astype(bool)
    return valid
