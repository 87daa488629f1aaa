"""Temporal metrics (metrics/temporal.py) against hand-computed values and exact synthetic geometry."""

from __future__ import annotations

import numpy as np
import pytest

from depthsmith.data.video import SyntheticVideo
from depthsmith.metrics.temporal import (apply_affine, fit_clip, flicker, pair_abs_rel, relative_pose, reproject,
                                         temporal_alignment_error, visible)


def _clip(path: str, frames: int = 10):
    video = SyntheticVideo(num_frames=frames, size=(48, 64), seed=0, path=path)
    gts = [video._load(i)[1].astype(np.float64) for i in range(frames)]
    return video, gts, [video.pose(i) for i in range(frames)]


def test_reprojection_of_a_plane_by_hand() -> None:
    # A fronto-parallel plane 2 m away; the camera steps 1 m forward (world +z, no rotation).
    # Pixel u has X = (u - 1.5) * 2 / 10; in the new camera z = 1 and u' = 10 X / 1 + 1.5 = 1.5 + 2 (u - 1.5).
    k = (10.0, 10.0, 1.5, 1.5)
    pose_to = np.eye(4)
    pose_to[2, 3] = 1.0
    rel = relative_pose(np.eye(4), pose_to)
    u, v, z = reproject(np.full((4, 4), 2.0), rel, k)
    assert np.allclose(u[0], [-1.5, 0.5, 2.5, 4.5]) and np.allclose(v[:, 0], [-1.5, 0.5, 2.5, 4.5])
    assert np.allclose(z, 1.0)
    # Frame t+1 predicted at 1.25 m: only the 2 x 2 centre lands inside, each |1.25 - 1| / 1.25 = 0.2.
    total, count = pair_abs_rel(np.full((4, 4), 2.0), np.full((4, 4), 1.25), rel, k)
    assert count == 4 and total == pytest.approx(0.8)


@pytest.mark.parametrize("path", ["walk", "pass", "pan"])
def test_ground_truth_scores_zero_tae(path: str) -> None:
    video, gts, poses = _clip(path)
    assert temporal_alignment_error(gts, poses, video.intrinsics(), gts) < 0.05  # percent
    if path == "pass":  # the column hides and reveals the wall behind it: the mask must have cut pixels
        rel = relative_pose(poses[0], poses[-1])
        assert visible(gts[0], gts[-1], rel, video.intrinsics()).mean() < 0.9


def test_wrong_poses_score_high() -> None:
    video, gts, poses = _clip("walk")
    # The motion played backwards: the reprojected depths no longer agree with the next frame.
    assert temporal_alignment_error(gts, poses[::-1], video.intrinsics()) > 2.0


def test_flickering_prediction_scores_high_by_hand() -> None:
    # A pure rotation (pan): scaling a frame's depth scales its reprojected depth, pixel positions stay.
    # Frames alternate x1.1 / x0.9: each forward pair |0.9 - 1.1| / 0.9, backward 0.2 / 1.1.
    video, gts, poses = _clip("pan")
    preds = [g * (1.1 if i % 2 == 0 else 0.9) for i, g in enumerate(gts)]
    expected = (0.2 / 0.9 + 0.2 / 1.1) / 2 * 100
    assert temporal_alignment_error(preds, poses, video.intrinsics(), gts) == pytest.approx(expected, rel=2e-3)


def test_flicker_of_a_static_camera_by_hand() -> None:
    video, gts, _ = _clip("static", 6)
    assert flicker(gts) == pytest.approx(0.0, abs=1e-9)
    preds = [g * (1.1 if i % 2 == 0 else 0.9) for i, g in enumerate(gts)]
    assert flicker(preds) == pytest.approx(2 * 0.2 / 2.0 * 100)  # |1.1 - 0.9| / 1.0


def test_fit_clip_recovers_a_disparity_affine() -> None:
    rng = np.random.default_rng(0)
    gts = [rng.uniform(0.5, 8.0, (6, 7)) for _ in range(3)]
    preds = [1.0 / ((1.0 / g - 0.05) / 4.0) for g in gts]  # disparity = (gt disparity - 0.05) / 4
    scale, shift = fit_clip(preds, gts, "disparity")
    assert (scale, shift) == pytest.approx((4.0, 0.05))
    assert np.allclose(apply_affine(preds[0], scale, shift, "disparity"), gts[0])
    depth_preds = [(g + 1.0) / 2.0 for g in gts]  # gt = 2 pred - 1
    assert fit_clip(depth_preds, gts, "depth") == pytest.approx((2.0, -1.0))
