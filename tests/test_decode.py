"""One decoder behind both entry points: ``io.load_image`` (float RGB for inference) and
``data.io.read_rgb`` (uint8 RGB for datasets) must see the same pixels and fail the same way.

Expected pixels come from hand-made arrays or from plain PIL calls, not from depthsmith.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import fault_corpus as fc
from depthsmith.data import DataError
from depthsmith.data.io import read_depth, read_rgb
from depthsmith.errors import InputError, ReadError
from depthsmith.io import load_image, save_png16

RNG = np.random.default_rng(11)
RGB8 = (RNG.random((30, 44, 3)) * 255).astype(np.uint8)


def _both(path):
    return load_image(path), read_rgb(path, str(path))


def _agree(path, expected_uint8):
    """Both entry points give ``expected_uint8`` (H x W x 3), one as float and one as uint8."""
    as_float, as_uint8 = _both(path)
    assert as_uint8.dtype == np.uint8 and as_float.dtype == np.float32
    np.testing.assert_array_equal(as_uint8, expected_uint8)
    np.testing.assert_allclose(as_float, expected_uint8 / 255.0, atol=1e-6)


def test_8bit_png_and_its_bytes(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "a.png")
    _agree(tmp_path / "a.png", RGB8)
    np.testing.assert_array_equal(read_rgb((tmp_path / "a.png").read_bytes(), "a.png"), RGB8)
    np.testing.assert_allclose(load_image((tmp_path / "a.png").read_bytes()), RGB8 / 255.0, atol=1e-6)


def test_16bit_grey_png_keeps_its_range(tmp_path):
    grey16 = (RNG.random((30, 44)) * 65535).astype(np.uint16)
    grey16[0, :3] = [0, 65535, 257 * 100 + 129]  # ends of the range, and 100.502 (rounds up)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert np.asarray(Image.open(tmp_path / "g16.png")).max() > 255  # really a 16-bit file
    as_float, as_uint8 = _both(tmp_path / "g16.png")
    want = np.repeat(grey16[..., None], 3, axis=2)
    np.testing.assert_allclose(as_float, want / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(as_uint8, np.floor(want / 257.0 + 0.5).astype(np.uint8))
    assert as_uint8[0, :3, 0].tolist() == [0, 255, 101]


def test_exif_rotated_jpeg_is_upright_in_both(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; the viewer rotates 90 degrees clockwise
    Image.fromarray(RGB8).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "rot.jpg") as raw:  # PIL without transpose: the stored pixels
        stored = np.asarray(raw.convert("RGB"))
    assert stored.shape == (30, 44, 3)
    _agree(tmp_path / "rot.jpg", np.rot90(stored, k=-1))  # clockwise
    assert load_image(tmp_path / "rot.jpg").shape == (44, 30, 3)


def test_palette_png_with_transparency_gives_palette_colours(tmp_path):
    palette = (RNG.random((16, 3)) * 255).astype(np.uint8)
    indices = RNG.integers(0, 16, (30, 44)).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.flatten().tolist())
    image.save(tmp_path / "p.png", transparency=3)  # index 3 transparent: its colour still counts
    assert Image.open(tmp_path / "p.png").mode == "P"
    _agree(tmp_path / "p.png", palette[indices])


def test_chw_and_grey_arrays_in_both(tmp_path):
    np.save(tmp_path / "chw.npy", RGB8.transpose(2, 0, 1))  # h5 / FastDepth layout
    _agree(tmp_path / "chw.npy", RGB8)
    np.save(tmp_path / "grey.npy", RGB8[..., 0])
    _agree(tmp_path / "grey.npy", np.repeat(RGB8[..., :1], 3, axis=2))


@pytest.mark.parametrize("build,suffix,message", [
    (fc.truncated_png, ".png", "cannot decode image"),
    (fc.truncated_jpeg, ".jpg", "cannot decode image"),
    (fc.bomb_above_limit, ".png", "image is 10000 x 10000 pixels, above the 89.5 megapixel limit"),
])
def test_unreadable_files_fail_the_same_way_naming_the_file(tmp_path, build, suffix, message):
    path = build(tmp_path / f"bad{suffix}")
    errors = []
    for read in (load_image, lambda p: read_rgb(p, str(p))):
        with pytest.raises(ReadError) as exc:
            read(path)
        errors.append(exc.value)
    for err in errors:
        assert str(path) in str(err) and message in str(err)
        assert isinstance(err, DataError) and isinstance(err, InputError)  # old `except DataError` still works
    assert str(errors[0]) == str(errors[1])


def test_missing_file_is_a_read_error_naming_it(tmp_path):
    for read in (load_image, lambda p: read_rgb(p, str(p))):
        with pytest.raises(ReadError, match=r"nope\.png: file not found"):
            read(tmp_path / "nope.png")


def test_error_names_are_one_class_everywhere():
    import depthsmith.data
    import depthsmith.data.io
    import depthsmith.io

    assert depthsmith.io.ReadError is depthsmith.data.ReadError is depthsmith.data.io.ReadError is ReadError
    assert depthsmith.data.io.DataError is DataError and issubclass(ReadError, DataError)


def test_save_png16_round_trips_through_the_dataset_reader(tmp_path):
    depth = np.array([[0.0, 1.2344, 2.0, 0.0006], [np.nan, -1.0, np.inf, 70.0]], np.float32)
    save_png16(tmp_path / "d.png", depth)
    with Image.open(tmp_path / "d.png") as png:
        stored = np.asarray(png)
    assert stored.dtype == np.uint16
    # millimetres; invalid -> 0; beyond 65.535 m stored as the largest value, not as "no depth"
    assert stored.tolist() == [[0, 1234, 2000, 1], [0, 0, 0, 65535]]
    back = read_depth(tmp_path / "d.png", "png_mm", "d.png")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, stored.astype(np.float32) / np.float32(1000.0))


def test_read_depth_reads_16bit_png_bytes_as_the_file(tmp_path):
    mm = RNG.integers(0, 65536, (8, 9)).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(mm).save(buf, format="PNG")
    got = read_depth(buf.getvalue(), "png_mm", "member.png")
    np.testing.assert_allclose(got, mm / 1000.0, rtol=1e-6)
