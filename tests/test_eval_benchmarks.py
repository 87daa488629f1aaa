"""Benchmarks beyond NYU: readers in each dataset's own packaging, and every new protocol against an
independent NumPy computation of its crop, mask and formulas at the dataset's native size.

The references below are written from the peers' published code (BTS's `compute_errors` and eval
mask, ZoeDepth's literal Eigen slice, MiDaS' disparity alignment), not from depthsmith.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthsmith.data import build_dataset
from depthsmith.evaluate import PROTOCOLS, Protocol, evaluate_predictions
from depthsmith.evaluate.protocols import register_protocol

KITTI_SIZE = (375, 1242)


def bts_compute_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """BTS's compute_errors (bts/pytorch/bts_eval.py), from its published formulas."""
    thresh = np.maximum((gt / pred), (pred / gt))
    d1, d2, d3 = (thresh < 1.25).mean(), (thresh < 1.25**2).mean(), (thresh < 1.25**3).mean()
    rms = np.sqrt(((gt - pred) ** 2).mean())
    log_rms = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    err = np.log(pred) - np.log(gt)
    silog = np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100
    log10 = np.mean(np.abs(np.log10(pred) - np.log10(gt)))
    return dict(silog=silog, log10=log10, abs_rel=abs_rel, sq_rel=sq_rel, rmse=rms, rmse_log=log_rms,
                d1=d1, d2=d2, d3=d3)


def bts_eval(pred: np.ndarray, gt: np.ndarray, lo: float, hi: float, crop: tuple[float, ...] | None,
             eigen_slice: tuple[int, ...] | None = None) -> dict[str, float]:
    """BTS / ZoeDepth eval of one image: clamp, inf/nan, valid range, then the crop mask."""
    pred = pred.copy()
    pred[pred < lo] = lo
    pred[pred > hi] = hi
    pred[np.isinf(pred)] = hi
    pred[np.isnan(pred)] = lo
    valid = np.logical_and(gt > lo, gt < hi)
    h, w = gt.shape
    eval_mask = np.zeros(valid.shape, dtype=bool)
    if crop is not None:  # fractions, as BTS writes the Garg / Eigen KITTI crops
        eval_mask[int(crop[0] * h):int(crop[1] * h), int(crop[2] * w):int(crop[3] * w)] = True
    elif eigen_slice is not None:  # ZoeDepth: eval_mask[45:471, 41:601] = 1 whatever the size
        t, b, l, r = eigen_slice
        eval_mask[t:b, l:r] = True
    else:
        eval_mask[:] = True
    valid &= eval_mask
    return bts_compute_errors(gt[valid], pred[valid])


def _sparse_lidar(rng: np.random.Generator, shape=KITTI_SIZE) -> np.ndarray:
    """KITTI-like ground truth: about 5% of the pixels, in the lower two thirds, 2-85 m."""
    gt = np.zeros(shape)
    hit = rng.random(shape) < 0.05
    hit[: shape[0] // 3] = False
    gt[hit] = rng.uniform(2.0, 85.0, hit.sum())
    return np.round(gt * 256) / 256  # what a 16-bit PNG / 256 can hold


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _check(result, reference: dict[str, float], tol: float = 1e-6) -> None:
    for key, value in reference.items():
        assert result.metrics[key] == pytest.approx(value, rel=tol, abs=tol), key


@pytest.mark.parametrize("protocol, crop, hi", [
    ("kitti-garg", (0.40810811, 0.99189189, 0.03594771, 0.96405229), 80.0),
    ("kitti-eigen", (0.3324324, 0.91351351, 0.0359477, 0.96405229), 80.0),
    ("kitti-eigen-cap50", (0.3324324, 0.91351351, 0.0359477, 0.96405229), 50.0),
])
def test_kitti_protocols_match_bts_compute_errors(protocol, crop, hi):
    rng = np.random.default_rng(0)
    gts = [_sparse_lidar(rng) for _ in range(3)]
    preds = [np.where(g > 0, g, 20.0) * rng.uniform(0.8, 1.25, KITTI_SIZE) + rng.normal(0, 0.5, KITTI_SIZE)
             for g in gts]
    preds[1][0, 0], preds[2][5, 5] = np.inf, np.nan  # BTS's inf / nan handling
    result = evaluate_predictions(preds, gts, protocol=protocol)
    _check(result, _mean([bts_eval(p, g, 1e-3, hi, crop) for p, g in zip(preds, gts)]))


def test_kitti_prediction_at_model_size_is_upsampled_to_the_lidar_size_before_the_crop():
    rng = np.random.default_rng(1)
    gt = _sparse_lidar(rng)
    small = rng.uniform(5, 30, (176, 608))  # a model's 352x1216-style output, halved
    result = evaluate_predictions([small], [gt], protocol="kitti-garg")
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.from_numpy(small)[None, None], KITTI_SIZE, mode="bilinear",
                       align_corners=False)[0, 0].numpy()
    _check(result, bts_eval(up, gt, 1e-3, 80.0, PROTOCOL_FRACTIONS["kitti-garg"]))


