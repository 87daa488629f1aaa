"""NaN and inf are never silent: in a model's weights, in an input image, in a prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import depthsmith
from depthsmith.commands.predict import _predict_images
from depthsmith.models import load_model
from depthsmith.models.weights import NonFiniteWeightsError
from depthsmith.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model"
    depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None).save_pretrained(path)
    return path


def _poisoned(model_dir: Path, tmp_path: Path, key_part: str) -> tuple[Path, str]:
    bad = tmp_path / "nan_model"
    bad.mkdir()
    (bad / "config.json").write_text((model_dir / "config.json").read_text())
    state = load_file(model_dir / "model.safetensors")
    name = next(k for k in state if key_part in k and state[k].is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, bad / "model.safetensors")
    return bad, name


@pytest.mark.parametrize("key_part", ["weight", "running_var"])
def test_a_model_with_a_nan_tensor_is_refused_naming_it(model_dir, tmp_path, key_part):
    bad, name = _poisoned(model_dir, tmp_path, key_part)
    with pytest.raises(NonFiniteWeightsError) as err:
        load_model(bad)
    assert str(bad) in str(err.value) and name in str(err.value) and "1 of" in str(err.value)


def test_predict_with_a_nan_model_writes_nothing_and_exits_2(model_dir, tmp_path, capsys):
    bad, name = _poisoned(model_dir, tmp_path, "weight")
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--model", str(bad), "--out", str(tmp_path / "out")])
    assert code == 2 and name in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("a_*"))


def test_a_nan_input_image_is_a_named_failure_and_the_batch_goes_on(model_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "nan.npy", np.full((32, 40, 3), np.nan, np.float32))
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(inputs / "good.png")
    code = main(["predict", str(inputs), "--model", str(model_dir), "--out", str(tmp_path / "out"),
                 "--backend", "torch", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{inputs / 'nan.npy'}: image holds 3840 NaN/inf value(s) of 3840" in out
    assert (tmp_path / "out" / "good_depth16.png").is_file() and not (tmp_path / "out" / "nan_depth16.png").exists()


class _NanForOne:
    """A predictor whose prediction for ``b.png`` is NaN (a model that overflows on one input)."""

    name, units = "fake", "metres"

    def predict_many(self, items, batch_size, on_error=None):
        for key, image in items:
            depth = np.ones(image.shape[:2], np.float32)
            if key.name == "b.png":
                depth[0, 0] = np.inf
            yield key, image, depth


def test_a_non_finite_prediction_is_a_named_failure(tmp_path):
    files = []
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
        files.append(tmp_path / name)
    failures, count = [], [0]
    _predict_images(_NanForOne(), files, {f: f.stem for f in files}, tmp_path / "out", ["npy"], "inferno_r",
                    None, 2, failures, count)
    assert count == [2]
    assert failures == [f"{tmp_path / 'b.png'}: the prediction holds 1 NaN/inf value(s) of 64 (model fake); "
                        "nothing written for it"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_depth.npy", "c_depth.npy"]
