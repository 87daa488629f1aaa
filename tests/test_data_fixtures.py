"""The dataset builders of tests/helpers.py must look like the packagings they stand for."""

from __future__ import annotations

import io
import zipfile

import h5py
import numpy as np
from PIL import Image

from helpers import make_nyu_mat, make_nyu_zip, need_real, real_pairs


# -- the fixtures must look like the packagings they stand for --------------------------------------
def test_nyu_zip_fixture_layout(tmp_path):
    need_real()
    pairs = real_pairs(["metric3d_nyu"])
    path = make_nyu_zip(tmp_path / "nyu_data.zip", pairs, pairs[:1])
    with zipfile.ZipFile(path) as zf:
        first = zf.read("data/nyu2_train.csv").decode().splitlines()[0]
        assert first.startswith("data/nyu2_train/") and first.endswith(".png") and "," in first
        train_depth = Image.open(io.BytesIO(zf.read(first.split(",")[1])))
        test_depth = Image.open(io.BytesIO(zf.read("data/nyu2_test/00000_depth.png")))
    assert np.asarray(train_depth).dtype == np.uint8
    assert np.asarray(test_depth).dtype == np.uint16


def test_nyu_mat_fixture_layout(tmp_path):
    need_real()
    pairs = real_pairs(["metric3d_nyu"])
    mat, _ = make_nyu_mat(tmp_path, pairs, [1, 2], [3], splits_format="h5")
    with h5py.File(mat, "r") as f:
        assert f["images"].shape == (3, 3, 640, 480)  # as h5py shows the real file: (1449, 3, 640, 480)
        assert f["depths"].shape == (3, 640, 480)
