"""Evaluation protocols against independent NumPy computations on real NYU Depth V2 pairs.

The reference code below is written from BTS's eval code (bts/pytorch/bts_eval.py: crop, range,
compute_errors) and, for the seed, from the seed notebook as README "Seed fidelity" describes it, not from
depthsmith: its own bilinear upsampling, crops, masks, formulas and averaging.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthsmith.evaluate import (PROTOCOLS, evaluate_predictions, format_table, get_protocol, protocol_table,
                                 write_result)

from helpers import real_dir

REAL = real_dir("metric3d_nyu")  # NYU Depth V2: not shipped (no explicit licence), see tests/helpers.py
KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")


def _load_nyu() -> list[np.ndarray]:
    paths = [REAL / f"0000{i}_depth.png" for i in range(3)]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real NYU pairs not found in {REAL}: NYU Depth V2 has no explicit licence, so it is not shipped")
    return [np.asarray(Image.open(p), dtype=np.float64) / 1000.0 for p in paths]  # 16-bit millimetres


def _bilinear(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False), edge-clamped."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, wy = axis(a.shape[0], height)
    x0, x1, wx = axis(a.shape[1], width)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def _reference_metrics(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """The standard formulas (Eigen et al. 2014, as cleinc/bts utils/eval_with_pngs.py computes them) over
    1-D arrays of valid pixels."""
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(p - g) / g), "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((p - g) ** 2)), "rmse_log": np.sqrt(np.mean(e**2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "silog": 100 * np.sqrt(np.mean(e**2) - np.mean(e) ** 2),
        "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2), "d3": np.mean(ratio < 1.25**3),
    }


def _r2(p: np.ndarray, g: np.ndarray) -> float:
    return 1 - np.sum((g - p) ** 2) / np.sum((g - g.mean()) ** 2)


def _half_res_predictions(gts: list[np.ndarray]) -> list[np.ndarray]:
    """A plausible prediction: 8 % too far, multiplicative noise, holes -> 0, at half resolution."""
    rng = np.random.default_rng(0)
    return [(g * 1.08 * np.exp(rng.normal(0, 0.1, g.shape)))[::2, ::2] for g in gts]


def test_nyu_eigen_equals_independent_numpy_on_real_nyu() -> None:
    gts = _load_nyu()
    preds = _half_res_predictions(gts)
    result = evaluate_predictions(preds, gts, protocol="nyu-eigen")

    per_image, r2 = [], []
    for pred, gt in zip(preds, gts):
        up = np.clip(_bilinear(pred, 480, 640), 1e-3, 10.0)  # holes upsampled to ~0 get clamped
        valid = np.zeros(gt.shape, bool)
        valid[45:471, 41:601] = True
        valid &= (gt > 1e-3) & (gt < 10)
        per_image.append(_reference_metrics(up[valid], gt[valid]))
        r2.append(_r2(up[valid], gt[valid]))
    for key in KEYS:
        expected = np.mean([m[key] for m in per_image])
        assert result.metrics[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), key
    assert result.metrics["r2"] == pytest.approx(np.mean(r2), rel=1e-9)
    assert result.metrics["n_images"] == 3
    for row, ref in zip(result.rows, per_image):  # per-image rows too, not only the mean
        assert row["abs_rel"] == pytest.approx(ref["abs_rel"], rel=1e-9)


def test_densedepth_protocol_pools_pixels_on_real_nyu() -> None:
    gts = _load_nyu()
    preds = _half_res_predictions(gts)
    result = evaluate_predictions(preds, gts, protocol="densedepth")
    ps, gs = [], []
    for pred, gt in zip(preds, gts):
        up = np.clip(_bilinear(pred, 480, 640), 1e-3, 10.0)[20:460, 24:616]
        g = gt[20:460, 24:616]
        valid = (g > 1e-3) & (g < 10)
        ps.append(up[valid])
        gs.append(g[valid])
    expected = _reference_metrics(np.concatenate(ps), np.concatenate(gs))
    for key in KEYS:
        assert result.metrics[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key
    per_image_mean = np.mean([r["abs_rel"] for r in result.rows])
    assert result.metrics["abs_rel"] != pytest.approx(per_image_mean, rel=1e-6)  # pooling really differs


def test_ground_truth_against_itself_is_perfect() -> None:
    gts = _load_nyu()
    for protocol in ("nyu-eigen", "densedepth", "none"):
        m = evaluate_predictions(gts, gts, protocol=protocol).metrics
        for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
            assert m[key] == pytest.approx(0.0, abs=1e-12), (protocol, key)
        assert m["d1"] == m["d2"] == m["d3"] == 1.0
        assert m["r2"] == pytest.approx(1.0)


def test_known_scaled_prediction_gives_known_abs_rel() -> None:
    gts = _load_nyu()  # max depth 8.27 m: 1.1 x gt stays below the 10 m clamp
    m = evaluate_predictions([1.1 * g for g in gts], gts, protocol="nyu-eigen").metrics
    assert m["abs_rel"] == pytest.approx(0.1, rel=1e-12)
    assert m["rmse_log"] == pytest.approx(math.log(1.1), rel=1e-12)
    assert m["log10"] == pytest.approx(math.log10(1.1), rel=1e-12)
    assert m["silog"] == pytest.approx(0.0, abs=1e-5)
    assert m["d1"] == 1.0
    # 0.6 x gt: ratio 1/0.6 = 1.667 lies between 1.25^2 = 1.5625 and 1.25^3 = 1.953.
    m = evaluate_predictions([0.6 * g for g in gts], gts, protocol="nyu-eigen").metrics
    assert m["abs_rel"] == pytest.approx(0.4, rel=1e-12)
    assert (m["d1"], m["d2"], m["d3"]) == (0.0, 0.0, 1.0)


def test_seed_protocol_equals_independent_numpy_on_real_nyu() -> None:
    """The seed's evaluate.py: x0.75, its own crop, no mask, no clamp, R^2 on 7x7/2 pooled maps."""
    gts = _load_nyu()
    preds = _half_res_predictions(gts)
    result = evaluate_predictions(preds, gts, protocol="seed")
    rows = []
    crop = [20, 460, 24, 616]  # the seed notebook's own line, sliced as it slices it
    for pred, gt in zip(preds, gts):
        p = 0.75 * _bilinear(pred, 480, 640)[crop[0]:crop[1] + 1, crop[2]:crop[3] + 1]
        g = gt[crop[0]:crop[1] + 1, crop[2]:crop[3] + 1]
        pos = g > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(g / p, p / g)  # literally the seed's: inf at holes (gt = 0)
        p = np.maximum(p, 1e-12)  # the documented floor: the seed's log10 would be -inf at p = 0
        pooled = [np.lib.stride_tricks.sliding_window_view(a, (7, 7))[::2, ::2].mean(axis=(-1, -2)) for a in (p, g)]
        rows.append({
            "abs_rel": np.mean(np.abs(g[pos] - p[pos]) / g[pos]),
            "rmse": np.sqrt(np.mean((g - p) ** 2)),  # every pixel of the crop, holes included
            "log10": np.mean(np.abs(np.log10(g[pos]) - np.log10(p[pos]))),
            "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2), "d3": np.mean(ratio < 1.25**3),
            "r2": _r2(*pooled),
        })
    for key in ("abs_rel", "rmse", "log10", "d1", "d2", "d3"):
        assert result.metrics[key] == pytest.approx(np.mean([r[key] for r in rows]), rel=1e-9), key
    kept = [r["r2"] for r in rows if 0 <= r["r2"] <= 1]
    assert result.metrics["r2"] == pytest.approx(np.mean(kept), rel=1e-9)
    assert result.metrics["n_valid"] == 3 * 441 * 593  # no mask: every pixel of the crop


