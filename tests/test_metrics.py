"""Depth metrics against hand-computed values and independent inline NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from depthsmith.metrics import (
    CROPS,
    METRIC_KEYS,
    MetricAccumulator,
    align_prediction,
    compute_metrics,
    crop_mask,
    r2_score,
    ssim_score,
)
from helpers import load_depth



def reference_metrics(d: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """The formulas of Eigen et al. 2014 as BTS's compute_errors (bts/pytorch/bts_eval.py) writes them, written directly on 1-D arrays of valid pixels."""
    d, g = d.astype(np.float64), g.astype(np.float64)
    e = np.log(d) - np.log(g)
    ratio = np.maximum(d / g, g / d)
    return {
        "abs_rel": np.mean(np.abs(d - g) / g),
        "sq_rel": np.mean((d - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((d - g) ** 2)),
        "rmse_log": np.sqrt(np.mean(e**2)),
        "log10": np.mean(np.abs(np.log10(d) - np.log10(g))),
        "silog": 100 * np.sqrt(np.mean(e**2) - np.mean(e) ** 2),
        "d1": np.mean(ratio < 1.25),
        "d2": np.mean(ratio < 1.25**2),
        "d3": np.mean(ratio < 1.25**3),
        # Depth-Anything-V2 metric_depth/util/metric.py: sqrt(mean(e^2) - 0.5 * mean(e)^2), no x100.
        "silog_da": np.sqrt(np.mean(e**2) - 0.5 * np.mean(e) ** 2),
    }


def assert_metrics(result: dict, expected: dict, tol: float = 1e-10) -> None:
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=tol, rel=tol), key


# ---------------------------------------------------------------- hand-computed cases


def test_tiny_hand_computed() -> None:
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    pred = np.array([[2.0, 3.0], [2.0, 8.0]])
    # differences 1, 1, -2, 0; ratios max(d/g, g/d) = 2, 1.5, 2, 1; e = ln2, ln1.5, -ln2, 0
    ln2, ln15 = math.log(2), math.log(1.5)
    mean_e2 = (2 * ln2**2 + ln15**2) / 4
    expected = {
        "abs_rel": (1 / 1 + 1 / 2 + 2 / 4 + 0) / 4,  # 0.5
        "sq_rel": (1 / 1 + 1 / 2 + 4 / 4 + 0) / 4,  # 0.625
        "rmse": math.sqrt((1 + 1 + 4 + 0) / 4),
        "rmse_log": math.sqrt(mean_e2),
        "log10": (2 * math.log10(2) + math.log10(1.5)) / 4,
        "silog": 100 * math.sqrt(mean_e2 - (ln15 / 4) ** 2),
        "d1": 1 / 4,  # only ratio 1 < 1.25
        "d2": 2 / 4,  # 1.5 < 1.5625
        "d3": 2 / 4,  # 2 > 1.953125
    }
    result = compute_metrics(pred, gt)
    assert_metrics(result, expected, tol=1e-12)
    assert result["abs_rel"] == pytest.approx(0.5) and result["sq_rel"] == pytest.approx(0.625)
    assert result["n_valid"] == 4
    assert set(result) == set(METRIC_KEYS) | {"n_valid"}


def test_invalid_gt_pixels_are_excluded() -> None:
    # Same 4 pixels as above plus a hole (0), a NaN, an inf and one beyond max_depth.
    gt = np.array([[1.0, 2.0, 0.0, np.nan], [4.0, 8.0, np.inf, 12.0]])
    pred = np.array([[2.0, 3.0, 5.0, 5.0], [2.0, 8.0, 5.0, 5.0]])
    result = compute_metrics(pred, gt)
    assert result["n_valid"] == 4
    assert result["abs_rel"] == pytest.approx(0.5, abs=1e-12)
    # And with an explicit mask removing the only perfect pixel (8 m): abs_rel = 2 / 3.
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 1]], dtype=bool)
    assert compute_metrics(pred, gt, mask=mask)["abs_rel"] == pytest.approx(2 / 3, abs=1e-12)


def test_prediction_nan_inf_replaced_then_clamped() -> None:
    gt = np.array([[1.0, 2.0, 2.0]])
    pred = np.array([[np.nan, np.inf, 0.1]])
    # NaN -> 0.5 (min), inf -> 4 (max), 0.1 clamped to 0.5: |0.5-1|/1, |4-2|/2, |0.5-2|/2
    result = compute_metrics(pred, gt, min_depth=0.5, max_depth=4.0)
    assert result["abs_rel"] == pytest.approx((0.5 + 1.0 + 0.75) / 3, abs=1e-12)


