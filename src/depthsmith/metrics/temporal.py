"""Temporal consistency of depth videos: TAE (camera moving) and flicker (camera still).

TAE, the Temporal Alignment Error of Video Depth Anything (Chen et al. 2025, arXiv:2501.12375;
``benchmark/eval/eval_tae.py`` in github.com/DepthAnything/Video-Depth-Anything, ``tae_torch`` and
``eval_TAE``): for each pair of consecutive frames, back-project frame t's predicted depth with the
intrinsics, move the points with the relative pose ``inv(pose_{t+1}) @ pose_t`` (poses are
world-from-camera), project them into frame t+1 and take AbsRel of the reprojected depth against
frame t+1's *predicted* depth, ``mean(|d_{t+1} - d_proj| / d_{t+1})``; the same from t+1 to t; the
mean over all 2 (N - 1) directed pairs, in percent. Before that the whole clip is aligned to the
ground truth with one scale and shift (``fit_clip``; eval_TAE fits it in disparity space by least
squares and clips depth to [1e-3, max_depth]).

Two choices of ours, both so that the exact ground truth scores ~0 (tests/test_temporal.py):
- eval_tae.py rounds each projected point to the nearest pixel and splats it (the last write wins,
  no z-test); we sample frame t+1 at the projected sub-pixel position instead, interpolating inverse
  depth bilinearly, which is exact on planes (inverse depth is affine in pixel coordinates there);
- with ground truth, a point counts only where it is visible in both frames: in view and where the
  ground truth's own reprojection agrees with frame t+1's ground truth within ``tol`` (1 %), which
  masks occlusions and disocclusions. eval_tae.py has no occlusion mask. Without ground truth, only
  out-of-view points are dropped.
A pair with no visible pixel is left out of the mean (eval_tae.py counts it as 0).

Flicker (static camera): the mean over consecutive frames of the mean symmetric relative change
``|d_{t+1} - d_t| / ((d_t + d_{t+1}) / 2)`` in percent; with a still camera the true depth does
not change, so all of it is flicker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ..errors import InputError

__all__ = ["relative_pose", "reproject", "sample_depth", "pair_abs_rel", "visible", "TAEAccumulator",
           "temporal_alignment_error", "flicker", "fit_clip", "apply_affine", "CLIP_SPACES"]

CLIP_SPACES = ("disparity", "depth", "none")  # where fit_clip fits one scale and shift for a clip


def relative_pose(pose_from: np.ndarray, pose_to: np.ndarray) -> np.ndarray:
    """4x4 camera-``to``-from-camera-``from`` transform of two world-from-camera poses."""
    return np.linalg.inv(np.asarray(pose_to, dtype=np.float64)) @ np.asarray(pose_from, dtype=np.float64)


def reproject(depth: np.ndarray, rel: np.ndarray, intrinsics: Sequence[float]):
    """Where each pixel of ``depth`` lands in the other camera: (u, v, z) arrays of the depth's shape.

    Pixel (row v, column u) with depth z is ``((u - cx) z / fx, (v - cy) z / fy, z)`` in its
    camera (io.depth_to_points' convention); ``rel`` maps it to the other camera.
    """
    fx, fy, cx, cy = (float(k) for k in intrinsics)
    z = np.asarray(depth, dtype=np.float64)
    v, u = np.mgrid[0 : z.shape[0], 0 : z.shape[1]]
    x, y = (u - cx) * z / fx, (v - cy) * z / fy
    r, t = rel[:3, :3], rel[:3, 3]
    x2 = r[0, 0] * x + r[0, 1] * y + r[0, 2] * z + t[0]
    y2 = r[1, 0] * x + r[1, 1] * y + r[1, 2] * z + t[1]
    z2 = r[2, 0] * x + r[2, 1] * y + r[2, 2] * z + t[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return fx * x2 / z2 + cx, fy * y2 / z2 + cy, z2


def sample_depth(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth at sub-pixel positions, inverse depth interpolated bilinearly (exact on planes), and
    where it is defined: inside the image, all four neighbours valid (> 0, finite)."""
    d = np.asarray(depth, dtype=np.float64)
    h, w = d.shape
    inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    uc, vc = np.where(inside, u, 0.0), np.where(inside, v, 0.0)
    u0 = np.minimum(np.floor(uc).astype(np.intp), max(w - 2, 0))
    v0 = np.minimum(np.floor(vc).astype(np.intp), max(h - 2, 0))
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu, fv = uc - u0, vc - v0
    ok = np.isfinite(d) & (d > 0)
    inv = np.where(ok, 1.0 / np.where(ok, d, 1.0), 0.0)
    corners = [(v0, u0, (1 - fu) * (1 - fv)), (v0, u1, fu * (1 - fv)), (v0 if h == 1 else v1, u0, (1 - fu) * fv),
               (v1, u1, fu * fv)]
    value = sum(inv[a, b] * wgt for a, b, wgt in corners)
    defined = inside & ok[v0, u0] & ok[v0, u1] & ok[v1, u0] & ok[v1, u1]
    return np.where(defined, 1.0 / np.where(defined, value, 1.0), 0.0), defined


def visible(gt_from: np.ndarray, gt_to: np.ndarray, rel: np.ndarray, intrinsics: Sequence[float],
            tol: float = 0.01) -> np.ndarray:
    """Pixels of frame ``from`` whose surface point is seen in frame ``to``: in view and, by the
    exact ground truth, not hidden there (the reprojected depth agrees within ``tol``, relative)."""
    u, v, z = reproject(gt_from, rel, intrinsics)
    there, defined = sample_depth(gt_to, u, v)
    valid_from = np.isfinite(gt_from) & (gt_from > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return valid_from & defined & (z > 0) & (np.abs(there - z) <= tol * there)


def pair_abs_rel(d_from: np.ndarray, d_to: np.ndarray, rel: np.ndarray, intrinsics: Sequence[float],
                 mask: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of |d_to - d_proj| / d_to, pixel count) over the pixels of frame ``from`` in ``mask``
    that land inside frame ``to`` (eval_tae.py's ``tae_torch``, with sub-pixel sampling)."""
    u, v, z = reproject(d_from, rel, intrinsics)
    there, defined = sample_depth(d_to, u, v)
    keep = defined & (z > 0) & np.isfinite(z) & (np.asarray(d_from) > 0)
    if mask is not None:
        keep &= mask
    if not keep.any():
        return 0.0, 0
    return float(np.sum(np.abs(there[keep] - z[keep]) / there[keep])), int(keep.sum())


class TAEAccumulator:
    """TAE over a stream of frames: ``add(pred, pose, gt=None)`` per frame, ``value()`` at the end.
    Holds only the previous frame."""

    def __init__(self, intrinsics: Sequence[float], tol: float = 0.01) -> None:
        self.intrinsics, self.tol = tuple(float(k) for k in intrinsics), tol
        self._last: tuple | None = None
        self.errors: list[float] = []  # AbsRel of each directed pair with visible pixels

    def add(self, pred: np.ndarray, pose: np.ndarray, gt: np.ndarray | None = None) -> None:
        pred = np.asarray(pred, dtype=np.float64)
        if self._last is not None:
            p0, pose0, g0 = self._last
            forward = relative_pose(pose0, pose)
            for a, b, rel, ga, gb in ((p0, pred, forward, g0, gt), (pred, p0, np.linalg.inv(forward), gt, g0)):
                mask = visible(ga, gb, rel, self.intrinsics, self.tol) if ga is not None and gb is not None else None
                total, count = pair_abs_rel(a, b, rel, self.intrinsics, mask)
                if count:
                    self.errors.append(total / count)
        self._last = (pred, pose, gt)

    def value(self) -> float:
        """TAE in percent (eval_TAE's ``result * 100``); NaN with no pair."""
        return float(np.mean(self.errors) * 100.0) if self.errors else float("nan")


def temporal_alignment_error(preds: Iterable[np.ndarray], poses: Iterable[np.ndarray], intrinsics: Sequence[float],
                             gts: Iterable[np.ndarray] | None = None, tol: float = 0.01) -> float:
    """TAE (percent) of depth maps already in metres or aligned (see ``fit_clip``)."""
    acc = TAEAccumulator(intrinsics, tol)
    gts = gts if gts is not None else iter(lambda: None, 0)
    for pred, pose, gt in zip(preds, poses, gts):
        acc.add(pred, pose, gt)
    return acc.value()


def flicker(depths: Iterable[np.ndarray], masks: Iterable[np.ndarray] | None = None) -> float:
    """Mean symmetric relative change between consecutive frames, percent (static camera only)."""
    changes, last = [], None
    masks = masks if masks is not None else iter(lambda: None, 0)
    for depth, mask in zip(depths, masks):
        d = np.asarray(depth, dtype=np.float64)
        if last is not None:
            keep = (d > 0) & (last > 0) & np.isfinite(d) & np.isfinite(last)
            if mask is not None:
                keep &= mask
            if keep.any():
                changes.append(np.mean(2 * np.abs(d[keep] - last[keep]) / (d[keep] + last[keep])))
        last = d
    return float(np.mean(changes) * 100.0) if changes else float("nan")


def fit_clip(preds: Iterable[np.ndarray], gts: Iterable[np.ndarray], space: str = "disparity",
             min_depth: float = 1e-3, max_depth: float = 80.0) -> tuple[float, float]:
    """One least-squares (scale, shift) for a whole clip, in ``space`` (eval_TAE: disparity), over
    pixels whose ground truth is in (min_depth, max_depth). From running sums: one frame at a time."""
    if space not in CLIP_SPACES:
        raise InputError(f"space must be one of {CLIP_SPACES}, got {space!r}")
    if space == "none":
        return 1.0, 0.0
    s = np.zeros(5)  # n, sum x, sum x^2, sum y, sum xy
    for pred, gt in zip(preds, gts):
        gt = np.asarray(gt, dtype=np.float64)
        keep = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
        x = np.clip(np.asarray(pred, dtype=np.float64)[keep], min_depth, None)
        y = gt[keep]
        if space == "disparity":  # eval_TAE fits the prediction to the ground truth's disparity
            x, y = 1.0 / x, 1.0 / y
        s += (x.size, x.sum(), (x * x).sum(), y.sum(), (x * y).sum())
    n, sx, sxx, sy, sxy = s
    det = n * sxx - sx * sx
    if n < 2 or det <= 0:
        return 1.0, 0.0
    scale = (n * sxy - sx * sy) / det
    return float(scale), float((sy - scale * sx) / n)


def apply_affine(pred: np.ndarray, scale: float, shift: float, space: str = "disparity",
                 min_depth: float = 1e-3, max_depth: float = 80.0) -> np.ndarray:
    """Depth after ``fit_clip``'s affine map in ``space``, clipped to [min_depth, max_depth] (eval_TAE)."""
    x = np.clip(np.asarray(pred, dtype=np.float64), min_depth, None)
    if space == "disparity":
        depth = 1.0 / np.clip(scale / x + shift, 1.0 / max_depth, None)
    else:
        depth = scale * x + shift if space == "depth" else x
    return np.clip(depth, min_depth, max_depth)
