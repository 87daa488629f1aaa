"""Temporal alignment at inference: each frame's prediction put on the running clip's scale.

A relative model's ``to_depth`` normalises every frame on its own (``models/model.py``: the
``relative`` sigmoid is per-image min-max depth, ``disparity`` is divided by its per-image
maximum), so frame-to-frame values jump even when the scene does not. ``ClipAligner`` fits each new
frame with a scale and shift, in the space the output kind is affine in (``depth`` for
``relative``, ``disparity`` for ``disparity``), to the mean of the last ``window`` aligned frames,
by least squares with the worst ``trim`` of the pixels dropped and the fit repeated (moving
objects, disocclusions and the parallax of a moving camera are the outliers); with ``fit="spread"``
(default) the final scale then matches the spread (interquartile range) of the recent aligned
frames instead of taking the least-squares slope, which noise biases low and which compounds over a
clip. The first frame keeps its own scale, or takes the scale of ``anchor``, a metric depth map of the first frame.

Metric models need no alignment; ``ClipAligner(space="metric", strength=s)`` is the optional
light smoothing: the frame is multiplied by ``r ** s``, r the median ratio of the previous output
to this prediction (s = 0: off, 1: follow the previous frame's scale fully).

``flow`` (a ``FlowFilter``, metrics/clip_filter.py): after the fit, the aligned frame is filtered along
the optical flow from the previous frame (``__call__(depth, frame)``), for the per-pixel flicker a
per-frame scale and shift cannot remove. The next frames are still fitted to the unfiltered aligned
frames: filtered frames hold less noise, so their interquartile range is smaller, and matching it would
shrink every frame's scale a little, frame after frame (measured: the last frame's spread fell to 0.43
of the first's on the walk when the filtered frames were the reference).

Memory: ``window`` frames of H x W float32; the clip is never held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from ..errors import InputError

__all__ = ["ClipAligner", "robust_affine", "ALIGN_SPACES", "ALIGN_FITS", "TEMPORAL_MODES"]

ALIGN_SPACES = ("depth", "disparity", "metric")
ALIGN_FITS = ("spread", "lstsq")  # see robust_affine
TEMPORAL_MODES = ("auto", "align", "filter", "none")  # predict --temporal, Predictor.aligner
FLOOR = 1e-6  # smallest aligned value in the fitting space (an affine fit can cross zero at the edges)


def robust_affine(x: np.ndarray, y: np.ndarray, trim: float = 0.2, rounds: int = 2,
                  spreads: Sequence[np.ndarray] | None = None) -> tuple[float, float]:
    """(scale, shift) with ``scale * x + shift ~ y``: least squares, then refitted ``rounds`` times on
    the pixels whose residual is under the (1 - trim) quantile. Falls back to the median ratio (no
    shift) when the fit is degenerate or gives a non-positive scale.

    ``spreads`` (maps at the same pixels as ``x``): the scale is instead the mean interquartile range
    of those maps divided by that of ``x``, over all the pixels, and the shift the median of
    ``y - scale * x``. Least squares of a noisy ``x`` on ``y`` shrinks the slope by var(signal) /
    var(signal + noise) (regression dilution), and pixels kept by a trim around that slope inherit
    it; frame after frame it compounds and a clip's contrast collapses to a constant (measured:
    README "Video"). The interquartile range of single aligned frames holds noise like ``x``'s, so
    matching it does not shrink, and it ignores the few pixels a trim is for.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.ones(x.shape, dtype=bool)
    scale, shift = 1.0, 0.0
    for r in range(rounds + 1):
        a, b = x[keep], y[keep]
        if a.size < 2 or np.ptp(a) <= 1e-12 * max(abs(a).max(), 1e-30):
            break
        design = np.stack([a, np.ones_like(a)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, b, rcond=None)
        if r < rounds:
            residual = np.abs(scale * x + shift - y)
            keep = residual <= np.quantile(residual, 1.0 - trim)
    if not np.isfinite(scale) or scale <= 0:
        ratio = y / np.maximum(x, 1e-12)
        return float(np.median(ratio)) if x.size else 1.0, 0.0
    if spreads is not None and _iqr(x) > 0:
        scale = float(np.mean([_iqr(m) for m in spreads])) / _iqr(x)
        shift = float(np.median(y - scale * x))
    return float(scale), float(shift)


def _iqr(values: np.ndarray) -> float:
    q1, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 75])
    return float(q3 - q1)