PROTOCOL_FRACTIONS = {"kitti-garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229)}
EIGEN = (45, 471, 41, 601)


@pytest.mark.parametrize("protocol, shape, lo, hi, crop, eigen_slice, crop_mode", [
    ("ibims", (480, 640), 0.0, 10.0, None, EIGEN, "exact"),
    ("sunrgbd", (530, 730), 0.0, 8.0, None, EIGEN, "literal"),
    ("diode-indoor", (768, 1024), 1e-3, 10.0, None, EIGEN, "literal"),
    ("diode-outdoor", (768, 1024), 1e-3, 80.0, PROTOCOL_FRACTIONS["kitti-garg"], None, "exact"),
])
def test_zero_shot_protocols_match_zoedepths_evaluation_at_native_size(protocol, shape, lo, hi, crop,
                                                                        eigen_slice, crop_mode):
    rng = np.random.default_rng(2)
    gts, preds = [], []
    for _ in range(2):
        g = rng.uniform(0.5, 1.2 * hi, shape)
        g[rng.random(shape) < 0.1] = 0.0  # holes
        gts.append(g)
        preds.append(np.where(g > 0, g, 3.0) * rng.uniform(0.7, 1.4, shape))
    result = evaluate_predictions(preds, gts, protocol=protocol, crop_mode=crop_mode)
    # ZoeDepth clamps to [min_depth_eval, max_depth_eval]; with min 0 the log needs a floor: ours is 1e-12
    # (valid gt > 1e-12 instead of gt > 0 changes nothing here: no 0 < gt <= 1e-12 pixel).
    reference = _mean([bts_eval(p, g, max(lo, 1e-12), hi, crop, eigen_slice) for p, g in zip(preds, gts)])
    _check(result, reference)


def test_eth3d_protocol_at_native_size_has_no_crop_and_no_upper_bound():
    rng = np.random.default_rng(3)
    shape = (4032, 6048)
    gt = rng.uniform(0.5, 120.0, shape).astype(np.float32)
    gt[rng.random(shape) < 0.3] = 0.0
    pred = (gt * rng.uniform(0.9, 1.1, shape)).astype(np.float32) + 0.1
    result = evaluate_predictions([pred], [gt], protocol="eth3d")
    _check(result, bts_eval(pred.astype(np.float64), gt.astype(np.float64), 1e-5, np.inf, None))


def test_a_480x640_crop_on_other_sizes_must_be_chosen_and_literal_matches_zoedepths_slice():
    rng = np.random.default_rng(4)
    gt = rng.uniform(0.5, 9.0, (224, 224))
    pred = gt * rng.uniform(0.6, 1.5, gt.shape)
    with pytest.raises(ValueError, match="crop_mode='scaled'"):
        evaluate_predictions([pred], [gt], protocol="nyu-eigen")
    literal = evaluate_predictions([pred], [gt], protocol="nyu-eigen", crop_mode="literal")
    _check(literal, bts_eval(pred, gt, 1e-3, 10.0, None, EIGEN))
    scaled = evaluate_predictions([pred], [gt], protocol="nyu-eigen", crop_mode="scaled")
    assert scaled.metrics["n_valid"] != literal.metrics["n_valid"]  # the two differ: the user must choose
    assert "sliced literally" in literal.description and "scaled proportionally" in scaled.description


def test_disparity_alignment_recovers_an_affine_disparity_prediction():
    """MiDaS-style: the model predicts s / depth + t; aligning in disparity space is exact, in depth space not."""
    rng = np.random.default_rng(5)
    gt = rng.uniform(1.0, 9.0, (48, 64))
    pred = 1.0 / (0.3 / gt + 0.05)  # a depth whose inverse is affine in the true disparity
    disp = evaluate_predictions([pred], [gt], protocol="none", align="lstsq_disparity", output="relative")
    depth = evaluate_predictions([pred], [gt], protocol="none", align="lstsq", output="relative")
    assert disp.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-9) and disp.metrics["d1"] == 1.0
    assert depth.metrics["abs_rel"] > 0.01
    assert "DISPARITY space" in disp.description