def test_protocol_table_and_labels() -> None:
    assert {"nyu-eigen", "densedepth", "seed", "none", "kitti-garg", "kitti-eigen"} <= set(PROTOCOLS)
    assert PROTOCOLS["nyu-eigen"].crop == "eigen" and not PROTOCOLS["nyu-eigen"].pooled
    assert PROTOCOLS["densedepth"].pooled
    assert not PROTOCOLS["seed"].standard and not PROTOCOLS["seed"].masked
    table = protocol_table()
    assert table.count("\n") == 1 + len(PROTOCOLS) and "NON-STANDARD" in table
    with pytest.raises(ValueError, match="protocol 'none'"):
        get_protocol("nyu-eigen", max_depth=80)
    assert get_protocol("none", 0.1, 80).max_depth == 80
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("eigen")


def test_description_states_what_was_computed() -> None:
    gts = _load_nyu()
    text = evaluate_predictions(gts, gts, protocol="nyu-eigen").description
    for phrase in ("eigen crop rows 45:471, cols 41:601", "0.001 m < gt < 10 m", "clamped", "bilinear",
                   "per image, then the mean over images", "Alignment: none"):
        assert phrase in text, phrase
    assert "pooled" in evaluate_predictions(gts, gts, protocol="densedepth").description


def test_seed_is_labelled_non_standard_in_every_output(tmp_path: Path) -> None:
    gts = _load_nyu()
    result = evaluate_predictions([0.5 * g for g in gts], gts, protocol="seed")
    assert "NON-STANDARD" in format_table(result).splitlines()[0]
    assert "NON-STANDARD" in result.description
    json_path, csv_path = write_result(result, tmp_path)
    data = json.loads(json_path.read_text())
    assert data["status"] == "NON-STANDARD" and "NON-STANDARD" in data["description"]
    lines = csv_path.read_text().splitlines()
    assert lines[0].split(",")[-1] == "protocol"
    assert all(line.endswith("seed (NON-STANDARD)") for line in lines[1:]) and len(lines) == 4
    standard = evaluate_predictions(gts, gts, protocol="nyu-eigen")
    assert "NON-STANDARD" not in format_table(standard)


