"""Every reader on fixtures made from the real pairs: metres, masks, names, laziness, pickling."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from depthsmith.data import (BtsDataset, H5Dataset, NyuMatDataset, NyuZipDataset, PairedDataset,
                             build_dataset)
from helpers import (HALF_MM, check_sample, make_bts, make_h5_folder, make_nyu_mat, make_nyu_zip,
                                make_paired_csv, need_real, real_pairs)



@pytest.fixture(scope="module")
def nyu_pairs():
    need_real()
    return real_pairs()


def test_nyu_zip_train_8bit_and_test_16bit(tmp_path, nyu_pairs):
    path = make_nyu_zip(tmp_path / "nyu_data.zip", nyu_pairs[:3], nyu_pairs[3:])
    train = NyuZipDataset(path, split="train")
    test = NyuZipDataset(path, split="test")
    assert (len(train), len(test)) == (3, len(nyu_pairs) - 3)
    assert train._zip is None  # opened lazily, on first access
    for k in range(3):
        rgb, mm, _ = nyu_pairs[k]
        eight_bit = np.clip(np.rint(mm / 1000.0 / 10.0 * 255.0), 0, 255)
        s = train[k]
        # 8-bit training maps: value / 255 * 10 m, so the step is 10/255 m; JPEG RGB is lossy.
        check_sample(s, rgb, mm, depth_tol=10.0 / 255.0 / 2, rgb_tol=4.0 / 255)
        assert np.allclose(s["depth"][0].numpy(), eight_bit / 255.0 * 10.0, atol=1e-5)
        assert s["name"].startswith("data/nyu2_train/") and s["name"].endswith(f"{k + 1}.jpg")
    for k in range(len(test)):
        rgb, mm, _ = nyu_pairs[3 + k]
        s = test[k]
        check_sample(s, rgb, mm)  # 16-bit millimetres: exact
        assert s["name"] == f"data/nyu2_test/{k:05d}_colors.png"


def test_nyu_zip_with_a_leading_folder(tmp_path, nyu_pairs):
    path = make_nyu_zip(tmp_path / "kaggle.zip", nyu_pairs[:1], nyu_pairs[1:2], prefix="nyu_data/")
    ds = NyuZipDataset(path, split="test")
    check_sample(ds[0], *nyu_pairs[1][:2])


@pytest.mark.parametrize("splits_format", ["v5", "h5"])
def test_nyu_mat_splits_filled_and_raw(tmp_path, nyu_pairs, splits_format):
    mat, splits = make_nyu_mat(tmp_path, nyu_pairs, train_ndx=[1, 3, 5], test_ndx=[2, 4, 6], splits_format=splits_format)
    test = NyuMatDataset(mat, split="test", depth="raw")
    assert len(test) == 3 and test._file is None
    for k, one_based in enumerate([2, 4, 6]):
        rgb, mm, _ = nyu_pairs[one_based - 1]
        s = test[k]
        check_sample(s, rgb, mm, rgb_tol=0.0)
        assert s["name"] == f"nyu_depth_v2_labeled.mat[{one_based - 1}]"
    train = NyuMatDataset(mat, split="train", splits_path=splits, depth="filled")
    rgb, mm, _ = nyu_pairs[0]
    s = train[0]
    assert s["mask"].all()  # the filled maps have no holes
    expected = np.where(mm > 0, mm / 1000.0, 1.5)
    assert np.abs(s["depth"][0].numpy() - expected).max() < 1e-6
    assert len(NyuMatDataset(mat, split="all")) == len(nyu_pairs)


def test_h5_folder(tmp_path, nyu_pairs):
    root = make_h5_folder(tmp_path / "nyudepthv2", nyu_pairs)
    ds = H5Dataset(root)
    assert len(ds) == len(nyu_pairs)
    for i in range(len(ds)):
        s = ds[i]
        k = int(s["name"][-8:-3])  # files are listed in sorted path order: <split>/<scene>/<k>.h5
        check_sample(s, *nyu_pairs[k][:2], rgb_tol=0.0)


def test_bts_native_sync_files(tmp_path):
    need_real()
    root, listing = make_bts(tmp_path / "sync")
    ds = BtsDataset(root, listing)
    assert len(ds) == 3 and ds.focals == [518.8579] * 3
    refs = real_pairs(["metric3d_nyu"])
    for k in range(3):
        # The reference PNG RGB is the lossless copy of the BTS JPEG: identical after decoding.
        check_sample(ds[k], *refs[k][:2], rgb_tol=0.5 / 255)
        assert ds[k]["name"].endswith(f"rgb_{k * 50:05d}.jpg")


def test_bts_lines_without_depth_are_left_out(tmp_path):
    need_real()
    root, listing = make_bts(tmp_path / "sync")
    listing.write_text(listing.read_text() + "basement_0001a/rgb_00200.jpg None 518.8579\n")
    ds = BtsDataset(root, listing)
    assert len(ds) == 3 and ds.without_depth == 1


@pytest.mark.parametrize("encoding,scale", [("png_mm", 1000.0), ("png_kitti", 256.0), ("png_tum", 5000.0), (256, 256.0)])
def test_paired_csv_png_encodings(tmp_path, nyu_pairs, encoding, scale):
    csv = make_paired_csv(tmp_path, nyu_pairs[:2], encoding_scale=scale)
    ds = PairedDataset(csv_path=csv, encoding=encoding)
    for k in range(2):
        check_sample(ds[k], *nyu_pairs[k][:2], depth_tol=0.5 / scale, rgb_tol=0.0)


def test_paired_npy_needs_no_encoding(tmp_path, nyu_pairs):
    make_paired_csv(tmp_path, nyu_pairs[:2], encoding_scale=None, header=False)
    ds = PairedDataset(rgb_glob="rgb/*.png", depth_glob="depth/*.npy", root=tmp_path)
    assert ds.encoding == "npy_m"
    for k in range(2):
        check_sample(ds[k], *nyu_pairs[k][:2], rgb_tol=0.0)


def test_paired_png_without_encoding_is_refused(tmp_path, nyu_pairs):
    csv = make_paired_csv(tmp_path, nyu_pairs[:1])
    with pytest.raises(ValueError, match="encoding"):
        PairedDataset(csv_path=csv)


@pytest.mark.parametrize("folder,rgb,depth,encoding", [
    ("open3d_tum", "TUM_color.png", "TUM_depth.png", "png_tum"),
    ("open3d_sun", "SUN_color.jpg", "SUN_depth.png", "png_sun"),
    ("fastdepth_nyu", "rgb.npy", "depth.npy", "npy_m"),
])
def test_paired_on_native_raw_files(tmp_path, folder, rgb, depth, encoding):
    raw = need_real(folder) / folder / "raw"
    (tmp_path / "list.csv").write_text(f"{raw / rgb},{raw / depth}\n")
    s = PairedDataset(csv_path=tmp_path / "list.csv", encoding=encoding)[0]
    ref_rgb = np.asarray(Image.open(raw.parent / "00000_rgb.png"))
    ref_mm = np.asarray(Image.open(raw.parent / "00000_depth.png"))
    check_sample(s, ref_rgb, ref_mm, rgb_tol=1.0 / 255)


def test_paired_on_the_kinect2_capture(tmp_path):
    folder = need_real("tui_kinect2") / "tui_kinect2"  # vendored: 1440 x 1080, 16-bit millimetres
    (tmp_path / "list.csv").write_text(f"{folder / '00000_rgb.png'},{folder / '00000_depth.png'}\n")
    s = PairedDataset(csv_path=tmp_path / "list.csv", encoding="png_mm")[0]
    rgb = np.asarray(Image.open(folder / "00000_rgb.png"))
    mm = np.asarray(Image.open(folder / "00000_depth.png")).astype(np.float64)
    assert s["image"].shape == (3, 1080, 1440) and mm.shape == (1080, 1440)
    assert np.array_equal((s["image"] * 255).round().byte().permute(1, 2, 0).numpy(), rgb)
    assert np.array_equal(s["mask"][0].numpy(), mm > 0)
    assert np.abs(s["depth"][0].numpy() - mm / 1000.0).max() < 1e-6  # float32 rounding of <= 13.2 m
    assert 0.94 < s["mask"].float().mean() < 0.95  # SOURCE.txt: 94.6% valid


def test_paired_kitti_sparse_from_raw(tmp_path):
    raw = need_real("metric3d_kitti") / "metric3d_kitti" / "raw"
    for sub in ("rgb", "depth"):  # copied to tmp only: KITTI must not enter the repository
        shutil.copytree(raw / sub, tmp_path / sub)
    ds = PairedDataset(rgb_glob="rgb/*.png", depth_glob="depth/*.png", root=tmp_path, encoding="png_kitti",
                       max_depth=80.0)
    s = ds[0]
    stored = np.asarray(Image.open(raw / "depth" / "0000000005.png")).astype(np.float64)
    expected = (stored > 0) & (stored / 256.0 <= 80.0)  # KITTI's usual 80 m cap, given as max_depth
    assert (stored / 256.0 > 80.0).any() and np.array_equal(s["mask"][0].numpy(), expected)
    assert np.abs(s["depth"][0].numpy() - np.where(expected, stored / 256.0, 0)).max() < 1e-5
    assert 0.15 < s["mask"].float().mean() < 0.25  # about 19% of KITTI pixels have a LiDAR return


def test_min_max_depth_mask(tmp_path, nyu_pairs):
    csv = make_paired_csv(tmp_path, nyu_pairs[:1])
    s = PairedDataset(csv_path=csv, encoding="png_mm", min_depth=2.0, max_depth=4.0)[0]
    mm = nyu_pairs[0][1]
    assert np.array_equal(s["mask"][0].numpy(), (mm > 2000) & (mm <= 4000))
    assert (s["depth"][~s["mask"]] == 0).all()


def test_readers_pickle_and_load_in_workers(tmp_path, nyu_pairs):
    zip_ds = NyuZipDataset(make_nyu_zip(tmp_path / "nyu.zip", nyu_pairs, nyu_pairs[:1]), split="train")
    zip_ds[0]  # opens the handle in this process: pickling must drop it
    assert zip_ds._zip is not None
    clone = pickle.loads(pickle.dumps(zip_ds))
    assert clone._zip is None and torch.equal(clone[1]["depth"], zip_ds[1]["depth"])
    mat_ds = NyuMatDataset(make_nyu_mat(tmp_path, nyu_pairs, [1], [2])[0], split="all")
    mat_ds[0]
    loader = torch.utils.data.DataLoader(torch.utils.data.ConcatDataset([zip_ds, mat_ds]), batch_size=4,
                                         num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["name"]) for b in batches) == len(zip_ds) + len(mat_ds)
    assert torch.equal(batches[0]["depth"][0], zip_ds[0]["depth"])


def test_build_dataset_from_yaml(tmp_path, nyu_pairs):
    csv = make_paired_csv(tmp_path, nyu_pairs[:2], encoding_scale=5000.0)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(yaml.safe_dump({"type": "paired", "csv_path": str(csv), "encoding": "png_tum", "max_depth": 10.0}))
    ds = build_dataset(cfg)
    assert isinstance(ds, PairedDataset) and len(ds) == 2
    check_sample(ds[1], *nyu_pairs[1][:2], depth_tol=0.5 / 5000, rgb_tol=0.0)
