"""Synthetic video source (data/video.py), ``depthsmith data video`` and video prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from depthsmith.cli import main
from depthsmith.data import build_dataset
from depthsmith.data.video import SyntheticVideo
from depthsmith.io import read_video


def test_poses_follow_the_camera_path() -> None:
    walk = SyntheticVideo(num_frames=5, size=(24, 32), path="walk")
    steps = [np.linalg.norm(walk.pose(i + 1)[:3, 3] - walk.pose(i)[:3, 3]) for i in range(4)]
    assert all(s > 0.05 for s in steps) and steps[1] > steps[0]  # moving, eased from a standstill
    forward = walk.pose(0)[:3, 2]  # the camera's z axis in the world: the walking direction, level
    travel = walk.pose(4)[:3, 3] - walk.pose(0)[:3, 3]
    assert np.dot(travel, forward) / np.linalg.norm(travel) > 0.9
    pan = SyntheticVideo(num_frames=5, size=(24, 32), path="pan")
    assert np.allclose(pan.pose(0)[:3, 3], pan.pose(4)[:3, 3])  # standing still
    rotation = pan.pose(0)[:3, :3].T @ pan.pose(4)[:3, :3]
    assert np.degrees(np.arccos((np.trace(rotation) - 1) / 2)) == pytest.approx(np.degrees(0.9), abs=1.0)
    static = SyntheticVideo(num_frames=3, size=(24, 32), path="static")
    assert np.array_equal(static._load(0)[1], static._load(2)[1])


def test_pass_puts_a_near_column_in_view() -> None:
    clip = SyntheticVideo(num_frames=5, size=(48, 64), path="pass")
    # Mid-path the optical axis runs through the column's centre 0.9 m ahead; the 0.3 m column (turned
    # by the camera's yaw) is entered 0.9 - 0.15 to 0.9 - 0.15 sqrt(2) m ahead horizontally, and the
    # axis, pitched down by at most 0.3 rad, reaches that distance at depth horizontal / cos(pitch).
    centre = clip._load(2)[1][23:25, 31:33]
    assert 0.9 - 0.15 * np.sqrt(2) - 1e-3 < centre.min() and centre.max() < 0.75 / np.cos(0.3)


def test_data_video_writes_mp4_and_ground_truth(tmp_path: Path) -> None:
    out = tmp_path / "clip"
    assert main(["data", "video", "--out", str(out), "--path", "pan", "--frames", "6", "--height", "24",
                 "--width", "32"]) == 0
    frames, info = read_video(out / "rgb.mp4")
    assert len(list(frames)) == 6 and (info["width"], info["height"]) == (32, 24)
    poses = np.load(out / "poses.npy")
    assert poses.shape == (6, 4, 4) and np.allclose(poses[:, 3], [0, 0, 0, 1])
    k = json.loads((out / "intrinsics.json").read_text())
    assert (k["fx"], k["cx"], k["cy"]) == pytest.approx((0.81 * 32, 15.5, 11.5))
    again = build_dataset(yaml.safe_load((out / "dataset.yaml").read_text()))  # renders the same clip
    depth = np.load(out / "depth" / "000003.npy")
    assert np.array_equal(depth, again[3]["depth"][0].numpy()) and np.allclose(poses[3], again.pose(3))
