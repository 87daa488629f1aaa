"""Fault injection, data side: the paired CSV / glob reader, dataset YAML files, `data check`
and the web app's handler. Each bad input must raise an InputError naming the file (and the
line, for CSV and YAML) and saying what is valid; batches must name it and go on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
import fault_corpus as fc
from depthsmith.app import LimitError, make_handler, upload_callback
from depthsmith.cli import main
from depthsmith.data import PairedDataset, build_dataset
from depthsmith.errors import InputError
from depthsmith.inference import Predictor


_pair = fc.pair_files


# ----------------------------------------------------------------------------- CSV edge cases


@pytest.mark.parametrize("case", ["utf8_bom", "header_row", "header_with_dotted_names", "extra_column"])
def test_csv_variants_people_write_are_read(case, tmp_path):
    rows = [",".join(_pair(tmp_path, s)) for s in ("a", "b")]
    header = {"header_row": "rgb,depth\n", "header_with_dotted_names": "rgb.path,depth.path\n"}.get(case, "")
    if case == "extra_column":
        rows = [f"{r},518.86" for r in rows]  # a focal length after the pair (BTS habit)
    text = header + "\n".join(rows) + "\n"
    (tmp_path / "list.csv").write_bytes((b"\xef\xbb\xbf" if case == "utf8_bom" else b"") + text.encode())
    ds = PairedDataset(csv_path=tmp_path / "list.csv", encoding="png_mm")
    assert len(ds) == 2 and ds[1]["depth"].max() == pytest.approx(2.5)


@pytest.mark.parametrize("case,line,expected", [
    ("semicolon", 2, "semicolon-separated: use commas"),
    ("single_column", 3, "expected two comma-separated columns 'rgb,depth'"),
    ("empty_cell", 2, "expected two comma-separated columns"),
])
def test_bad_csv_line_names_file_line_and_format(case, line, expected, tmp_path):
    a, b = _pair(tmp_path, "a"), _pair(tmp_path, "b")
    lines = {"semicolon": ["rgb,depth", f"{a[0]};{a[1]}", ",".join(b)],
             "single_column": ["rgb,depth", ",".join(a), b[0]],
             "empty_cell": ["rgb,depth", f"{a[0]},", ",".join(b)]}[case]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        PairedDataset(csv_path=tmp_path / "list.csv", encoding="png_mm")
    assert f"list.csv:{line}: " in str(exc.value) and expected in str(exc.value)


# ----------------------------------------------------------------------------- sample faults


def test_nan_inf_and_negative_depth_are_masked_not_passed_on(tmp_path):
    fc.good_png(tmp_path / "a.png")
    depth = np.full(fc.SIZE, 2.0, np.float32)
    depth[0, :3] = [np.nan, np.inf, -1.0]
    np.save(tmp_path / "a.npy", depth)
    (tmp_path / "list.csv").write_text("a.png,a.npy\n")
    s = PairedDataset(csv_path=tmp_path / "list.csv")[0]  # .npy implies metres
    assert torch.isfinite(s["depth"]).all() and not s["mask"][0, 0, :3].any() and s["mask"].sum() == depth.size - 3
    assert (s["depth"][0, 0, :3] == 0).all()


@pytest.mark.parametrize("case,expected", [
    ("all_invalid_depth", "depth/b.png: depth map has no valid pixel"),
    ("size_mismatch", "depth/b.png: RGB is 40x52 but depth is 30x52"),
    ("missing_depth", "depth/b.png: file not found"),
    ("corrupt_depth", "depth/b.png: cannot decode image"),
    ("decompression_bomb_depth", "depth/b.png: image is 10000 x 10000 pixels, above the 89.5 megapixel limit"),
])
def test_bad_sample_names_the_depth_file(case, expected, tmp_path):
    a = _pair(tmp_path, "a")
    b = _pair(tmp_path, "b", np.zeros(fc.SIZE, np.uint16) if case == "all_invalid_depth" else None)
    if case == "size_mismatch":
        Image.fromarray(np.full((30, 52), 900, np.uint16)).save(tmp_path / b[1])
    elif case == "missing_depth":
        (tmp_path / b[1]).unlink()
    elif case == "corrupt_depth":
        fc.truncated_png(tmp_path / b[1])
    elif case == "decompression_bomb_depth":  # Pillow alone would only warn, then decode 100 megapixels
        fc.bomb_above_limit(tmp_path / b[1])
    (tmp_path / "list.csv").write_text(f"{','.join(a)}\n{','.join(b)}\n")
    ds = PairedDataset(csv_path=tmp_path / "list.csv", encoding="png_mm")
    ds[0]
    with pytest.raises(InputError) as exc:
        ds[1]
    assert expected in str(exc.value)


def test_globs_over_a_symlink_loop_pair_each_file_once(tmp_path):
    for s in ("a", "b"):
        _pair(tmp_path, s)
    (tmp_path / "rgb" / "loop").symlink_to(tmp_path)
    ds = PairedDataset(rgb_glob="rgb/**/*.png", depth_glob="depth/**/*.png", root=tmp_path, encoding="png_mm")
    assert [Path(r).name for r, _ in ds.pairs] == ["a.png", "b.png"]


def test_glob_matching_nothing_is_named(tmp_path):
    with pytest.raises(InputError, match=r"rgb/\*\.png \(0 files\)"):
        PairedDataset(rgb_glob="rgb/*.png", depth_glob="depth/*.png", root=tmp_path, encoding="png_mm")


# ----------------------------------------------------------------------------- dataset config files


@pytest.mark.parametrize("text,expected", [
    ("type: paired\ncsv_path: [unclosed\n", "data.yaml:3:1: YAML syntax error"),
    ("type: paired\n  encoding: png_mm\n bad: indent\n", "data.yaml:2:"),
    ("- just\n- a list\n", "data.yaml: expected a mapping"),
])
def test_dataset_yaml_errors_name_file_and_line(text, expected, tmp_path, capsys):
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(InputError) as exc:
        build_dataset(tmp_path / "data.yaml")
    assert expected in str(exc.value)
    assert main(["data", "check", str(tmp_path / "data.yaml"), "--out", str(tmp_path / "check")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'data.yaml'}")


def test_data_check_names_the_bad_depth_file_and_counts_the_rest(tmp_path, capsys):
    rows = [_pair(tmp_path, "a"), _pair(tmp_path, "b", np.zeros(fc.SIZE, np.uint16)), _pair(tmp_path, "c")]
    (tmp_path / "list.csv").write_text("".join(f"{r},{d}\n" for r, d in rows))
    (tmp_path / "data.yaml").write_text(f"type: paired\ncsv_path: {tmp_path / 'list.csv'}\nencoding: png_mm\n")
    assert main(["data", "check", str(tmp_path / "data.yaml"), "--out", str(tmp_path / "check")]) == 1
    out = capsys.readouterr().out
    assert "depth/b.png: depth map has no valid pixel" in out and "3 listed" in out


# ----------------------------------------------------------------------------- the web app


@pytest.fixture(scope="module")
def predictor(one_thread):
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 16, 8, 8, 8]})
    return Predictor(model.eval(), precision="fp32", device="cpu")


def test_app_refuses_oversized_uploads_then_serves_the_next(predictor, tmp_path):
    gr = pytest.importorskip("gradio", reason="the web app needs gradio (pip install depthsmith[app])")
    on_upload = upload_callback(make_handler(predictor, max_pixels=100 * 100, max_file_mb=0.05, out_dir=tmp_path))
    uploads = tmp_path / "gradio" / "3f9c2e"  # where gradio keeps uploads: the user must not see it
    uploads.mkdir(parents=True)
    heavy = uploads / "noise.png"
    Image.fromarray((np.random.default_rng(0).random((160, 160, 3)) * 255).astype(np.uint8)).save(heavy)
    cases = {"wide.png": ("megapixels; this page accepts at most 0.01 megapixels", fc.good_png(uploads / "wide.png", 200, 300)),
             "noise.png": ("this page accepts images up to 0.05 MB", heavy),
             "thin.png": ("megapixels", fc.good_png(uploads / "thin.png", 2, 40000)),
             "bomb.png": ("too many pixels", fc.bomb_above_twice_limit(uploads / "bomb.png"))}
    for name, (expected, path) in cases.items():
        with pytest.raises(gr.Error) as exc:
            on_upload(str(path))
        assert expected in exc.value.message and str(uploads) not in exc.value.message, name
        rgb, colored, png, ply, note = on_upload(str(fc.good_png(uploads / "room.png", 60, 90)))  # still serving
        assert colored.shape == (60, 90, 3) and Path(png).is_file() and "90 x 60" in note
    generous = make_handler(predictor, max_pixels=10**6, max_file_mb=5, out_dir=tmp_path)
    rgb, colored, png, ply, note = generous(str(cases["thin.png"][1]))  # let through: runs at a capped size
    assert colored.shape == (2, 40000, 3) and "Network input 640 x 64" in note


def test_app_errors_show_the_file_name_not_the_server_path(predictor, tmp_path):
    handle = make_handler(predictor, max_pixels=10**6, max_file_mb=5, out_dir=tmp_path)
    uploads = tmp_path / "upload-cache" / "9a8b7c"
    uploads.mkdir(parents=True)
    for build, kind in ((fc.truncated_png, InputError), (fc.tiny_1x1, InputError), (fc.text_as_image, LimitError)):
        path = build(uploads / f"{build.__name__}.png")
        with pytest.raises(kind) as exc:
            handle(str(path))
        message = str(exc.value)
        assert str(uploads) not in message and "upload-cache" not in message, message
        if kind is not LimitError:  # limit messages need no name; read errors name the user's file
            assert message.startswith(f"{path.name}: "), message
