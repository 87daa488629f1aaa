"""Temporal metrics of a model on a video dataset (one with ``pose(i)`` and ``intrinsics()``, such as
``synthetic_video``): TAE for every clip, flicker when the camera does not move.

The clip is predicted in order through ``Predictor.stream`` (``temporal``: as ``predict --temporal``),
then, as Video Depth Anything's eval_TAE does, put on the ground truth's scale with one least-squares
scale and shift for the whole clip: in disparity space for ``disparity`` outputs, depth space for
``relative`` ones, none for metric models (metrics/temporal.py ``fit_clip``). Predictions of the
clip are held at the ground truth's resolution for that fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inference import Predictor
from ..metrics.temporal import apply_affine, fit_clip, flicker, temporal_alignment_error

__all__ = ["is_video_dataset", "temporal_metrics", "clip_space"]


def is_video_dataset(data: Any) -> bool:
    return callable(getattr(data, "pose", None)) and callable(getattr(data, "intrinsics", None))


def clip_space(output: str | None, is_metric: bool) -> str:
    """The space of the clip-level fit (``fit_clip``) for a model's output kind."""
    if is_metric:
        return "none"
    return "disparity" if output == "disparity" else "depth"


def temporal_metrics(model: Any, data: Any, temporal: str = "none", device: str = "auto",
                     max_depth: float = 80.0) -> dict[str, Any]:
    """{"tae": percent, "flicker": percent or NaN (moving camera), "description": what was computed}."""
    predictor = model if isinstance(model, Predictor) else Predictor(model, device=device, backend="torch-fp32")
    gts: list[np.ndarray] = []

    def frames():
        for i in range(len(data)):
            sample = data.read(i)
            gts.append(sample["depth"][0].numpy())
            yield sample["image"].numpy().transpose(1, 2, 0)

    preds = [d for _, d in predictor.stream(frames(), temporal=temporal)]
    space = clip_space(predictor.output, predictor.is_metric)
    scale, shift = fit_clip(preds, gts, space, max_depth=max_depth)
    aligned = [apply_affine(p, scale, shift, space, max_depth=max_depth) for p in preds]
    poses = [data.pose(i) for i in range(len(data))]
    tae = temporal_alignment_error(aligned, poses, data.intrinsics(), gts)
    still = all(np.allclose(p, poses[0]) for p in poses)
    masks = [g > 0 for g in gts]
    flick = flicker(aligned, masks) if still else float("nan")
    fit = "no clip fit (metric)" if space == "none" else f"one {space}-space scale and shift fitted to the clip"
    description = (f"temporal ({len(gts)} frames, --temporal {temporal}, {fit}): TAE = Video Depth Anything's "
                   "temporal alignment error (frame t's depth reprojected into t+1 with the true pose, AbsRel "
                   "against t+1's prediction, both directions, %, occlusions masked by the ground truth)"
                   + ("; flicker = mean relative change between frames of a still camera, %" if still else
                      "; flicker not computed (the camera moves)"))
    return {"tae": tae, "flicker": flick, "description": description}
