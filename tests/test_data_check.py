"""`data check` statistics and preview, and the colour maps of viz."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from depthsmith.data.check import check_dataset, format_report
from depthsmith.viz import colorize, save_grid
from helpers import make_paired_csv, need_real, real_pairs


def test_check_reports_stats_bad_files_and_writes_preview(tmp_path):
    need_real()
    pairs = real_pairs(["metric3d_nyu", "open3d_tum"], size=(60, 80))
    csv = make_paired_csv(tmp_path / "data", pairs)
    (tmp_path / "data" / "depth" / "00001.png").write_bytes(b"broken")
    stats = check_dataset({"type": "paired", "csv_path": str(csv), "encoding": "png_mm"}, tmp_path / "out")
    assert (stats["pairs"], stats["checked"], stats["readable"]) == (4, 4, 3)
    assert stats["resolutions"] == {"60x80": 3}
    assert len(stats["unreadable"]) == 1 and "00001.png" in stats["unreadable"][0]["reason"]
    good = [p for k, p in enumerate(pairs) if k != 1]
    valid = np.concatenate([mm[mm > 0] for _, mm, _ in good]) / 1000.0
    assert stats["depth_m"]["min"] == pytest.approx(valid.min(), abs=1e-6)
    assert stats["depth_m"]["max"] == pytest.approx(valid.max(), abs=1e-6)
    ratios = [float((mm > 0).mean()) for _, mm, _ in good]
    assert stats["valid_ratio"]["mean"] == pytest.approx(np.mean(ratios))
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["readable"] == 3
    preview = np.asarray(Image.open(tmp_path / "out" / "preview.png"))
    assert preview.ndim == 3 and preview.shape[0] > 100
    report = format_report(stats)
    for text in ("4 listed", "3 readable", "1 unreadable", "60x80 (3)", "depth (m)", "valid pixels", "00001.png"):
        assert text in report


def test_check_with_max_samples_spreads_over_the_dataset(tmp_path):
    stats = check_dataset({"type": "synthetic", "num_samples": 50, "size": [24, 32]}, tmp_path, max_samples=5)
    assert stats["pairs"] == 50 and stats["checked"] == 5 and stats["valid_ratio"]["min"] == 1.0
    assert 0.3 < stats["depth_m"]["min"] < stats["depth_m"]["p50"] < stats["depth_m"]["max"] < 10.0


def test_colorize_inferno_r_and_grey_holes():
    from matplotlib import colormaps

    depth = np.array([[1.0, 2.0, 3.0], [0.0, np.nan, np.inf]], dtype=np.float32)
    rgb = colorize(depth)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    lut = colormaps["inferno_r"]
    assert np.abs(rgb[0, 0].astype(int) - np.rint(np.array(lut(0.0)[:3]) * 255)).max() <= 1  # near: bright yellow
    assert np.abs(rgb[0, 2].astype(int) - np.rint(np.array(lut(1.0)[:3]) * 255)).max() <= 1  # far: dark
    assert rgb[0, 0].sum() > rgb[0, 2].sum()
    assert (rgb[1] == 128).all()
    shared = colorize(depth, vmin=0.0, vmax=6.0, mask=np.array([[1, 1, 0], [1, 1, 1]], bool))
    assert (shared[0, 2] == 128).all() and not (shared[0, 0] == rgb[0, 0]).all()


def test_save_grid_mixes_rgb_and_depth(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    depth = np.linspace(0.5, 5, 1200, dtype=np.float32).reshape(1, 30, 40)
    path = save_grid(tmp_path / "g.png", [[rgb, depth], [rgb, depth * 2]], col_titles=["RGB", "depth"])
    assert Image.open(path).size[0] > 200