class ClipAligner:
    """Call it on each frame's depth in order; it returns the aligned depth (same units as the model's,
    on the first frame's scale, or in metres with ``anchor``)."""

    def __init__(self, space: str = "depth", window: int = 4, trim: float = 0.2, anchor: np.ndarray | None = None,
                 strength: float = 0.0, max_pixels: int = 20000, fit: str = "spread", flow: Any = None) -> None:
        if space not in ALIGN_SPACES:
            raise InputError(f"alignment space must be one of {ALIGN_SPACES}, got {space!r}")
        if fit not in ALIGN_FITS:
            raise InputError(f"alignment fit must be one of {ALIGN_FITS}, got {fit!r}")
        self.fit = fit
        if window < 1 or not 0.0 <= trim < 1.0 or not 0.0 <= strength <= 1.0:
            raise InputError(f"need window >= 1, 0 <= trim < 1 and 0 <= strength <= 1 (got {window}, {trim}, {strength})")
        self.space, self.window, self.trim, self.strength = space, int(window), float(trim), float(strength)
        self.anchor, self.max_pixels, self.flow = anchor, int(max_pixels), flow
        self.recent: deque[np.ndarray] = deque(maxlen=self.window)  # last aligned frames, fitting space
        self.fits: list[tuple[float, float]] = []  # (scale, shift) per frame, for inspection

    def _to_space(self, depth: np.ndarray) -> np.ndarray:
        d = np.asarray(depth, dtype=np.float64)
        if self.space == "disparity":
            return 1.0 / np.maximum(d, FLOOR)
        return d

    def _from_space(self, x: np.ndarray) -> np.ndarray:
        x = np.maximum(x, FLOOR)
        return (1.0 / x if self.space == "disparity" else x).astype(np.float32)

    def _sample(self, *maps: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pixels valid in every map, a regular subsample of at most ``max_pixels`` (speed only)."""
        ok = np.ones(maps[0].shape, dtype=bool)
        for m in maps:
            ok &= np.isfinite(m) & (m > 0)
        idx = np.flatnonzero(ok)
        step = max(1, idx.size // self.max_pixels)
        idx = idx[::step]
        return tuple(m.reshape(-1)[idx] for m in maps)

    def reset(self) -> None:
        self.recent.clear()
        self.fits.clear()
        if self.flow is not None:
            self.flow.reset()

    def seed(self, aligned_depth: np.ndarray, frame: np.ndarray | None = None) -> None:
        """Continue a clip from an already aligned frame (a resumed run reads its last written frame)."""
        x = self._to_space(aligned_depth)
        self.recent.append(x)
        if self.flow is not None and frame is not None:
            self.flow.seed(frame, x)

    def _filtered(self, x: np.ndarray, frame: np.ndarray | None) -> np.ndarray:
        if self.flow is None or frame is None:
            return x
        return self.flow(frame, x).astype(np.float64)

    def __call__(self, depth: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
        """The aligned depth of the next frame; ``frame`` (its RGB) is used only by ``flow``."""
        x = self._to_space(depth)
        if self.space == "metric":
            factor = 1.0
            if self.strength > 0.0 and self.recent:
                p, r = self._sample(x, self.recent[-1])
                factor = float(np.median(r / p)) ** self.strength if p.size else 1.0
            out = x * factor
            self.recent.append(out)
            self.fits.append((factor, 0.0))
            return self._filtered(out, frame).astype(np.float32)
        if self.recent:
            reference = sum(self.recent) / len(self.recent)
        elif self.anchor is not None:
            reference = self._to_space(self.anchor)
        else:
            reference = None
        if reference is None:
            scale, shift = 1.0, 0.0
        else:
            recent = list(self.recent) if self.recent else [reference]
            p, r, *frames = self._sample(x, reference, *recent)
            spreads = frames if self.fit == "spread" else None
            scale, shift = robust_affine(p, r, self.trim, spreads=spreads) if p.size >= 2 else (1.0, 0.0)
        aligned = np.maximum(scale * x + shift, FLOOR)
        self.recent.append(aligned)
        self.fits.append((scale, shift))
        return self._from_space(self._filtered(aligned, frame))