def test_nan_and_inf_predictions_are_replaced_and_clamped() -> None:
    gts = _load_nyu()[:1]
    pred = gts[0].copy()
    pred[100:110, 100:110] = np.nan
    pred[200:210, 200:210] = np.inf
    pred[300:310, 300:310] = -np.inf
    pred[50:60, 50:60] = 25.0
    m = evaluate_predictions([pred], gts, protocol="nyu-eigen").metrics
    assert all(math.isfinite(m[k]) for k in KEYS)
    assert 0 < m["abs_rel"] < 0.05


def test_alignment_for_relative_predictions() -> None:
    gts = _load_nyu()
    relative = [g / g.max() for g in gts]  # right up to one unknown scale per image
    with pytest.raises(ValueError, match="align"):
        evaluate_predictions(relative, gts, protocol="nyu-eigen", output="relative", align="none")
    default = evaluate_predictions(relative, gts, protocol="nyu-eigen", output="relative")  # the kind's default
    assert default.settings["align"] == "lstsq" and default.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    m = evaluate_predictions(relative, gts, protocol="nyu-eigen", output="relative", align="median").metrics
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    result = evaluate_predictions(relative, gts, protocol="nyu-eigen", output="relative", align="lstsq")
    assert result.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert "least-squares scale and shift" in result.description


@pytest.mark.parametrize("protocol", ["nyu-eigen", "seed"])
def test_a_frame_without_valid_depth_is_skipped_and_counted(protocol: str) -> None:
    gts = _load_nyu()
    gts = [gts[0], np.zeros_like(gts[1]), gts[2]]
    with pytest.warns(UserWarning, match="no valid ground-truth pixel"):
        result = evaluate_predictions(gts, gts, protocol=protocol, names=["a", "empty", "c"])
    assert [r["name"] for r in result.rows] == ["a", "c"]
    assert result.metrics["n_images"] == 2 and result.metrics["n_skipped"] == 1
    assert "1 images SKIPPED" in format_table(result)
