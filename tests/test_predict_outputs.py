"""What `depthsmith predict` writes: 16-bit PNG, .npy, colour, side-by-side, PLY, video; failures."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.cli import main
from depthsmith.io import (NYU_KINECT, VideoWriter, depth_to_points, read_png16, read_video, save_png16,
                           save_ply, scaled_intrinsics)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None).save_pretrained(path)
    return path


def _image(path, h=48, w=64, seed=0):
    Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_png16_is_millimetres(tmp_path):
    depth = np.array([[0.0, 1.2344, 2.0], [np.nan, 70.0, 0.0004]], np.float32)
    save_png16(tmp_path / "d.png", depth)
    raw = np.asarray(Image.open(tmp_path / "d.png"))
    assert raw.dtype == np.uint16
    assert raw.tolist() == [[0, 1234, 2000], [0, 65535, 0]]  # mm, NaN -> 0, clipped at 65.535 m
    np.testing.assert_allclose(read_png16(tmp_path / "d.png")[0, :3], [0.0, 1.234, 2.0])


def test_point_against_hand_computed_back_projection(tmp_path):
    depth = np.zeros((3, 4), np.float32)
    depth[1, 2] = 2.0  # row v=1, column u=2
    depth[2, 0] = 4.0
    k = (500.0, 400.0, 1.0, 0.5)
    points, valid = depth_to_points(depth, k)
    # X = (u - cx) z / fx = (2 - 1) * 2 / 500; Y = (v - cy) z / fy = (1 - 0.5) * 2 / 400
    np.testing.assert_allclose(points[0], [0.004, 0.0025, 2.0], rtol=1e-6)
    np.testing.assert_allclose(points[1], [-0.008, 0.015, 4.0], rtol=1e-6)
    assert valid.sum() == 2

    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[1, 2] = (10, 20, 30)
    save_ply(tmp_path / "c.ply", depth, rgb, k)
    data = (tmp_path / "c.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert b"element vertex 2" in header and b"binary_little_endian" in header
    vertex = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                        ("r", "u1"), ("g", "u1"), ("b", "u1")])
    assert vertex[0]["z"] == 2.0 and (vertex[0]["r"], vertex[0]["g"], vertex[0]["b"]) == (10, 20, 30)


def test_nyu_intrinsics_scale_with_the_image():
    assert scaled_intrinsics(480, 640) == pytest.approx((518.8579, 519.4696, 325.5824, 253.7362))
    fx, fy, cx, cy = scaled_intrinsics(240, 320)
    assert (fx, cx) == pytest.approx((NYU_KINECT["fx"] / 2, NYU_KINECT["cx"] / 2))
    assert (fy, cy) == pytest.approx((NYU_KINECT["fy"] / 2, NYU_KINECT["cy"] / 2))


def test_cli_writes_every_output_and_reports_unreadable_files(model_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _image(src / "a.png")
    _image(src / "b.jpg", 50, 70, seed=1)
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    code = main(["predict", str(src), str(tmp_path / "missing.jpg"), "--model", str(model_dir), "--out", str(out),
                 "--save", "png16", "npy", "color", "side", "ply", "--batch-size", "2"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "broken.png" in printed and "missing.jpg" in printed and "2 of 4 inputs" in printed
    for stem, (h, w) in {"a": (48, 64), "b": (50, 70)}.items():
        assert read_png16(out / f"{stem}_depth16.png").shape == (h, w)
        assert np.load(out / f"{stem}_depth.npy").shape == (h, w)
        color = np.asarray(Image.open(out / f"{stem}_color.png"))
        assert color.shape == (h, w, 3)
        assert np.asarray(Image.open(out / f"{stem}_side.png")).shape == (h, 2 * w, 3)
        assert b"element vertex" in (out / f"{stem}.ply").read_bytes()[:400]
    npy = np.load(out / "a_depth.npy")
    np.testing.assert_allclose(read_png16(out / "a_depth16.png"), npy, atol=0.0006)  # mm rounding
    info = json.loads((out / "depth_info.json").read_text())
    assert info["units"] == "metres" and info["png16_scale"] == 1000 and isinstance(info["png16_scale"], int)


def test_relative_model_says_its_output_is_not_metres(tmp_path, capsys):
    depthsmith.create_model("test_resnet", decoder="unet", output="relative").save_pretrained(tmp_path / "rel")
    _image(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--model", str(tmp_path / "rel"), "--out", str(tmp_path / "o")])
    assert code == 0
    assert re.search(r"relative.*not metres", capsys.readouterr().out)


def test_video_in_depth_video_out(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    with VideoWriter(tmp_path / "clip.mp4", fps=5) as writer:
        for _ in range(7):
            writer.write((rng.random((48, 66, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    code = main(["predict", str(tmp_path / "clip.mp4"), "--model", str(model_dir), "--out", str(out),
                 "--save", "color", "side", "png16", "--batch-size", "3"])
    assert code == 0
    frames, info = read_video(out / "clip_depth.mp4")
    frames = list(frames)
    assert len(frames) == 7 and frames[0].shape == (48, 66, 3) and info["fps"] == pytest.approx(5)
    assert list(read_video(out / "clip_side.mp4")[0])[0].shape == (48, 132, 3)
    assert len(list((out / "clip_frames").glob("*_depth16.png"))) == 7


def test_unreadable_video_is_reported(model_dir, tmp_path, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"nothing here")
    _image(tmp_path / "ok.png")
    code = main(["predict", str(tmp_path / "bad.mp4"), str(tmp_path / "ok.png"), "--model", str(model_dir),
                 "--out", str(tmp_path / "out")])
    assert code == 1
    assert "bad.mp4" in capsys.readouterr().out
    assert (tmp_path / "out" / "ok_color.png").is_file()