def test_no_valid_pixel_raises() -> None:
    with pytest.raises(ValueError, match="no valid"):
        compute_metrics(np.ones((4, 4)), np.zeros((4, 4)))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="resize"):
        compute_metrics(np.ones((4, 4)), np.ones((4, 5)))


# ---------------------------------------------------------------- real NYU maps


@pytest.fixture
def nyu_gt() -> np.ndarray:
    return load_depth("metric3d_nyu/00001_depth.png")


def test_gt_vs_gt_is_perfect(nyu_gt: np.ndarray) -> None:
    result = compute_metrics(nyu_gt, nyu_gt, crop="eigen")
    assert result["abs_rel"] == 0 and result["rmse"] == 0 and result["silog"] == 0
    assert result["d1"] == 1 and result["d3"] == 1


def test_scaled_prediction(nyu_gt: np.ndarray) -> None:
    assert nyu_gt.max() * 1.1 < 10  # so that clamping does not interfere
    result = compute_metrics(1.1 * nyu_gt.astype(np.float64), nyu_gt)
    assert result["abs_rel"] == pytest.approx(0.1, abs=1e-12)
    assert result["rmse_log"] == pytest.approx(math.log(1.1), abs=1e-12)
    assert result["silog"] == pytest.approx(0.0, abs=1e-5)
    assert result["d1"] == 1


def test_constant_prediction_matches_inline_numpy(nyu_gt: np.ndarray) -> None:
    gt = load_depth("metric3d_nyu/00000_depth.png").astype(np.float64)
    pred = np.full_like(gt, 2.5)
    # Inline protocol: 1e-3 < gt < 10, eigen crop rows 45:471 cols 41:601.
    valid = (gt > 1e-3) & (gt < 10)
    crop = np.zeros_like(valid)
    crop[45:471, 41:601] = True
    valid &= crop
    result = compute_metrics(pred, gt, crop="eigen")
    assert result["n_valid"] == valid.sum() < crop.sum()  # holes inside the crop are excluded
    assert_metrics(result, reference_metrics(pred[valid], gt[valid]))


def test_torch_input_same_as_numpy(nyu_gt: np.ndarray) -> None:
    pred = np.clip(nyu_gt * 0.9 + 0.2, 0, None)
    from_numpy = compute_metrics(pred, nyu_gt, crop="eigen")
    from_torch = compute_metrics(torch.from_numpy(pred)[None, None], torch.from_numpy(nyu_gt), crop="eigen")
    assert_metrics(from_torch, {k: from_numpy[k] for k in METRIC_KEYS})


# ---------------------------------------------------------------- crops


def test_eigen_crop_excludes_the_border() -> None:
    gt = np.full((480, 640), 9.0)  # border: wrong on purpose
    gt[45:471, 41:601] = 2.0
    pred = np.full((480, 640), 2.0)
    cropped = compute_metrics(pred, gt, crop="eigen")
    assert cropped["abs_rel"] == 0 and cropped["d1"] == 1
    assert cropped["n_valid"] == (471 - 45) * (601 - 41)
    assert compute_metrics(pred, gt)["abs_rel"] > 0.1
    # The same crop given as an explicit tuple.
    assert compute_metrics(pred, gt, crop=(45, 471, 41, 601))["n_valid"] == cropped["n_valid"]


def test_named_crops() -> None:
    assert CROPS["eigen"] == (45, 471, 41, 601)
    assert CROPS["densedepth"] == (20, 460, 24, 616)
    assert crop_mask((480, 640), "densedepth").sum() == 440 * 592
    # Scaled proportionally (rounded half up) for other sizes: 22.5->23, 235.5->236, 20.5->21, 300.5->301.
    rows, cols = np.nonzero(crop_mask((240, 320), "eigen", crop_mode="scaled"))
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (23, 236, 21, 301)
    # Literal, as BTS / ZoeDepth / MMSeg slice: gt[45:471, 41:601] of a 224 x 224 map is rows 45:224, cols 41:224.
    rows, cols = np.nonzero(crop_mask((224, 224), "eigen", crop_mode="literal"))
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 224, 41, 224)
    with pytest.raises(ValueError, match="crop_mode='scaled'.*'literal'"):
        crop_mask((224, 224), "eigen")  # the default refuses to guess
    with pytest.raises(ValueError, match="eigen"):
        crop_mask((480, 640), "garg")
    with pytest.raises(ValueError, match="does not fit"):
        crop_mask((100, 100), (45, 471, 41, 601))


# ---------------------------------------------------------------- accumulator


