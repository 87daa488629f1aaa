"""ONNX export: dynamic height and width, parity with PyTorch, `predict --backend onnx`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.bench import fit_depth_head, synthetic_scene
from depthsmith.cli import main
from depthsmith.export import OnnxRunner, export_onnx
from depthsmith.io import read_png16


def _varied(model):
    rgb, depth = synthetic_scene(96, 128)
    return fit_depth_head(model.eval(), torch.from_numpy(rgb).permute(2, 0, 1)[None], torch.from_numpy(depth))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = _varied(depthsmith.create_model("test_convnext", decoder="unet", encoder_weights=None))
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return model, export_onnx(model, path, height=64, width=96)


def test_export_has_dynamic_sizes_and_matches_pytorch(exported):
    model, result = exported
    assert result.ok, result.summary()
    assert len(result.checks) == 2 and result.checks[0].shape != result.checks[1].shape  # second, different size
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][1:] == [3, "height", "width"]
    runner = OnnxRunner(result.path)
    assert runner.is_metric and runner.max_depth == model.max_depth
    x = torch.rand(3, 3, 83, 117)  # a third size, batch 3
    with torch.no_grad():
        ref = model(x).numpy()
    out = runner(x.numpy())
    assert out.shape == (3, 1, 83, 117)
    assert np.abs(out - ref).max() < 1e-4


def test_weights_past_protobufs_limit_are_written_as_external_data():
    # Past 2 GB, python protobuf's ByteSize() raises instead of answering (seen on Depth Pro's 3.8 GB;
    # building a real 2 GB message here would take 4 GB and 10 s): that means "too big", not a failure.
    from google.protobuf.message import EncodeError

    from depthsmith.runtime.export_onnx import PROTOBUF_LIMIT, _over_protobuf_limit

    class Message:
        def __init__(self, size):
            self.size = size

        def ByteSize(self):
            if self.size > PROTOBUF_LIMIT:
                raise EncodeError("Failed to serialize proto")
            return self.size

    assert _over_protobuf_limit(Message(2**32)) and not _over_protobuf_limit(Message(10**6))


@pytest.mark.slow  # a second export of the tiny model (~15 s)
def test_external_data_export_runs_in_onnx_runtime_and_openvino(exported, tmp_path):
    """Weights in model.onnx.data beside the file (the way past protobuf's 2 GB, taken automatically
    above it; forced here on a tiny model): checked in ONNX Runtime by the export, and OpenVINO
    reads the same file."""
    model, _ = exported
    result = export_onnx(model, tmp_path / "model.onnx", height=64, width=96, external_data=True)
    data = tmp_path / "model.onnx.data"
    assert result.ok and data.is_file(), result.summary()
    assert result.path.stat().st_size < data.stat().st_size and "weights in model.onnx.data" in result.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]  # no temp folder left
    pytest.importorskip("openvino")
    from depthsmith.runtime.openvino_ir import core

    x = torch.rand(1, 3, 70, 90)
    request = core().compile_model(str(result.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    with torch.no_grad():
        np.testing.assert_allclose(request.infer({0: x.numpy()})[0], model(x).numpy(), atol=1e-4)


def test_predict_backend_onnx_matches_torch(exported, tmp_path):
    model, result = exported
    rgb = (np.random.default_rng(0).random((70, 100, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--model", str(result.path), "--backend", "onnx",
                 "--out", str(tmp_path / "out"), "--save", "npy"])
    assert code == 0
    with torch.no_grad():
        ref = model(torch.from_numpy(rgb / np.float32(255)).permute(2, 0, 1)[None])[0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out" / "a_depth.npy"), ref, atol=1e-4)


def test_export_cli_prints_the_difference(tmp_path, capsys):
    depthsmith.create_model("test_resnet", decoder="unet").save_pretrained(tmp_path / "m")
    code = main(["export", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "m" / "model.onnx"),
                 "--height", "64", "--width", "80"])
    printed = capsys.readouterr().out
    assert code == 0 and "max abs diff" in printed and "check OK" in printed
    # predict --backend onnx with the model folder uses the model.onnx exported into it
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "z.png")
    assert main(["predict", str(tmp_path / "z.png"), "--model", str(tmp_path / "m"), "--backend", "onnx",
                 "--out", str(tmp_path / "o")]) == 0
    assert "(onnx, fp32)" in capsys.readouterr().out
    assert read_png16(tmp_path / "o" / "z_depth16.png").shape == (50, 60)


@pytest.mark.slow
def test_paper_model_exports_with_dynamic_height_and_width(tmp_path):
    """The fx-traced, truncated Inception-ResNet-v2 encoder and its valid-padding skips."""
    torch.manual_seed(0)
    model = _varied(depthsmith.create_model("enc-dec-irv2"))
    result = export_onnx(model, tmp_path / "irv2.onnx", height=96, width=128)
    assert result.ok, result.summary()
    assert result.max_abs_diff < 1e-3


def test_seed_options_export_with_dynamic_sizes(tmp_path):
    """The seed's pad rule (sizes computed from symbolic H and W) and BGR reorder in ONNX."""
    torch.manual_seed(0)
    model = _varied(depthsmith.create_model("test_resnet", decoder_kwargs={"align": "pad"}, channel_order="bgr",
                                            input_norm="minmax", encoder_kwargs={"include_input": True}))
    result = export_onnx(model, tmp_path / "seed-options.onnx", height=64, width=96)
    assert result.ok, result.summary()
    x = torch.rand(1, 3, 77, 101)  # off every stride's grid: padded and cropped
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(OnnxRunner(result.path)(x.numpy()) - ref).max() < 1e-4
