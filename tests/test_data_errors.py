"""Bad data: errors that name the file, skip mode that counts, NaN/inf/zero never reach a loss."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from depthsmith.data import DataError, NyuZipDataset, PairedDataset, build_dataset, make_sample
from helpers import make_paired_csv, need_real, png_bytes, real_pairs


@pytest.fixture()
def folder(tmp_path):
    need_real()
    csv = make_paired_csv(tmp_path, real_pairs(["metric3d_nyu"], size=(48, 64)))
    return tmp_path, csv


def test_corrupt_file_is_named(folder):
    root, csv = folder
    (root / "depth" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = PairedDataset(csv_path=csv, encoding="png_mm")
    ds[0]
    with pytest.raises(DataError, match=r"depth/00001\.png.*cannot decode"):
        ds[1]


def test_truncated_image_is_named(folder):
    root, csv = folder
    data = (root / "rgb" / "00002.png").read_bytes()
    (root / "rgb" / "00002.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"rgb/00002\.png"):
        PairedDataset(csv_path=csv, encoding="png_mm")[2]


def test_missing_file_is_named(folder):
    root, csv = folder
    (root / "rgb" / "00000.png").unlink()
    with pytest.raises(DataError, match=r"rgb/00000\.png: file not found"):
        PairedDataset(csv_path=csv, encoding="png_mm")[0]


def test_size_mismatch_is_named(folder):
    root, csv = folder
    Image.fromarray(np.full((40, 64), 1000, np.uint16)).save(root / "depth" / "00001.png")
    with pytest.raises(DataError, match=r"00001\.png: RGB is 48x64 but depth is 40x64"):
        PairedDataset(csv_path=csv, encoding="png_mm")[1]


def test_no_valid_pixel_is_an_error(folder):
    root, csv = folder
    Image.fromarray(np.zeros((48, 64), np.uint16)).save(root / "depth" / "00000.png")
    with pytest.raises(DataError, match="no valid pixel"):
        PairedDataset(csv_path=csv, encoding="png_mm")[0]


def test_skip_mode_returns_the_next_good_sample_and_counts(folder):
    root, csv = folder
    (root / "depth" / "00001.png").unlink()
    ds = PairedDataset(csv_path=csv, encoding="png_mm", on_error="skip")
    with pytest.warns(UserWarning, match="00001.png"):
        s = ds[1]
    assert s["name"].endswith("rgb/00002.png")
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("rgb/00001.png")
    assert "file not found" in ds.skipped[0][1]


def test_validate_prunes_bad_samples_before_loading(folder):
    root, csv = folder
    (root / "depth" / "00001.png").write_bytes(b"junk")
    ds = PairedDataset(csv_path=csv, encoding="png_mm", on_error="skip")
    with pytest.warns(UserWarning, match="skipping 1"):
        bad = ds.validate()
    assert len(bad) == 1 and len(ds) == 2 and len(ds.skipped) == 1
    names = [b["name"][0] for b in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=0)]
    assert [n[-9:] for n in names] == ["00000.png", "00002.png"]


def test_missing_and_corrupt_zip_members_are_named(tmp_path):
    path = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/nyu2_train.csv", "data/nyu2_train/x/1.jpg,data/nyu2_train/x/1.png\n"
                                           "data/nyu2_train/x/2.jpg,data/nyu2_train/x/2.png\n")
        zf.writestr("data/nyu2_train/x/2.jpg", png_bytes(np.zeros((8, 8, 3), np.uint8), "JPEG"))
        zf.writestr("data/nyu2_train/x/2.png", b"\x89PNG broken")
    ds = NyuZipDataset(path, split="train")
    with pytest.raises(DataError, match="nyu_data.zip:data/nyu2_train/x/1.jpg: file not found"):
        ds[0]
    with pytest.raises(DataError, match="data/nyu2_train/x/2.png: cannot decode"):
        ds[1]


def test_not_a_zip_is_named(tmp_path):
    (tmp_path / "nyu_data.zip").write_bytes(b"nope")
    with pytest.raises(DataError, match="nyu_data.zip"):
        NyuZipDataset(tmp_path / "nyu_data.zip")


def test_nan_inf_zero_negative_and_out_of_range_are_masked():
    depth = np.array([[np.nan, np.inf, -np.inf, 0.0], [-1.0, 0.5, 3.0, 20.0]], dtype=np.float32)
    rgb = np.zeros((2, 4, 3), np.uint8)
    s = make_sample(rgb, depth, "x", min_depth=1e-3, max_depth=10.0)
    assert s["mask"][0].tolist() == [[False] * 4, [False, True, True, False]]
    assert torch.isfinite(s["depth"]).all()
    assert s["depth"][0].tolist() == [[0.0] * 4, [0.0, 0.5, 3.0, 0.0]]


def test_npy_with_nan_is_masked(tmp_path):
    need_real()
    pairs = real_pairs(["metric3d_nyu"], size=(48, 64))[:1]
    make_paired_csv(tmp_path, pairs, encoding_scale=None)
    depth = np.load(tmp_path / "depth" / "00000.npy")
    depth[:5] = np.nan
    depth[5:10] = np.inf
    np.save(tmp_path / "depth" / "00000.npy", depth)
    s = PairedDataset(csv_path=tmp_path / "pairs.csv")[0]
    assert not s["mask"][0, :10].any() and torch.isfinite(s["depth"]).all()


def test_config_errors():
    with pytest.raises(ValueError, match="valid: synthetic, synthetic_video, nyu_zip, nyu_mat, h5, bts, paired"):
        build_dataset({"type": "kitti_raw"})
    with pytest.raises(ValueError, match="unknown options \\['sise'\\]"):
        build_dataset({"type": "synthetic", "sise": [10, 10]})
    with pytest.raises(ValueError, match="on_error"):
        build_dataset({"type": "synthetic", "on_error": "ignore"})


def test_unreadable_h5_npy_and_split_files_are_named(tmp_path):
    import h5py

    from depthsmith.data import H5Dataset
    from depthsmith.data.io import load_array
    from depthsmith.data.nyu import read_mat_indices

    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not an HDF5 file")
    with pytest.raises(DataError, match=r"corrupt\.h5: cannot read HDF5 \("):
        H5Dataset([corrupt])[0]
    with pytest.raises(DataError, match=r"gone\.h5: file not found"):
        H5Dataset([tmp_path / "gone.h5"])[0]
    no_depth = tmp_path / "no_depth.h5"
    with h5py.File(no_depth, "w") as f:
        f["rgb"] = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(DataError, match=r"no_depth\.h5: missing datasets \['depth'\]"):
        H5Dataset([no_depth])[0]

    bad_npy = tmp_path / "depth.npy"
    bad_npy.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"depth\.npy: cannot read array \("):
        load_array(bad_npy, str(bad_npy))
    with pytest.raises(DataError, match=r"no_depth\.h5: no dataset 'depth'"):
        load_array(no_depth, str(no_depth), key="depth")

    with pytest.raises(DataError, match=r"no_depth\.h5: cannot read 'testNdxs' \(KeyError"):
        read_mat_indices(no_depth, "testNdxs")