def two_images() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    g1 = rng.uniform(0.5, 5, (20, 30))
    p1 = g1 * rng.uniform(0.8, 1.3, g1.shape)
    g2 = rng.uniform(1, 9, (20, 30))
    g2[rng.random(g2.shape) < 0.7] = 0  # mostly holes: far fewer valid pixels
    p2 = np.full_like(g2, 3.0)
    return [(p1, g1), (p2, g2)]


def test_accumulator_mean_vs_pooled() -> None:
    images = two_images()
    acc = MetricAccumulator()
    for i, (p, g) in enumerate(images):
        acc.update(p, g, name=f"img{i}")
    per_image = [reference_metrics(p[g > 1e-3], g[g > 1e-3]) for p, g in images]
    pooled_ref = reference_metrics(
        np.concatenate([p[g > 1e-3] for p, g in images]), np.concatenate([g[g > 1e-3] for p, g in images])
    )
    mean = acc.compute()
    pooled = acc.compute(pooled=True)
    assert_metrics(mean, {k: np.mean([m[k] for m in per_image]) for k in METRIC_KEYS})
    assert_metrics(pooled, pooled_ref, tol=1e-12)
    assert abs(mean["abs_rel"] - pooled["abs_rel"]) > 0.05  # the two conventions really differ
    assert mean["n_images"] == 2 and mean["n_valid"] == sum(int((g > 1e-3).sum()) for _, g in images)
    assert [row["name"] for row in acc.rows] == ["img0", "img1"]
    assert acc.rows[1]["n_valid"] < acc.rows[0]["n_valid"]


def test_accumulator_batch_and_defaults() -> None:
    images = two_images()
    pred = torch.tensor(np.stack([p for p, _ in images]))[:, None]
    gt = torch.tensor(np.stack([g for _, g in images]))[:, None]
    acc = MetricAccumulator(pooled=True, max_depth=4.0)
    acc.update_batch(pred, gt, names=["a", "b"])
    g = np.concatenate([g.ravel() for _, g in images])
    p = np.clip(np.concatenate([p.ravel() for p, _ in images]), 1e-3, 4.0)
    valid = (g > 1e-3) & (g < 4.0)
    assert_metrics(acc.compute(), reference_metrics(p[valid], g[valid]), tol=1e-12)
    with pytest.raises(ValueError):
        MetricAccumulator().compute()


# ---------------------------------------------------------------- alignment, R^2, SSIM


def test_align_median_and_lstsq_recover(nyu_gt: np.ndarray) -> None:
    gt = nyu_gt.astype(np.float64)
    valid = gt > 0
    np.testing.assert_allclose(align_prediction(0.37 * gt, gt, valid, "median")[valid], gt[valid], rtol=1e-12)
    np.testing.assert_allclose(align_prediction((gt - 0.5) / 2.3, gt, valid, "lstsq")[valid], gt[valid], atol=1e-9)
    # Metrics of a scaled relative prediction after median alignment are perfect.
    result = compute_metrics(0.2 * gt, gt, crop="eigen", align="median")
    assert result["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lstsq"):
        align_prediction(gt, gt, valid, "mean")


def test_align_lstsq_only_uses_masked_pixels() -> None:
    gt = np.array([[1.0, 2.0, 3.0, 0.0]])
    pred = np.array([[0.0, 0.5, 1.0, 99.0]])  # gt = 2 * pred + 1 on the first three
    aligned = align_prediction(pred, gt, gt > 0, "lstsq")
    np.testing.assert_allclose(aligned[0, :3], [1.0, 2.0, 3.0], atol=1e-12)


def test_r2_hand_computed() -> None:
    gt = np.array([[1.0, 2.0], [3.0, 4.0]])
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    # SS_res = 1, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5 -> 0.8
    assert r2_score(pred, gt) == pytest.approx(0.8, abs=1e-12)
    mask = np.array([[1, 1], [1, 0]], dtype=bool)
    assert r2_score(pred, gt, mask) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="constant"):
        r2_score(pred, np.ones((2, 2)))


def test_ssim_score_matches_skimage_on_depth(nyu_gt: np.ndarray) -> None:
    other = load_depth("metric3d_nyu/00002_depth.png")
    expected = structural_similarity(
        other.astype(np.float64) / 10, nyu_gt.astype(np.float64) / 10,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
    )  # fmt: skip
    assert ssim_score(other, nyu_gt, max_depth=10.0) == pytest.approx(expected, abs=1e-4)


def test_accumulator_rejects_unknown_options() -> None:
    with pytest.raises(TypeError, match="max_depth"):
        MetricAccumulator(max_detph=10.0)
