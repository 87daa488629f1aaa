"""The seed's Keras checkpoint: the notebook's own network, built with Keras 3, against depthsmith.

``keras_seed_reference.py`` builds the notebook's model (in a fresh process: its tap names
come from Keras' global counters), gives it random BatchNorm statistics, saves it as
``.keras`` and records its outputs. depthsmith reads that file without Keras and must
compute the same function.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.cli import main
from depthsmith.inference import Predictor
from depthsmith.models import load_any
from depthsmith.models import WeightFileError

# Not imported here: Keras picks its backend at import, and only the reference process needs it.
if importlib.util.find_spec("keras") is None:
    pytest.skip("the reference model is built with Keras 3 (pip install 'keras>=3')", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-4


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("keras_seed")
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    script = Path(__file__).with_name("keras_seed_reference.py")
    done = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    arrays = dict(np.load(out / "reference.npz"))
    return {"path": out / "seed.keras", **arrays}


@pytest.fixture(scope="module")
def seed_model(reference) -> depthsmith.DepthModel:
    return depthsmith.load_model(reference["path"])


def _run(model: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(rgb)).numpy()


def test_matches_the_keras_model_at_240x320(reference, seed_model) -> None:
    ref = reference["out_240x320"]
    assert ref.std() > 1e-3  # a reference that varies: the comparison below can fail
    diff = np.abs(_run(seed_model, reference["rgb_240x320"]) - ref).max()
    print(f"max abs diff vs Keras at 240x320: {diff:.3g}")
    assert diff < TOL


def test_matches_the_keras_model_at_480x640(reference, seed_model) -> None:
    diff = np.abs(_run(seed_model, reference["rgb_480x640"]) - reference["out_480x640"]).max()
    print(f"max abs diff vs Keras at 480x640: {diff:.3g}")
    assert diff < TOL


def test_the_comparison_sees_each_seed_detail(reference, seed_model) -> None:
    # Each of these is a way depthsmith used to differ from the seed; each must break the match.
    x, ref = reference["rgb_240x320"], reference["out_240x320"]
    variants = {
        "skip resize instead of zero padding": lambda m: setattr(m.decoder, "align", "resize"),
        "RGB instead of BGR": lambda m: setattr(m.input_norm, "channel_order", "rgb"),
        "torch's BatchNorm eps": lambda m: [setattr(b.fuse[i], "eps", 1e-5) for b in m.decoder.blocks for i in (2, 5)],
    }
    for what, change in variants.items():
        other = copy.deepcopy(seed_model)
        change(other)
        assert np.abs(_run(other, x) - ref).max() > TOL, what


def test_other_sizes_run(seed_model) -> None:
    for size in [(231, 307), (97, 131)]:
        y = _run(seed_model, np.random.default_rng(1).random((1, 3, *size), dtype=np.float32))
        assert y.shape == (1, 1, *size) and np.isfinite(y).all() and 0 <= y.min() <= y.max() <= 1


def test_imported_model_is_the_seed_configuration(reference, seed_model) -> None:
    assert "seed Keras checkpoint seed.keras" in seed_model.name
    assert seed_model.output == "relative" and not seed_model.is_metric
    assert (seed_model.input_norm.mode, seed_model.input_norm.channel_order) == ("minmax", "bgr")
    assert seed_model.num_parameters() == depthsmith.create_model("enc-dec-irv2").num_parameters()
    assert not seed_model.training


def test_convert_writes_a_folder_load_model_reloads(reference, seed_model, tmp_path, capsys) -> None:
    out = tmp_path / "seed-model"
    assert main(["convert", str(reference["path"]), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["channel_order"] == "bgr"
    reloaded = depthsmith.load_model(out)
    x = reference["rgb_240x320"][:1]
    np.testing.assert_array_equal(_run(reloaded, x), _run(seed_model, x))
    assert reloaded.name == seed_model.name


def test_every_model_option_accepts_the_keras_file(reference) -> None:
    assert isinstance(load_any(str(reference["path"])), depthsmith.DepthModel)
    predictor = Predictor(str(reference["path"]), device="cpu", backend="torch-fp32")  # loading is under test, not auto
    rgb = (np.random.default_rng(2).random((60, 80, 3)) * 255).astype(np.uint8)
    depth = predictor.predict(rgb)
    assert depth.shape == (60, 80) and np.isfinite(depth).all()
    assert "not metres" in predictor.units


def _rezip(src: Path, dst: Path, edit=None, drop: str | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == drop:
                continue
            data = zin.read(name)
            zout.writestr(name, edit(data) if edit and name == "config.json" else data)
    return dst


def test_files_that_are_not_the_seed_model_are_named(reference, tmp_path) -> None:
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(WeightFileError, match="junk.keras is not a .keras file"):
        depthsmith.load_model(junk)
    with pytest.raises(WeightFileError, match="nope.keras does not exist"):
        depthsmith.load_model(tmp_path / "nope.keras")
    with pytest.raises(WeightFileError, match="no-weights.keras is a zip without model.weights.h5"):
        depthsmith.load_model(_rezip(reference["path"], tmp_path / "no-weights.keras", drop="model.weights.h5"))

    def repad(config: bytes) -> bytes:  # the stride-8 tap padded (1,1) instead of the seed's ((2,1),(2,1))
        cfg = json.loads(config)
        layer = next(x for x in cfg["config"]["layers"] if x["config"].get("padding") == [[2, 1], [2, 1]])
        layer["config"]["padding"] = [[1, 2], [1, 2]]
        return json.dumps(cfg).encode()

    with pytest.raises(WeightFileError, match=r"repadded.keras: layer 'zero_padding2d_\d+' pads 27x37"):
        depthsmith.load_model(_rezip(reference["path"], tmp_path / "repadded.keras", edit=repad))


def test_another_architecture_names_the_first_layer_that_does_not_fit(tmp_path) -> None:
    # A small Keras model whose first conv has the shape of IRv2's first conv and whose second does not.
    code = (
        "import sys, keras\n"
        "from keras import layers\n"
        "i = keras.Input((64, 64, 3))\n"
        "x = layers.Conv2D(32, 3, strides=2, use_bias=False, name='stem')(i)\n"
        "x = layers.Activation('relu')(layers.BatchNormalization(scale=False, name='stem_bn')(x))\n"
        "x = layers.Conv2D(48, 3, padding='same', use_bias=False, name='wider')(x)\n"
        "o = layers.Conv2D(1, 3, padding='same', name='conv10')(x)\n"
        "keras.Model(i, o).save(sys.argv[1])\n"
    )
    path = tmp_path / "other.keras"
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first_misfit = r"other.keras: Keras layer 'wider' .* does not fit encoder module conv2d_2a"
    with pytest.raises(WeightFileError, match=first_misfit):
        depthsmith.load_model(path)
    # a zip with the right members but no functional graph in it
    with zipfile.ZipFile(tmp_path / "plain.keras", "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {}}))
        zf.writestr("model.weights.h5", b"")
    with pytest.raises(WeightFileError, match="plain.keras: config.json describes a Sequential"):
        depthsmith.load_model(tmp_path / "plain.keras")


def test_eval_of_the_keras_checkpoint_on_the_labeled_mat_under_seed_and_standard_protocols(reference, tmp_path,
                                                                                           capsys) -> None:
    """`depthsmith eval --model seed.keras --data <labeled mat> --protocol seed`, on a 2-image fixture of
    nyu_depth_v2_labeled.mat read with the seed's test split (indices 0-653 in file order)."""
    import yaml

    from helpers import make_nyu_mat

    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), rng.integers(700, 6000, (480, 640)), f"r{i}")
             for i in range(2)]
    mat, splits = make_nyu_mat(tmp_path / "nyu", pairs, train_ndx=[1], test_ndx=[2])
    splits.unlink()  # seed_test needs no splits.mat
    cfg = tmp_path / "labeled.yaml"
    cfg.write_text(yaml.safe_dump({"type": "nyu_mat", "path": str(mat), "split": "seed_test"}))
    runs = {"seed": ["--protocol", "seed"], "seed-raw": ["--protocol", "seed", "--seed-input", "raw"],
            "standard": ["--protocol", "nyu-eigen", "--align", "lstsq"]}
    metrics = {}
    for name, extra in runs.items():
        out = tmp_path / name
        assert main(["eval", "--model", str(reference["path"]), "--data", str(cfg), "--out", str(out),
                     "--device", "cpu", *extra]) == 0
        metrics[name] = json.loads((out / "metrics.json").read_text())
    printed = capsys.readouterr().out
    assert "NON-STANDARD EVALUATION" in printed
    assert metrics["seed"]["status"] == "NON-STANDARD" and metrics["seed"]["metrics"]["n_images"] == 2
    assert metrics["seed"]["metrics"]["n_valid"] == 2 * 441 * 593  # the seed's crop, no mask
    assert "RGB x/255" in metrics["seed-raw"]["label"]
    assert metrics["seed-raw"]["metrics"]["abs_rel"] != metrics["seed"]["metrics"]["abs_rel"]
    assert metrics["standard"]["status"] == "standard" and "least-squares" in metrics["standard"]["description"]
