"""Depth units: every named encoding against the millimetre reference PNGs and by round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from depthsmith.data import ENCODINGS, DataError, decode_depth, encode_depth, get_encoding
from depthsmith.data.io import read_depth
from helpers import need_real

HALF_MM = 0.0005


def reference_m(folder: str) -> np.ndarray:
    return np.asarray(Image.open(need_real(folder) / folder / "00000_depth.png")).astype(np.float64) / 1000.0


def raw_png(folder: str, *parts: str) -> np.ndarray:
    return np.asarray(Image.open(need_real(folder).joinpath(folder, "raw", *parts)))


def test_tum_raw_over_5000_matches_millimetres():
    ref = reference_m("open3d_tum")
    got = decode_depth(raw_png("open3d_tum", "TUM_depth.png"), "png_tum")
    assert np.array_equal(got > 0, ref > 0)
    assert np.abs(got - ref)[ref > 0].max() <= HALF_MM + 1e-6


def test_kitti_raw_over_256_matches_millimetres():
    real = need_real()
    for k, frame in enumerate(["0000000005", "0000000050", "0000000100"]):
        ref = np.asarray(Image.open(real / "metric3d_kitti" / f"{k:05d}_depth.png")).astype(np.float64) / 1000.0
        got = decode_depth(raw_png("metric3d_kitti", "depth", f"{frame}.png"), "png_kitti")
        both = ref > 0
        assert np.abs(got - ref)[both].max() <= HALF_MM + 1e-6
        # The mm reference had to drop depths beyond 65.535 m: those are the only extra valid pixels.
        assert (got[~both & (got > 0)] > 65.535 - HALF_MM).all()


def test_sun_bit_rotation_matches_millimetres():
    ref = reference_m("open3d_sun")
    got = decode_depth(raw_png("open3d_sun", "SUN_depth.png"), "png_sun")
    assert np.array_equal(got > 0, ref > 0)
    assert np.abs(got - ref).max() < 1e-6 + 1e-7 * ref.max()


def test_sun_rotation_by_hand():
    # 1234 mm stored rotated left by 3 bits: (1234 << 3) | (1234 >> 13) = 9872.
    assert decode_depth(np.array([[9872]], dtype=np.uint16), "png_sun")[0, 0] == pytest.approx(1.234)
    assert encode_depth(np.array([[1.234]]), "png_sun")[0, 0] == 9872


def test_fastdepth_npy_float_metres_match_millimetres():
    ref = reference_m("fastdepth_nyu")
    got = read_depth(need_real() / "fastdepth_nyu" / "raw" / "depth.npy", "npy_m", "depth.npy")
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= HALF_MM + 1e-6


def test_bts_sync_png_is_millimetres():
    real = need_real()
    ref = reference_m("metric3d_nyu")
    got = read_depth(real / "metric3d_nyu" / "raw" / "depth" / "sync_depth_00000.png", "png_mm", "sync")
    assert np.array_equal(got, (ref).astype(np.float32))


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_round_trip_within_half_a_step(name):
    enc = get_encoding(name)
    rng = np.random.default_rng(0)
    metres = rng.uniform(0.1, 9.9 if enc.dtype == "uint8" else 12.0, size=(8, 9))
    metres[0, 0] = 0.0
    stored = encode_depth(metres, name)
    back = decode_depth(stored, name)
    step = 0.0 if enc.dtype == "float" else 0.5 / enc.scale
    assert back.dtype == np.float32
    assert np.abs(back - metres).max() <= step + 1e-5
    assert back[0, 0] == 0.0


def test_densedepth_eight_bit_is_value_over_255_times_10():
    got = decode_depth(np.array([[255, 51, 0]], dtype=np.uint8), "png8_densedepth")
    assert np.allclose(got, [[10.0, 2.0, 0.0]], atol=1e-6)


def test_custom_scale_and_unrepresentable_values():
    assert decode_depth(np.array([[512]], dtype=np.uint16), 256)[0, 0] == 2.0
    stored = encode_depth(np.array([np.nan, -1.0, np.inf, 70.0, 1.0]), "png_mm")
    assert stored.tolist() == [0, 0, 0, 0, 1000]


def test_wrong_bit_depth_is_an_error():
    with pytest.raises(ValueError, match="16-bit"):
        decode_depth(np.zeros((2, 2), np.uint8), "png_mm")
    with pytest.raises(ValueError, match="8-bit"):
        decode_depth(np.zeros((2, 2), np.uint16), "png8_densedepth")
    with pytest.raises(ValueError, match="float"):
        decode_depth(np.zeros((2, 2), np.uint16), "npy_m")


def test_unknown_encoding_lists_the_valid_ones():
    with pytest.raises(ValueError, match="png_kitti"):
        get_encoding("png_cm")


def test_read_depth_names_the_file(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(DataError, match="eight.png.*16-bit"):
        read_depth(tmp_path / "eight.png", "png_mm", str(tmp_path / "eight.png"))
