"""Synthetic video source (data/video.py), ``depthsmith data video`` and video prediction."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from depthsmith.cli import main
from depthsmith.data import build_dataset
from depthsmith.data.video import SyntheticVideo
from depthsmith.io import read_video
from depthsmith.metrics.clip_align import ClipAligner, robust_affine
from depthsmith.metrics.temporal import apply_affine, fit_clip, temporal_alignment_error


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


def test_capture_noise_changes_rgb_not_depth() -> None:
    exact = SyntheticVideo(num_frames=3, size=(24, 32), path="static")
    noisy = SyntheticVideo(num_frames=3, size=(24, 32), path="static", noise=0.02, exposure=0.05)
    (rgb0, d0, _), (rgb1, d1, _) = noisy._load(0), noisy._load(1)
    assert np.array_equal(d0, exact._load(0)[1]) and np.array_equal(d0, d1)  # depth stays exact
    assert 0.005 < np.abs(rgb0 - rgb1).mean() < 0.1  # a still camera's frames now differ
    assert np.array_equal(rgb0, noisy._load(0)[0])  # and are reproducible


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


# -- temporal alignment at inference ------------------------------------------------------------

def test_robust_affine_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 5, 1000)
    y = 2.5 * x - 0.7
    y[:80] += rng.uniform(3, 10, 80)  # 8 % of the pixels moved (a passing object)
    assert robust_affine(x, y) == pytest.approx((2.5, -0.7))
    design = np.stack([x, np.ones_like(x)], 1)
    plain = np.linalg.lstsq(design, y, rcond=None)[0]
    assert abs(plain[1] + 0.7) > 0.1  # what plain least squares would have given


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_aligner_undoes_per_frame_affine_maps(space: str) -> None:
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.5, 6.0, (16, 20))
    x = gt if space == "depth" else 1.0 / gt
    frames = []
    for scale, shift in [(1.0, 0.0), (1.7, 0.3), (0.6, -0.1), (2.2, 0.05)]:  # each frame on its own scale
        y = scale * x + shift
        frames.append(y if space == "depth" else 1.0 / y)
    align = ClipAligner(space)
    out = [align(f) for f in frames]
    for o in out[1:]:
        assert np.allclose(o, out[0], rtol=1e-5)  # all on frame 0's scale
    anchored = ClipAligner(space, anchor=gt)
    assert all(np.allclose(anchored(f), gt, rtol=1e-5) for f in frames)  # a metric first frame: metres


@pytest.mark.parametrize("window", [1, 4])
def test_aligned_clip_keeps_its_contrast_under_per_pixel_noise(window: int) -> None:
    """A still camera whose frames each carry their own per-pixel noise and per-frame affine map: the
    least-squares slope shrinks every frame's scale by var(signal) / var(signal + noise), and over
    the clip the contrast collapses (the earlier fit: negative control); the default spread fit keeps it."""
    rng = np.random.default_rng(5)
    truth = rng.uniform(1.0, 3.0, (24, 32))
    frames = [(truth + rng.normal(0, 0.3, truth.shape)) * rng.uniform(0.5, 2.0) + rng.uniform(0, 1) for _ in range(150)]

    def spread(fit: str) -> float:
        align = ClipAligner("depth", window=window, fit=fit)
        out = [align(f) for f in frames]
        return float(np.subtract(*np.percentile(out[-1], [75, 25])) / np.subtract(*np.percentile(out[0], [75, 25])))

    assert spread("lstsq") < 0.5
    assert 0.8 < spread("spread") < 1.25


def test_metric_smoothing_is_off_at_zero_strength() -> None:
    d0, d1 = np.full((4, 4), 2.0), np.full((4, 4), 2.2)
    off = ClipAligner("metric")
    assert np.array_equal(off(d0), d0) and np.array_equal(off(d1), d1.astype(np.float32))
    light = ClipAligner("metric", strength=0.5)
    light(d0)
    assert np.allclose(light(d1), 2.2 * (2.0 / 2.2) ** 0.5)  # half-way, geometrically, to the last scale


class JitteredDepth(torch.nn.Module):
    """A relative model whose every frame is on its own scale: the frame's true depth (coded in its red
    channel) min-max normalised, as the ``relative`` output kind is (models/model.py), times a scale
    and plus a shift that change from frame to frame (drawn from the frame's own pixels)."""

    output, is_metric, name = "relative", False, "jittered-oracle"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[:, :1]
        lo, hi = r.amin(dim=(2, 3), keepdim=True), r.amax(dim=(2, 3), keepdim=True)
        phase = 1e4 * r.mean(dim=(2, 3), keepdim=True)
        return (r - lo) / (hi - lo) * (1.0 + 0.3 * torch.sin(phase)) + 0.2 + 0.1 * torch.cos(phase)


def test_stream_aligns_a_relative_model_over_a_walk() -> None:
    from depthsmith.inference import Predictor

    n = 40
    clip = SyntheticVideo(num_frames=n, size=(24, 32), path="walk")
    gts = [clip._load(i)[1] for i in range(n)]
    frames = [np.repeat((g / 8.0)[..., None], 3, axis=2).astype(np.float32) for g in gts]
    predictor = Predictor(JitteredDepth(), device="cpu", backend="torch-fp32")
    poses, k = [clip.pose(i) for i in range(n)], clip.intrinsics()

    def tae(preds):  # as eval_TAE: one affine for the clip (in depth space, the kind's space), then TAE
        scale, shift = fit_clip(preds, gts, "depth")
        return temporal_alignment_error([apply_affine(p, scale, shift, "depth") for p in preds], poses, k, gts)

    raw = [d for _, d in predictor.stream(frames, temporal="none")]
    aligned = [d for _, d in predictor.stream(frames, temporal="auto")]
    assert np.allclose(raw[0], aligned[0])  # the first frame keeps its scale
    assert tae(aligned) < 0.5 * tae(raw)


# -- flow-guided filtering (metrics/clip_filter.py) ----------------------------------------------

def _pan_with_pixel_noise(n: int = 30, noise: float = 0.04):
    """A pan's RGB frames, exact depth, and 'predictions': the exact depth with its own multiplicative
    per-pixel noise in every frame, the flicker no per-frame scale and shift removes."""
    clip = SyntheticVideo(num_frames=n, size=(48, 64), path="pan", seed=0)
    rgbs, gts = zip(*[clip._load(i)[:2] for i in range(n)])
    rng = np.random.default_rng(0)
    preds = [g * (1.0 + rng.normal(0.0, noise, g.shape)) for g in gts]
    return clip, [(r * 255 + 0.5).astype(np.uint8) for r in rgbs], list(gts), preds


def test_flow_filter_halves_the_tae_of_per_pixel_flicker() -> None:
    pytest.importorskip("cv2")
    from depthsmith.metrics.clip_filter import FlowFilter

    clip, rgbs, gts, preds = _pan_with_pixel_noise()
    poses, k = [clip.pose(i) for i in range(len(gts))], clip.intrinsics()

    def scores(maps):
        tae = temporal_alignment_error(maps, poses, k, gts)
        abs_rel = np.mean([np.mean(np.abs(m - g) / g) for m, g in zip(maps[10:], gts[10:])])
        return tae, abs_rel

    flow = FlowFilter()
    filtered = [flow(rgb, p) for rgb, p in zip(rgbs, preds)]
    still = FlowFilter()  # negative control: the flow of a camera that does not move (always frame 0)
    unmoved = [still(rgbs[0], p) for p in preds]
    (tae_raw, err_raw), (tae_flow, err_flow), (_, err_still) = scores(preds), scores(filtered), scores(unmoved)
    assert tae_flow < 0.5 * tae_raw
    assert err_flow < err_raw  # averaging noise along the motion also brings each frame nearer the truth
    assert err_still > err_flow  # averaging without the motion smears the pan: the flow is what makes it work
    assert np.mean(flow.kept[1:]) > 0.8


def test_flow_filter_blends_small_changes_and_takes_large_ones_at_once() -> None:
    pytest.importorskip("cv2")
    from depthsmith.metrics.clip_filter import FlowFilter

    frame = (SyntheticVideo(num_frames=2, size=(48, 64), path="static")._load(0)[0] * 255).astype(np.uint8)
    flow = FlowFilter(weight=0.8, tolerance=0.25)
    first = flow(frame, np.full((48, 64), 2.0))
    assert np.array_equal(first, np.full((48, 64), 2.0, dtype=np.float32))  # nothing to filter with yet
    np.testing.assert_allclose(flow(frame, np.full((48, 64), 2.2)), 0.8 * 2.0 + 0.2 * 2.2, rtol=1e-5)
    jump = flow(frame, np.full((48, 64), 4.0))  # 2.04 -> 4.0: beyond the tolerance, taken as it is
    np.testing.assert_allclose(jump, 4.0, rtol=1e-6)


def test_filter_without_opencv_is_a_clear_error(monkeypatch) -> None:
    import sys

    from depthsmith.errors import InputError
    from depthsmith.metrics.clip_filter import FlowFilter

    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    with pytest.raises(InputError, match=r"depthsmith\[video\]"):
        FlowFilter()


# -- predict on a video: stream, resume, point clouds --------------------------------------------
@pytest.mark.parametrize("temporal", ["auto", "filter"])
def test_interrupted_video_prediction_resumes(tmp_path: Path, temporal: str) -> None:
    import depthsmith
    from depthsmith.commands.predict_video import predict_video
    from depthsmith.inference import Predictor

    main(["data", "video", "--out", str(tmp_path / "clip"), "--path", "walk", "--frames", "10", "--height", "48",
          "--width", "64"])
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", output="relative").eval()
    predictor = Predictor(model, device="cpu", backend="torch-fp32")
    out = tmp_path / "out"
    out.mkdir()
    if temporal == "filter":
        pytest.importorskip("cv2")
    args = (predictor, tmp_path / "clip" / "rgb.mp4", out, "clip", ["npy", "color", "ply"])
    first = predict_video(*args, batch_size=3, ply_every=4, temporal=temporal)
    assert first == {"predicted": 10, "skipped": 0}
    frames = out / "clip_frames"
    assert sorted(p.name for p in frames.glob("*.ply")) == ["000000.ply", "000004.ply", "000008.ply"]
    before = {i: np.load(frames / f"{i:06d}_depth.npy") for i in range(10)}
    kept = (frames / "000005_depth.npy").stat().st_mtime_ns
    for i in (7, 8, 9):  # as if the run had been killed while writing frame 6
        (frames / f"{i:06d}_depth.npy").unlink()
    cut = frames / "000006_depth.npy"
    cut.write_bytes(cut.read_bytes()[:100])
    again = predict_video(*args, batch_size=3, ply_every=4, temporal=temporal)
    assert again == {"predicted": 4, "skipped": 6}
    assert (frames / "000005_depth.npy").stat().st_mtime_ns == kept  # written frames left alone
    # The resumed clip continues on the same scale. With the flow filter only nearly: the aligner is
    # seeded with the written (filtered) frames, not the unfiltered aligned ones it fitted to (README "Video").
    for i in range(10):
        np.testing.assert_allclose(np.load(frames / f"{i:06d}_depth.npy"), before[i],
                                   rtol=1e-4 if temporal == "auto" else 1e-2)
    assert len(list(read_video(out / "clip_depth.mp4")[0])) == 10


def test_eval_on_a_video_prints_tae_and_flicker(tmp_path: Path, capsys) -> None:
    import depthsmith

    torch.manual_seed(0)
    depthsmith.create_model("test_resnet", decoder="unet", output="relative").save_pretrained(tmp_path / "rel")
    data = tmp_path / "still.yaml"
    data.write_text(yaml.safe_dump({"type": "synthetic_video", "num_frames": 4, "size": [48, 64], "path": "static"}))
    assert main(["eval", "--model", str(tmp_path / "rel"), "--data", str(data), "--protocol", "none",
                 "--align", "lstsq", "--out", str(tmp_path / "e"), "--temporal", "align"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"TAE \d+\.\d+ %, flicker \d+\.\d+ %", printed) and "--temporal align" in printed
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"]
    assert metrics["tae"] >= 0 and metrics["flicker"] >= 0 and metrics["n_images"] == 4