def test_silog_da_is_depth_anythings_formula():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    pred = np.array([[2.0, 3.0], [2.0, 8.0]])
    e = np.log(pred) - np.log(gt)
    result = evaluate_predictions([pred], [gt], protocol="none")
    assert result.metrics["silog_da"] == pytest.approx(np.sqrt(np.mean(e**2) - 0.5 * np.mean(e) ** 2))
    assert result.metrics["silog"] == pytest.approx(100 * np.sqrt(np.mean(e**2) - np.mean(e) ** 2))


def test_a_new_protocol_is_one_registered_entry():
    name = "test-half-range"
    try:
        register_protocol(Protocol(name, "test", "a test protocol: 1-4 m, no crop, pooled", min_depth=1.0,
                                   max_depth=4.0, pooled=True))
        gt = np.array([[0.5, 2.0], [3.0, 6.0]])
        pred = np.array([[0.5, 4.0], [3.0, 1.0]])
        result = evaluate_predictions([pred], [gt], protocol=name)
        assert result.metrics["n_valid"] == 2  # 2 and 3 m only
        assert result.metrics["abs_rel"] == pytest.approx((2 / 2 + 0) / 2)
        with pytest.raises(ValueError, match="already registered"):
            register_protocol(Protocol(name, "x", "y"))
    finally:
        if name in PROTOCOLS:
            PROTOCOLS.remove(name)


# -- readers, each in its own packaging ------------------------------------------------------------
def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(rng, shape) -> np.ndarray:
    return rng.integers(0, 255, (*shape, 3), dtype=np.uint8)


def test_kitti_reader_takes_eigen_and_bts_lists_and_counts_frames_without_ground_truth(tmp_path):
    rng = np.random.default_rng(6)
    raw, gts = tmp_path / "raw", tmp_path / "gt"
    drive = "2011_09_26_drive_0002_sync"
    depth = _sparse_lidar(rng, (40, 120))
    for frame in (5, 6):
        _png(raw / "2011_09_26" / drive / "image_02" / "data" / f"{frame:010d}.png", _rgb(rng, (40, 120)))
    _png(gts / "train" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000005.png",
         np.round(depth * 256).astype(np.uint16))
    eigen = tmp_path / "eigen_test_files.txt"
    eigen.write_text(f"2011_09_26/{drive} 5 l\n2011_09_26/{drive} 6 l\n")
    ds = build_dataset({"type": "kitti", "data_path": str(raw), "gt_path": str(gts), "filenames_file": str(eigen)})
    assert len(ds) == 1 and ds.without_depth == 1  # frame 6 has no LiDAR ground truth
    sample = ds[0]
    np.testing.assert_allclose(sample["depth"][0].numpy(), depth, atol=1e-6)  # value / 256, 0 = no return
    assert sample["mask"][0].numpy().sum() == (depth > 0).sum()
    bts = tmp_path / "bts.txt"
    bts.write_text(f"2011_09_26/{drive}/image_02/data/0000000005.png train/{drive}/proj_depth/groundtruth/"
                   f"image_02/0000000005.png 721.5377\n2011_09_26/{drive}/image_02/data/0000000006.png None 721.5377\n")
    ds2 = build_dataset({"type": "kitti", "data_path": str(raw), "gt_path": str(gts), "filenames_file": str(bts)})
    assert len(ds2) == 1 and ds2.without_depth == 1 and ds2.focals == [721.5377]


