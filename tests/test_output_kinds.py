"""Output kinds (models/heads.py): each kind's head against its formula written out by hand, every kind
exported to ONNX and OpenVINO and matching PyTorch relative to the output's scale, a wrong head caught
by that tolerance, and a model that cannot be exported left out of ``auto`` before anything is timed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.errors import InputError
from depthsmith.models.heads import DISPARITY_RANGE, OUTPUT_KINDS, output_kind

pytestmark = pytest.mark.usefixtures("one_thread")
H, W = 48, 64


def _tiny(kind: str) -> depthsmith.DepthModel:
    """A tiny model whose logits vary over several units (head weights scaled up), so that sigmoid,
    ReLU and the disparity floor all take part."""
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 8, 8, 8, 8]},
                                    output=kind, max_depth=10.0, min_depth=0.1)
    with torch.no_grad():
        model.decoder.head.weight.mul_(200.0)
    return model.eval()


def _by_hand(kind: str, logits: np.ndarray, lo: float = 0.1, hi: float = 10.0) -> np.ndarray:
    """Each kind's published formula, written independently of heads.py."""
    sig = 1.0 / (1.0 + np.exp(-logits))
    relu = np.maximum(logits, 0.0)
    if kind == "metric":  # sigmoid x max_depth (Depth-Anything-V2 metric_depth/depth_anything_v2/dpt.py)
        return sig * hi
    if kind == "metric_relu":  # DPT: ReLU output, scaled
        return relu * hi
    if kind == "metric_direct":  # the decoder already gives metres
        return logits
    if kind == "inverse":  # DenseDepth: depth = min_depth / output, output floored at min/max
        return lo / np.maximum(sig, lo / hi)
    if kind == "relative":
        return sig
    if kind == "exp_depth":  # Depth Anything 3's DPT head: activation "exp" (depth_anything_3/model/dpt.py)
        return np.exp(logits)
    if kind == "disparity":  # max disparity / disparity, disparity floored at max / 1000, over 1000
        top = max(relu.max(), 1e-12)
        return top / np.maximum(relu, top / DISPARITY_RANGE) / DISPARITY_RANGE
    raise AssertionError(f"no hand formula for output kind {kind!r}: add one")


@pytest.mark.parametrize("kind", OUTPUT_KINDS.names())
def test_head_matches_the_formula(kind: str) -> None:
    model = _tiny(kind)
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model.logits(x)
        depth = model(x)
    assert logits.std() > 1.0 and logits.min() < 0 < logits.max()  # the head is exercised over its whole range, not around one value
    expected = _by_hand(kind, logits.double().numpy())
    np.testing.assert_allclose(depth.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert model.is_metric == (not output_kind(kind).unitless)


def test_an_unknown_kind_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="metric_relu"):
        depthsmith.create_model("test_resnet", output="metres")
    with pytest.raises(InputError, match="valid: metric"):
        output_kind("metres")


@pytest.mark.parametrize("kind", OUTPUT_KINDS.names())
def test_every_kind_exports_to_onnx_and_openvino(kind: str, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    import onnxruntime as ort

    from depthsmith.export import export_onnx
    from depthsmith.runtime.openvino_ir import convert_to_openvino, core

    model = _tiny(kind)
    result = export_onnx(model, tmp_path / "m.onnx", height=H, width=W)
    assert result.ok, result.summary()
    # Checked here with ONNX Runtime and OpenVINO directly, at a size the export did not check.
    x = torch.rand(2, 3, 37, 83, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x).numpy()
    space = output_kind(kind).in_affine_space  # disparity models are compared as disparity
    ref = space(ref)
    scale = np.abs(ref).max()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = space(session.run(None, {"image": x.numpy()})[0])
    assert np.abs(got - ref).max() <= 1e-4 * scale, kind
    convert_to_openvino(tmp_path / "m.onnx", tmp_path / "m.xml")  # what export --format openvino converts
    compiled = core().compile_model(str(tmp_path / "m.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = space(compiled(x.numpy())[0])
    assert np.abs(got - ref).max() <= 1e-4 * scale, kind


def test_a_wrong_head_fails_the_relative_check(tmp_path) -> None:
    """The bug this record fixed: a disparity model exported with a sigmoid head. Its outputs are
    around 1e-3..1, so an absolute 1e-3 could pass it; the check relative to the output's scale cannot."""
    pytest.importorskip("onnxruntime")
    from depthsmith.export import TOLERANCE, check_onnx, export_onnx

    disparity = _tiny("disparity")
    wrong = _tiny("relative")  # the same weights under a sigmoid head
    assert export_onnx(disparity, tmp_path / "d.onnx", height=H, width=W).ok
    checks = check_onnx(tmp_path / "d.onnx", wrong, [(1, H, W)])
    assert checks[0].relative > 100 * TOLERANCE


def test_unexportable_model_is_left_out_of_auto_before_timing(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from depthsmith.runtime import AutoRunner
    from depthsmith.runtime import cache as cache_module
    from depthsmith.runtime.cache import ExportMismatchError, exported_onnx

    model = _tiny("disparity")
    model.name = "broken-export"
    exports = []

    class Failing:  # what export_onnx returns when ONNX Runtime disagrees with PyTorch
        ok = False

        def summary(self) -> str:
            return "check FAILED: max abs diff 0.999"

    def failing_export(*args, **kwargs):
        exports.append(args)
        return Failing()

    monkeypatch.setattr("depthsmith.runtime.export_onnx.export_onnx", failing_export)
    monkeypatch.setattr(cache_module, "cache_dir", lambda: tmp_path)
    with pytest.raises(ExportMismatchError, match="broken-export.*disparity.*does not match PyTorch"):
        exported_onnx(model)
    assert isinstance(ExportMismatchError("x"), InputError) and len(exports) == 1

    built = []
    auto = AutoRunner(model, probe=lambda runner, x: built.append(runner.backend) or 1.0,
                      cache=tmp_path / "choices.json", busy=False)
    auto(torch.rand(1, 3, H, W))
    assert len(exports) == 1  # the recorded failure: nothing exported or timed again
    assert not any(b.startswith(("onnx", "openvino")) for b in built)
    assert auto.backend.startswith("torch")
    assert "onnx: not tried: the ONNX export of model broken-export" in capsys.readouterr().out


def test_readme_table_is_the_registry() -> None:
    from pathlib import Path

    from depthsmith.models.heads import output_kind_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- output-kind-table -->\n", 1)[1].split("\n<!-- /output-kind-table -->", 1)[0]
    assert block == output_kind_table()
