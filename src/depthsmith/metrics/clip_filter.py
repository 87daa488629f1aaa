"""Flow-guided temporal filtering of video depth: the per-pixel flicker a per-frame fit cannot remove.

``ClipAligner`` (metrics/clip_align.py) gives every frame the clip's scale and shift, but a network run
on each frame alone still answers each frame's sensor noise and each small change of view with its own
per-pixel errors; on the synthetic clips they are most of the Temporal Alignment Error (README, "Video":
every frame fitted to its own ground truth leaves TAE where it was). ``FlowFilter`` averages them over
time along the image motion, the classic recursive filter of video post-processing (a flow-warped
exponential moving average, as in Lai et al. 2018, "Learning Blind Video Temporal Consistency", whose
temporal loss warps the previous output with optical flow):

1. optical flow from this frame to the previous one, and back (OpenCV's DIS flow, Kroeger et al. 2016:
   classical, no weights to download), on the RGB frames;
2. the previous filtered depth warped into this frame along it;
3. ``out = weight * warped + (1 - weight) * depth`` where the warp can be trusted, ``depth`` elsewhere:
   the pixel must map inside the previous frame, the two flows must agree (forward-backward check: an
   occluded or disoccluded pixel fails it), and the warped value must be within ``tolerance``
   (relative) of this frame's, so a moving object or a wrong flow is never smeared over the scene.

The constants were chosen on ``benchmarks/bench_video.py``'s clips (README "Video"): weight 0.8 against
0.5-0.9, tolerance 0.4 against 0.1-0.5 (at 0.1-0.25 a noisy model's pixels disagree that much from frame
to frame, 20-30% of them, and are left unfiltered), and 1 px of forward-backward disagreement against
0.5 px (DIS flow at 64 x 48 misses expansions by that much on a forward walk; 0.5 px kept 72% of its
pixels, 1 px 83%).

Values are filtered in the space the output kind is affine in (the aligner's), after alignment, so
the frames being averaged share one scale. The lag is small where it matters: a value moves toward
each new frame by ``1 - weight`` per frame, and a change larger than ``tolerance`` is taken at once.

Memory: the previous grey frame and the previous output, H x W each.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["FlowFilter", "FILTER_WEIGHT", "FILTER_TOLERANCE"]

FILTER_WEIGHT = 0.8  # chosen by measurement, README "Video"
FILTER_TOLERANCE = 0.4
FB_TOLERANCE = 1.0  # px: forward-backward flow disagreement above this (+ 5% of the motion) = occlusion


def _cv2():
    try:
        import cv2
    except ImportError as err:  # optional: only `--temporal filter` needs it
        raise InputError("temporal filtering needs OpenCV's optical flow: pip install 'depthsmith[video]' "
                         "(opencv-python-headless), or use --temporal align") from err
    return cv2


def _grey(frame: np.ndarray, shape: tuple[int, int], cv2) -> np.ndarray:
    """uint8 grey of an H x W x 3 frame (uint8 or float in [0, 1]) at ``shape``."""
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        f = (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(f[..., :3]), cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
    if grey.shape != shape:
        grey = cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return grey


class FlowFilter:
    """Call it on (frame, value map) in order, values in the fitting space; returns the filtered map."""

    def __init__(self, weight: float = FILTER_WEIGHT, tolerance: float = FILTER_TOLERANCE) -> None:
        if not 0.0 <= weight < 1.0 or tolerance <= 0.0:
            raise InputError(f"need 0 <= weight < 1 and tolerance > 0 (got {weight}, {tolerance})")
        self.weight, self.tolerance = float(weight), float(tolerance)
        self._cv2 = _cv2()
        self._flow = self._cv2.DISOpticalFlow_create(self._cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # (grey, filtered values)
        self.kept: list[float] = []  # fraction of pixels that took the warped value, per frame

    def reset(self) -> None:
        self.previous = None
        self.kept.clear()

    def seed(self, frame: np.ndarray, values: np.ndarray) -> None:
        """Continue from an already filtered frame (a resumed run)."""
        values = np.asarray(values, dtype=np.float32)
        self.previous = (_grey(frame, values.shape, self._cv2), values)

    def __call__(self, frame: np.ndarray, values: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        x = np.asarray(values, dtype=np.float32)
        grey = _grey(frame, x.shape, cv2)
        if self.previous is None or self.previous[1].shape != x.shape or self.weight == 0.0:
            self.previous = (grey, x)
            self.kept.append(0.0)
            return x
        prev_grey, prev = self.previous
        back = self._flow.calc(grey, prev_grey, None)  # this frame's pixel -> where it was
        forth = self._flow.calc(prev_grey, grey, None)
        h, w = x.shape
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = xs + back[..., 0], ys + back[..., 1]
        warped = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        returned = cv2.remap(forth, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        round_trip = np.hypot(*(returned + back).transpose(2, 0, 1))
        motion = np.hypot(*back.transpose(2, 0, 1))
        trusted = ((map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
                   & (round_trip <= FB_TOLERANCE + 0.05 * motion)
                   & (np.abs(warped - x) <= self.tolerance * np.abs(x)) & np.isfinite(warped))
        out = np.where(trusted, self.weight * warped + (1.0 - self.weight) * x, x).astype(np.float32)
        self.previous = (grey, out)
        self.kept.append(float(trusted.mean()))
        return out
