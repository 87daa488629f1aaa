"""Valid input that used to be refused, options that were ignored, errors that named the wrong thing."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

import fault_corpus as fc
from depthsmith.cli import main
from depthsmith.decode import decode_rgb
from depthsmith.errors import InputError, ReadError


def test_a_12000_x_9000_photo_is_decoded_reduced(tmp_path):
    a = np.zeros((9000, 12000, 3), np.uint8)
    a[..., 0] = (np.arange(12000) // 47 % 2 * 255)[None]  # stripes: the reduced image is the same picture
    Image.fromarray(a).save(tmp_path / "phone.jpg", quality=85)
    del a
    rgb = decode_rgb(tmp_path / "phone.jpg")
    assert rgb.shape == (4500, 6000, 3)  # 108 MP > 89.5 MP: decoded at half size by libjpeg
    expected = (np.arange(6000) * 2 // 47 % 2 * 255).astype(np.float32)  # the stripes at half size
    assert np.abs(rgb[100, :, 0].astype(np.float32) - expected).mean() < 12


def test_a_real_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = fc.bomb_above_limit(tmp_path / "bomb.png")  # a few hundred bytes claiming 100 MP
    with pytest.raises(ReadError, match=r"bomb\.png: image is .* above the 89\.5 megapixel limit"):
        decode_rgb(bomb)


def _jpeg_claiming(path, width, height):
    """A small valid JPEG whose frame header (SOF0) is rewritten to claim width x height."""
    buf = io.BytesIO()
    Image.fromarray(fc.smooth_rgb()).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def test_a_jpeg_whose_header_lies_is_named(tmp_path):
    liar = _jpeg_claiming(tmp_path / "liar.jpg", 60000, 60000)  # 3600 MP: 56 MP even at 1/8
    with pytest.raises(ReadError, match="liar.jpg: the JPEG header claims 60000 x 60000 pixels but the file holds"):
        decode_rgb(liar)


def test_max_pixels_option_lowers_and_raises_the_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after: the option sets it
    model = tmp_path / "m"
    import depthsmith

    depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None).save_pretrained(model)
    png = fc.good_png(tmp_path / "a.png", 200, 300)  # 60,000 pixels
    Image.fromarray(fc.smooth_rgb(200, 300)).save(tmp_path / "b.jpg")
    argv = ["predict", str(png), str(tmp_path / "b.jpg"), "--model", str(model), "--backend", "torch",
            "--device", "cpu", "--out", str(tmp_path / "o"), "--max-pixels", "20000"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "a.png: image is 300 x 200 pixels, above the 0.0 megapixel limit" in out  # PNG: refused
    assert Image.open(tmp_path / "o" / "b_depth16.png").size == (150, 100)  # JPEG: decoded at half size


def test_bench_size_zero_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--height", "0", "--width", "0"])
    assert stop.value.code == 2
    assert "argument --height: 0 is too small: give an integer >= 2" in capsys.readouterr().err


def test_dataset_encoding_error_names_the_config_and_key(tmp_path, capsys):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"type: paired\ncsv_path: {tmp_path / 'list.csv'}\nencoding: -1000\n")
    assert main(["data", "check", str(cfg), "--out", str(tmp_path / "c")]) == 2
    assert f"dataset config {cfg}: key 'encoding': a depth scale must be positive, got -1000" in capsys.readouterr().err


def _hub_failure(monkeypatch, error):
    import huggingface_hub

    calls = []

    def download(repo_id, filename, **kwargs):
        calls.append(filename)
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return calls


def test_unknown_hub_id_is_named_as_missing_and_tried_once(monkeypatch):
    from huggingface_hub import errors

    missing = errors.RepositoryNotFoundError.__new__(errors.RepositoryNotFoundError)
    Exception.__init__(missing, "404 Client Error: Repository Not Found")
    calls = _hub_failure(monkeypatch, missing)
    from depthsmith.models import load_model

    with pytest.raises(InputError, match="--model someuser/nonexistent-depth-model: no such model repository"):
        load_model("someuser/nonexistent-depth-model")
    assert calls == ["config.json"]  # one request: a 404 is an answer, not a reason to retry


def test_unreachable_hub_is_named_as_the_network(monkeypatch):
    from huggingface_hub import errors

    _hub_failure(monkeypatch, errors.LocalEntryNotFoundError("cannot find the requested files in the local cache"))
    from depthsmith.models import load_model

    with pytest.raises(InputError, match="someuser/model: not in the local Hub cache and the Hub could not be reached"):
        load_model("someuser/model")