def test_diode_reader_applies_its_mask(tmp_path):
    rng = np.random.default_rng(7)
    scan = tmp_path / "val" / "indoors" / "scene_00019" / "scan_00183"
    stem = "00019_00183_indoors_000_010"
    _png(scan / f"{stem}.png", _rgb(rng, (24, 32)))
    depth = rng.uniform(0.6, 9.0, (24, 32, 1)).astype(np.float32)
    mask = (rng.random((24, 32)) > 0.2).astype(np.float32)
    np.save(scan / f"{stem}_depth.npy", depth)
    np.save(scan / f"{stem}_depth_mask.npy", mask)
    ds = build_dataset({"type": "diode", "path": str(tmp_path / "val"), "split": "indoors"})
    got = ds[0]["depth"][0].numpy()
    np.testing.assert_allclose(got, np.where(mask > 0, depth[..., 0], 0.0))
    with pytest.raises(Exception, match="outdoor"):
        build_dataset({"type": "diode", "path": str(tmp_path / "val"), "split": "outdoor"})


def test_ibims_reader_scales_to_50_m_and_applies_both_masks(tmp_path):
    rng = np.random.default_rng(8)
    stored = rng.integers(1, 65535, (30, 40), dtype=np.uint16)
    invalid = (rng.random((30, 40)) > 0.1).astype(np.uint8)
    transp = (rng.random((30, 40)) > 0.1).astype(np.uint8)
    _png(tmp_path / "rgb" / "corridor_01.png", _rgb(rng, (30, 40)))
    _png(tmp_path / "depth" / "corridor_01.png", stored)
    _png(tmp_path / "mask_invalid" / "corridor_01.png", invalid)
    _png(tmp_path / "mask_transp" / "corridor_01.png", transp)
    (tmp_path / "imagelist.txt").write_text("corridor_01\n")
    got = build_dataset({"type": "ibims", "path": str(tmp_path)})[0]["depth"][0].numpy()
    expected = np.where((invalid > 0) & (transp > 0), stored / 65535.0 * 50.0, 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_sunrgbd_reader_unrotates_the_bits(tmp_path):
    rng = np.random.default_rng(9)
    mm = rng.integers(500, 8000, (20, 28)).astype(np.uint16)
    rotated = ((mm << 3) | (mm >> 13)).astype(np.uint16)  # SUN RGB-D stores mm rotated left by 3 bits
    sample = tmp_path / "kv2" / "kinect2data" / "000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize"
    _png(sample / "image" / "0000103.jpg", _rgb(rng, (20, 28)))
    _png(sample / "depth_bfx" / "0000103.png", rotated)
    got = build_dataset({"type": "sunrgbd", "path": str(tmp_path)})[0]["depth"][0].numpy()
    np.testing.assert_allclose(got, mm / 1000.0, rtol=1e-6)


def test_eth3d_reader_reads_raw_float32_with_inf_holes(tmp_path):
    rng = np.random.default_rng(10)
    depth = rng.uniform(0.5, 60.0, (12, 18)).astype("<f4")
    depth[rng.random(depth.shape) < 0.3] = np.inf
    scene = tmp_path / "courtyard"
    _png(scene / "images" / "dslr_images" / "DSC_0286.JPG", _rgb(rng, (12, 18)))
    (scene / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    depth.tofile(scene / "ground_truth_depth" / "dslr_images" / "DSC_0286.JPG")
    ds = build_dataset({"type": "eth3d", "path": str(tmp_path), "height": 12, "width": 18})
    got = ds[0]["depth"][0].numpy()
    np.testing.assert_allclose(got, np.where(np.isfinite(depth), depth, 0.0))
    wrong = build_dataset({"type": "eth3d", "path": str(tmp_path)})  # the default 4032 x 6048
    with pytest.raises(Exception, match="DSC_0286.JPG.*expected 4032 x 6048"):
        wrong[0]


def test_cityscapes_disparity_becomes_depth_with_the_cameras_baseline_and_focal(tmp_path):
    rng = np.random.default_rng(11)
    stored = rng.integers(0, 30000, (16, 32)).astype(np.uint16)
    stem, city = "frankfurt_000000_000294", "frankfurt"
    _png(tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", _rgb(rng, (16, 32)))
    _png(tmp_path / "disparity" / "val" / city / f"{stem}_disparity.png", stored)
    cam = tmp_path / "camera" / "val" / city / f"{stem}_camera.json"
    cam.parent.mkdir(parents=True)
    cam.write_text(json.dumps({"extrinsic": {"baseline": 0.209313}, "intrinsic": {"fx": 2262.52}}))
    got = build_dataset({"type": "cityscapes", "path": str(tmp_path), "split": "val"})[0]["depth"][0].numpy()
    disparity = (stored.astype(np.float64) - 1) / 256
    expected = np.where((stored > 0) & (disparity > 0), 0.209313 * 2262.52 / np.where(disparity > 0, disparity, 1), 0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_eval_cli_prints_one_table_for_several_datasets(tmp_path, capsys):
    import torch

    import depthsmith
    from depthsmith.commands.evaluate import evaluate_cli

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    depthsmith.create_model("test_resnet", decoder_kwargs={"filters": [16, 8, 8, 8, 8]}).save_pretrained(model_dir)
    configs = []
    for name, protocol in (("rooms", "none"), ("rooms-nyu", "nyu-eigen")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"type: synthetic\nnum_samples: 2\nsize: [48, 64]\nseed: 3\nprotocol: {protocol}\n"
                        + ("crop_mode: scaled\n" if protocol == "nyu-eigen" else ""))
        configs.append(str(path))
    code = evaluate_cli([str(model_dir)], configs, out_dir=tmp_path / "out", device="cpu")
    assert code == 0
    table = (tmp_path / "out" / "summary.md").read_text()
    rows = [r for r in table.splitlines() if r.endswith("| measured here |")]
    assert len(rows) == 2 and "| rooms | none | 2 |" in rows[0] and "| rooms-nyu | nyu-eigen | 2 |" in rows[1]
    quoted = [r for r in table.splitlines() if r.endswith("| from the paper |")]
    assert any(r.startswith("| BTS (DenseNet-161) | - | nyu-eigen |") and "| 0.110 |" in r for r in quoted)
    assert table in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("*__rooms/metrics.json"))) == 1  # one folder per (model, dataset)


def test_published_results_are_per_registered_protocol_with_a_source():
    from importlib import resources

    from depthsmith.evaluate import published

    files = [p for p in (resources.files("depthsmith") / "results").iterdir() if p.name.endswith(".csv")]
    assert {p.name[:-4] for p in files} <= set(PROTOCOLS) and len(files) >= 7
    for f in files:
        rows = published(f.name[:-4])
        assert rows, f.name
        for row in rows:
            assert row["source"] and row["method"]
            for key in ("abs_rel", "d1"):  # every table of the field prints these two
                assert row[key] is not None and 0 < row[key] < 10, (f.name, row["method"], key)
            assert row["d1"] <= 1 and (row["d2"] is None or row["d1"] <= row["d2"] <= 1)
    bts = next(r for r in published("nyu-eigen") if r["method"] == "BTS")
    assert (bts["abs_rel"], bts["rmse"], bts["d1"]) == (0.110, 0.392, 0.885)  # BTS, arXiv:1907.10326, NYU table
    da = next(r for r in published("ibims") if r["method"].startswith("Depth Anything"))
    assert (da["abs_rel"], da["d1"]) == (0.150, 0.714)  # Depth Anything's metric_depth README


def test_readme_protocol_table_is_the_registry():
    from depthsmith.evaluate import protocol_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- protocol-table -->\n", 1)[1].split("\n<!-- /protocol-table -->", 1)[0]
    assert block == protocol_table()  # regenerate README's table from the registry after adding a protocol


def _kitti_fixture(root: Path, rng) -> dict:
    """A KITTI Eigen-list layout at the LiDAR size, one frame with ground truth."""
    drive = "2011_09_26_drive_0002_sync"
    _png(root / "raw" / "2011_09_26" / drive / "image_02" / "data" / "0000000005.png", _rgb(rng, KITTI_SIZE))
    _png(root / "gt" / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000005.png",
         np.round(_sparse_lidar(rng) * 256).astype(np.uint16))
    (root / "eigen.txt").write_text(f"2011_09_26/{drive} 5 l\n")
    return {"type": "kitti", "data_path": str(root / "raw"), "gt_path": str(root / "gt"),
            "filenames_file": str(root / "eigen.txt"), "protocol": "kitti-garg"}


def _diode_fixture(root: Path, rng) -> dict:
    scan = root / "val" / "indoors" / "scene_00019" / "scan_00183"
    _png(scan / "a.png", _rgb(rng, (768, 1024)))
    np.save(scan / "a_depth.npy", rng.uniform(0.6, 9.0, (768, 1024, 1)).astype(np.float32))
    np.save(scan / "a_depth_mask.npy", np.ones((768, 1024), np.float32))
    return {"type": "diode", "path": str(root / "val"), "protocol": "diode-indoor", "crop_mode": "literal"}


def test_cli_eval_on_nyu_kitti_and_diode_prints_one_table(tmp_path, capsys):
    import torch
    import yaml

    import depthsmith
    from depthsmith.cli import main
    from helpers import make_nyu_mat

    rng = np.random.default_rng(12)
    torch.manual_seed(0)
    model_dir = tmp_path / "my-model"
    depthsmith.create_model("test_resnet", decoder_kwargs={"filters": [16, 8, 8, 8, 8]}).save_pretrained(model_dir)
    pairs = [(_rgb(rng, (480, 640)), rng.integers(500, 9000, (480, 640)), "room")]
    mat, _ = make_nyu_mat(tmp_path / "nyu", pairs, [1], [1])
    configs = {"nyu": {"type": "nyu_mat", "path": str(mat), "split": "test", "protocol": "nyu-eigen"},
               "kitti": _kitti_fixture(tmp_path / "kitti", rng), "diode": _diode_fixture(tmp_path / "diode", rng)}
    args = ["eval", "--model", str(model_dir), "--out", str(tmp_path / "out"), "--device", "cpu"]
    for name, cfg in configs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        args += ["--data", str(tmp_path / f"{name}.yaml")]
    assert main(args) == 0
    out = capsys.readouterr().out
    measured = [line for line in out.splitlines() if line.endswith("| measured here |")]
    assert [line.split("|")[2].strip() for line in measured] == ["nyu", "kitti", "diode"]
    assert [line.split("|")[3].strip() for line in measured] == ["nyu-eigen", "kitti-garg", "diode-indoor"]
