"""Fault injection: bad inputs through predict, the model loader, the dataset readers, `data
check` and the web app. Each must end in one error type (InputError) whose message names the
file, or, in a batch, be named in the summary while the other files are still processed.

The corpus is built here, in tmp dirs (tests/fault_corpus.py); the model is a tiny timm
encoder saved with save_pretrained.
"""

from __future__ import annotations

import ast
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import depthsmith
import fault_corpus as fc
from depthsmith.cli import main
from depthsmith.errors import InputError
from depthsmith.inference import Predictor
from depthsmith.io import depth_to_points, read_png16

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, one_thread) -> Path:
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 16, 8, 8, 8]})
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def _predict(inputs, model_dir, out, *extra) -> int:
    return main(["predict", *map(str, inputs), "--model", str(model_dir), "--out", str(out),
                 "--save", "png16", "--precision", "fp32", "--device", "cpu", *extra])


# ----------------------------------------------------------------------------- predict: one bad file among good ones


@pytest.mark.parametrize("case", sorted(fc.BAD_IMAGES))
def test_bad_image_first_in_a_batch_is_named_and_the_rest_run(case, model_dir, tmp_path, capsys):
    build, suffix = fc.BAD_IMAGES[case]
    bad = build(tmp_path / f"a_{case}{suffix}")  # first: it used to end the whole run
    goods = [fc.good_png(tmp_path / f"b_good{i}.png") for i in range(2)]
    code = _predict([bad, *goods], model_dir, tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 1, captured
    summary = captured.out.split("input(s) failed:")[1]
    assert bad.name in summary and "Traceback" not in captured.out + captured.err
    for good in goods:
        assert read_png16(tmp_path / "out" / f"{good.stem}_depth16.png").shape == fc.SIZE
    assert not (tmp_path / "out" / f"{bad.stem}_depth16.png").exists()


@pytest.mark.parametrize("case", sorted(fc.VALID_IMAGES))
def test_awkward_but_valid_image_gets_depth_at_its_own_size(case, model_dir, tmp_path, capsys):
    build, suffix = fc.VALID_IMAGES[case]
    path = tmp_path / f"{case}{suffix}"
    shape = build(path)
    assert _predict([path], model_dir, tmp_path / "out") == 0, capsys.readouterr()
    depth = read_png16(tmp_path / "out" / f"{case}_depth16.png")
    assert depth.shape == shape and depth.max() > 0


def test_thin_image_works_at_a_capped_size_on_both_sides(model_dir):
    predictor = Predictor(str(model_dir), precision="fp32", device="cpu", max_side=640)
    assert predictor.working_size(2, 40000) == (64, 640)  # not 64 x 1,280,000
    assert predictor.working_size(40000, 2) == (640, 64)
    assert predictor.working_size(300, 500) == (300, 500)  # ordinary images untouched
    assert predictor.predict(np.zeros((2, 40000, 3), np.uint8)).shape == (2, 40000)


@pytest.mark.parametrize("case", ["missing_file", "dangling_symlink", "glob_matches_nothing"])
def test_input_naming_nothing_is_listed_and_the_rest_run(case, model_dir, tmp_path, capsys):
    good = fc.good_png(tmp_path / "good.png")
    bad = {"missing_file": tmp_path / "nope.png", "dangling_symlink": tmp_path / "link.png",
           "glob_matches_nothing": tmp_path / "*.webp"}[case]
    if case == "dangling_symlink":
        bad.symlink_to(tmp_path / "gone.png")
    assert _predict([bad, good], model_dir, tmp_path / "out") == 1
    assert str(bad) in capsys.readouterr().out
    assert (tmp_path / "out" / "good_depth16.png").is_file()


def test_recursive_glob_over_a_symlink_loop_finds_each_image_once(model_dir, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    fc.good_png(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "up").symlink_to(tmp_path)  # two loops: glob.glob never returned here
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a")
    assert _predict([f"{tmp_path}/**/*.png"], model_dir, tmp_path / "out") == 0
    assert "1 of 1 inputs written" in capsys.readouterr().out


# ----------------------------------------------------------------------------- predict: arguments


@pytest.mark.parametrize("args,expected", [
    (["--batch-size", "0"], "--batch-size: 0 is too small: give an integer >= 1"),
    (["--max-side", "0"], "--max-side: 0 is too small: give an integer >= 64"),
])
def test_nonsense_sizes_are_refused_by_the_cli(args, expected, model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _predict([fc.good_png(tmp_path / "g.png")], model_dir, tmp_path / "out", *args)
    assert exc.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.parametrize("k", [[0, 500, 320, 240], [500, -500, 320, 240], [500, 500, -1, 240]])
def test_bad_intrinsics_are_refused_by_cli_and_api(k, model_dir, tmp_path, capsys):
    code = _predict([fc.good_png(tmp_path / "g.png")], model_dir, tmp_path / "out", "--intrinsics", *map(str, k))
    assert code == 2 and "FX, FY > 0 and principal point CX, CY >= 0" in capsys.readouterr().err
    with pytest.raises(InputError, match="intrinsics"):
        depth_to_points(np.ones((4, 4), np.float32), k)


def test_nonsense_sizes_are_refused_by_the_api(model_dir):
    with pytest.raises(InputError, match=r"max_side=0 is not valid: give an integer >= 64"):
        Predictor(str(model_dir), max_side=0)
    predictor = Predictor(str(model_dir), precision="fp32", device="cpu")
    with pytest.raises(InputError, match=r"batch_size=0 is not valid: give an integer >= 1"):
        list(predictor.predict_many([("a", np.zeros((8, 8, 3), np.uint8))], batch_size=0))
    with pytest.raises(InputError, match="1 x 1 pixels"):
        predictor.predict(np.zeros((1, 1, 3), np.uint8))


def test_out_pointing_at_a_file_is_refused(model_dir, tmp_path, capsys):
    (tmp_path / "out.txt").write_text("mine")
    assert _predict([fc.good_png(tmp_path / "g.png")], model_dir, tmp_path / "out.txt") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "out.txt is an existing file" in err
    assert (tmp_path / "out.txt").read_text() == "mine"


@pytest.mark.parametrize("content", [b"", b"not a protobuf at all \x00\xff" * 8])
def test_bad_onnx_file_is_named(content, tmp_path, capsys):
    onnx = tmp_path / "broken.onnx"
    onnx.write_bytes(content)
    code = main(["predict", str(fc.good_png(tmp_path / "g.png")), "--model", str(onnx), "--out",
                 str(tmp_path / "out"), "--backend", "onnx"])
    err = capsys.readouterr().err
    assert code == 2 and "broken.onnx: not a valid ONNX model" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- model folders


@pytest.mark.parametrize("case", sorted(fc.MODEL_CASES))
def test_broken_model_folder_is_named(case, model_dir, tmp_path, capsys):
    folder = Path(shutil.copytree(model_dir, tmp_path / "model"))
    target, expected = fc.MODEL_CASES[case](folder)
    with pytest.raises(InputError) as exc:
        depthsmith.load_model(target)
    assert expected in str(exc.value)
    code = _predict([fc.good_png(tmp_path / "g.png")], target, tmp_path / "out")  # and the CLI: one line
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and expected in err and "Traceback" not in err


@pytest.mark.parametrize("path", ["./runs/my_modle", "~/no/such/model", "model_dir_typo/final", "best.safetensors"])
def test_mistyped_local_path_is_not_tried_as_a_hub_id(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model_dir_typo").mkdir()
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="does not exist .not tried as a Hub id"):
        depthsmith.load_model(path)
    assert time.perf_counter() - start < 5  # no network retries


# ----------------------------------------------------------------------------- the code itself


def _unsafe_torch_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` calls without a literal ``weights_only=True``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                lines.append(node.lineno)
    return lines


def test_every_torch_load_in_src_has_weights_only_true():
    unsafe = [f"{p.relative_to(SRC)}:{line}" for p in sorted(SRC.rglob("*.py")) for line in _unsafe_torch_loads(p.read_text())]
    assert not unsafe, f"torch.load without weights_only=True (unpickles arbitrary code): {unsafe}"


def test_the_torch_load_check_can_fail():
    source = "import torch\na = torch.load(p)\nb = torch.load(p, weights_only=False)\nc = torch.load(p, weights_only=True)\n"
    assert _unsafe_torch_loads(source) == [2, 3]
