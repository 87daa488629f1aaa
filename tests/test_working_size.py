"""Every model runs at the size it was trained for: the working-size rule, its place in the config,
predict / eval / export / bench defaults, and the training config's size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.bench import fit_depth_head, synthetic_scene
from depthsmith.errors import InputError
from depthsmith.evaluate import evaluate
from depthsmith.inference import Predictor
from depthsmith.models.loading import ModelConfigError
from depthsmith.resize import example_size, parse_working_size, resized, working_size_for
from depthsmith.train.config import resolve_config
from depthsmith.train.schema import DataConfig, TrainConfig
from depthsmith.train.working_size import model_section, training_working_size

SIZES = [(480, 640), (640, 480), (96, 128), (375, 1242), (1000, 1000), (300, 301), (20, 30)]


@pytest.mark.parametrize("height, width", SIZES)
def test_keep_aspect_rule_is_transformers_dpt_processor(height, width):
    # Independent reference: transformers' own resize arithmetic of DPTImageProcessor, which the
    # published Depth Anything -hf processors use (518 x 518, keep_aspect_ratio, ensure_multiple_of 14).
    from transformers.models.dpt.image_processing_dpt import get_resize_output_image_size

    expected = get_resize_output_image_size(np.zeros((3, height, width)), (518, 518), True, 14)
    spec = {"height": 518, "width": 518, "keep_aspect": True, "multiple_of": 14}
    expected = dict(expected)  # a SizeDict in transformers 5
    assert working_size_for(spec, height, width) == (expected["height"], expected["width"])


@pytest.mark.parametrize("height, width", SIZES)
def test_short_side_rule_is_depth_anything_v2_upstream(height, width):
    # Independent reference: upstream Depth-Anything-V2's Resize as image2tensor builds it
    # (util/transform.py, PyPI jkp-depth-anything-v2).
    upstream = pytest.importorskip("depth_anything_v2.util.transform")
    resize = upstream.Resize(518, 518, resize_target=False, keep_aspect_ratio=True, ensure_multiple_of=14,
                             resize_method="lower_bound")
    new_width, new_height = resize.get_size(width, height)
    assert working_size_for({"short_side": 518, "multiple_of": 14}, height, width) == (new_height, new_width)


@pytest.mark.parametrize("height, width", SIZES)
def test_long_side_rule_is_depth_anything_3_upstream(height, width):
    # Independent reference: Depth Anything 3's own InputProcessor at its defaults (process_res=504,
    # upper_bound_resize; PyPI depth-anything-3, utils/io/input_processor.py), on a blank image.
    upstream = pytest.importorskip("depth_anything_3.utils.io.input_processor")
    images, _, _ = upstream.InputProcessor()([np.zeros((height, width, 3), np.uint8)], None, None, 504,
                                             "upper_bound_resize")
    assert working_size_for({"long_side": 504, "multiple_of": 14}, height, width) == tuple(images.shape[-2:])


def test_fixed_native_and_thin_images():
    assert working_size_for({"height": 96, "width": 128}, 480, 640) == (96, 128)
    assert working_size_for(None, 123, 45) == (123, 45)
    h, w = working_size_for({"short_side": 518, "multiple_of": 14}, 2, 40000)
    assert h == 518 and w == 518 * 4  # the long side capped (MAX_ASPECT), not 10 million pixels
    assert example_size({"short_side": 518, "multiple_of": 14}) == (518, 686)
    assert example_size(None) == (240, 320) and example_size({"short_side": 518}, 100, 200) == (100, 200)


def test_working_size_argument():
    assert parse_working_size("320x240") == {"height": 240, "width": 320}  # WxH, as image sizes are written
    assert parse_working_size("native") == "native" and parse_working_size("model") is None
    for bad in ("320", "0x10", "big"):
        with pytest.raises(InputError, match="--working-size"):
            parse_working_size(bad)
    from depthsmith.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["predict", "x.png", "--model", "m", "--out", "o", "--working-size", "320by240"])
    assert stop.value.code == 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", working_size={"height": 96, "width": 128}).eval()
    rgb, depth = synthetic_scene(96, 128)
    return fit_depth_head(model, torch.from_numpy(rgb).permute(2, 0, 1)[None], torch.from_numpy(depth))


def test_config_round_trip_and_old_configs(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "new")
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["working_size"] == {"height": 96, "width": 128}
    assert depthsmith.load_model(tmp_path / "new").working_size == {"height": 96, "width": 128}
    del config["working_size"]  # a model saved before the field existed
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(config))
    (old / "model.safetensors").write_bytes((tmp_path / "new" / "model.safetensors").read_bytes())
    assert depthsmith.load_model(old).working_size is None
    config["working_size"] = {"height": 96}
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelConfigError, match="config.json.*height and width"):
        depthsmith.load_model(old)


def test_predict_resizes_to_the_working_size_and_back(tiny):
    rgb = np.random.default_rng(0).random((240, 320, 3), dtype=np.float32)
    predictor = Predictor(tiny, precision="fp32", backend="torch-fp32")
    assert predictor.working_size(240, 320) == (96, 128) and "96x128" in predictor.describe()
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    with torch.no_grad():  # by hand: the resize rule in, the model, bilinear back
        expected = torch.nn.functional.interpolate(tiny(resized(x, (96, 128))), size=(240, 320), mode="bilinear")
    np.testing.assert_allclose(predictor.predict(rgb), expected[0, 0].numpy(), atol=1e-4)
    native = Predictor(tiny, precision="fp32", backend="torch-fp32", working_size="native")
    assert native.working_size(240, 320) == (240, 320)
    with torch.no_grad():
        at_own_size = tiny(x)[0, 0].numpy()
    np.testing.assert_allclose(native.predict(rgb), at_own_size, atol=1e-4)
    assert np.abs(native.predict(rgb) - predictor.predict(rgb)).max() > 1e-2  # the two differ
    fixed = Predictor(tiny, precision="fp32", backend="torch-fp32", working_size={"height": 64, "width": 64})
    assert fixed.working_size(240, 320) == (64, 64)


def test_eval_uses_the_working_size_unless_the_protocol_fixes_it(tiny):
    data = {"type": "synthetic", "num_samples": 3, "size": [240, 320], "seed": 2}
    small = {"type": "synthetic", "num_samples": 3, "size": [96, 128], "seed": 2}
    kw = dict(protocol="none", device="cpu", progress=False, min_depth=0.1, max_depth=10.0)
    default = evaluate(tiny, data, **kw)
    fixed = evaluate(tiny, data, working_size={"height": 96, "width": 128}, **kw)
    native = evaluate(tiny, data, working_size="native", **kw)
    assert default.metrics["abs_rel"] == pytest.approx(fixed.metrics["abs_rel"], abs=1e-9)
    assert abs(default.metrics["abs_rel"] - native.metrics["abs_rel"]) > 1e-4
    assert default.settings["eval_size"] == [96, 128] and native.settings["eval_size"] == [240, 320]
    assert "working size 96x128" in default.description
    # At its own working size nothing is resized: the same as native.
    assert evaluate(tiny, small, **kw).metrics["abs_rel"] == pytest.approx(
        evaluate(tiny, small, working_size="native", **kw).metrics["abs_rel"], abs=1e-9)
    with pytest.raises(InputError, match="protocol 'seed' fixes"):
        evaluate(tiny, data, protocol="seed", working_size={"height": 96, "width": 128}, device="cpu", progress=False)


def test_onnx_file_carries_the_working_size(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from depthsmith.runtime import model_working_size

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["depth"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 3, 4, 4])])
    proto = helper.make_model(graph)
    proto.metadata_props.add(key="depthsmith.working_size", value=json.dumps({"short_side": 518, "multiple_of": 14}))
    onnx.save(proto, str(tmp_path / "m.onnx"))
    assert model_working_size(tmp_path / "m.onnx") == {"short_side": 518, "multiple_of": 14}


@pytest.mark.parametrize("recipe, expected", [
    ("quickstart", {"height": 96, "width": 128}),  # synthetic rooms rendered at 96 x 128, no resize
    ("enc-dec-irv2-nyu", {"height": 240, "width": 320}),  # resize 240 x 320
    ("depth-anything-v2-metric-nyu", {"height": 518, "width": 686}),  # resize 518 x 686, then 518 crops
])
def test_training_size_from_the_recipe(recipe, expected):
    config = resolve_config(recipe)
    assert training_working_size(config.data) == expected
    assert model_section(config)["working_size"] == expected


def test_training_size_rules():
    assert training_working_size(DataConfig(train={"type": "paired", "csv_path": "x.csv"})) is None  # native
    assert training_working_size(DataConfig(transforms={"resize": {"size": 64}, "random_crop": {"size": 32}})) == \
        {"height": 64, "width": 64}  # the crop keeps the resize's pixel scale
    config = TrainConfig(model={"name": "x", "working_size": None},
                         data=DataConfig(transforms=[{"name": "resize", "size": 8}]))
    assert model_section(config)["working_size"] is None  # set by the user: kept
