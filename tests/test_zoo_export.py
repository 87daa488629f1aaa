"""Every converted zoo family exported: ONNX Runtime and OpenVINO against PyTorch at the export size and
at a different size and batch, judged by the export module's own check (``compare`` / ``TOLERANCE``:
relative to the output's scale, in the space the output kind is affine in). A family that cannot be
exported (ZoeDepth) says why before any tracing, and ``auto`` leaves ONNX and OpenVINO out for it.

The models are the tiny random transformers models of the conversion tests (tests/helpers.py),
saved with ``save_pretrained`` and converted by ``depthsmith.load_model``.
"""

from __future__ import annotations

import pytest
import torch

import depthsmith
from depthsmith.errors import InputError
from helpers import (DPT_VARIANTS, ZOE_BINS, save_hf_depth_anything, save_hf_depth_pro, save_hf_dpt, save_hf_zoedepth,
                     tiny_hf_depth_anything, tiny_hf_depth_pro, tiny_hf_dpt, tiny_hf_zoedepth)

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

EXPORT = (64, 96)  # the traced size; checked there and at CHECKED_TOO, which is a multiple of no patch
CHECKED_TOO = (2, 53, 83)


def _da2(kind: str, folder):
    save_hf_depth_anything(tiny_hf_depth_anything(kind), folder)


FAMILIES = {  # name -> writes a transformers checkpoint folder
    "da2-relative": lambda folder: _da2("relative", folder),
    "da2-metric": lambda folder: _da2("metric", folder),
    "dpt-vit": lambda folder: save_hf_dpt(tiny_hf_dpt(**DPT_VARIANTS["project"]), folder),
    "dpt-beit": lambda folder: save_hf_dpt(tiny_hf_dpt(**DPT_VARIANTS["beit"]), folder),
    "dpt-hybrid": lambda folder: save_hf_dpt(tiny_hf_dpt(**DPT_VARIANTS["hybrid"]), folder),
    "depth-pro": lambda folder: save_hf_depth_pro(tiny_hf_depth_pro(), folder),
}


def _converted(family: str, folder) -> depthsmith.DepthModel:
    FAMILIES[family](folder)
    return depthsmith.load_model(folder).float().eval()


@pytest.mark.slow  # 15-30 s a family on one core: torch.export of a whole ViT + DPT, then two runtimes
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_exports_to_onnx_and_openvino_at_any_size(family, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from depthsmith.export import TOLERANCE, check_onnx, export_onnx
    from depthsmith.runtime.export_onnx import compare
    from depthsmith.runtime.openvino_ir import OpenVinoRunner, convert_to_openvino

    model = _converted(family, tmp_path / "hf")
    assert model.export_unsupported == ""
    export_onnx(model, tmp_path / "m.onnx", height=EXPORT[0], width=EXPORT[1], check=False)
    shapes = [(1, *EXPORT), CHECKED_TOO]
    onnx_checks = check_onnx(tmp_path / "m.onnx", model, shapes)
    convert_to_openvino(tmp_path / "m.onnx", tmp_path / "m.xml")  # what export --format openvino converts
    runner, ov_checks = OpenVinoRunner(tmp_path / "m.xml", "fp32"), []
    gen = torch.Generator().manual_seed(4)
    for b, h, w in shapes:
        x = torch.rand(b, 3, h, w, generator=gen)
        with torch.no_grad():
            ov_checks.append(compare((b, 3, h, w), runner(x).numpy(), model(x).numpy(), model.output_kind))
    print(family, "ONNX:", *onnx_checks, "| OpenVINO:", *ov_checks, sep="\n  ")
    for check in onnx_checks + ov_checks:
        assert check.scale > 0 and check.relative <= TOLERANCE, (family, str(check))
    assert [c.shape for c in onnx_checks] == [(1, 3, *EXPORT), (2, 3, *CHECKED_TOO[1:])]


@pytest.fixture(scope="module")
def zoedepth(tmp_path_factory):
    return depthsmith.load_model(save_hf_zoedepth(tiny_hf_zoedepth(ZOE_BINS[:1]), tmp_path_factory.mktemp("zoe")))


def test_zoedepth_says_why_it_cannot_be_exported_before_tracing(zoedepth, tmp_path):
    from depthsmith.export import export_onnx

    reason = zoedepth.export_unsupported
    assert "ZoeDepth" in reason and "square root" in reason
    with pytest.raises(InputError, match="cannot be exported to ONNX: ZoeDepth's input padding"):
        export_onnx(zoedepth, tmp_path / "zoe.onnx", height=EXPORT[0], width=EXPORT[1])
    assert not (tmp_path / "zoe.onnx").exists()
    # Without the processor's padding and resize (a ZoeDepth decoder on a plain input) nothing is declared.
    plain = depthsmith.create_model("test_vit", decoder="zoedepth")
    assert plain.export_unsupported == ""


def test_auto_leaves_onnx_and_openvino_out_for_zoedepth(zoedepth, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from depthsmith.runtime import AutoRunner

    built = []
    auto = AutoRunner(zoedepth, probe=lambda runner, x: built.append(runner.backend) or 1.0,
                      cache=tmp_path / "choices.json", busy=False)
    with torch.no_grad():
        auto(torch.rand(1, 3, 40, 56))
    assert built and not any(b.startswith(("onnx", "openvino")) for b in built)
    assert auto.backend.startswith("torch")
    assert "ZoeDepth's input padding" in capsys.readouterr().out


@pytest.mark.slow  # an ONNX export, an OpenVINO conversion and NNCF's calibration: 20-40 s on one core
def test_int8_export_of_a_zoo_model_applies_the_accuracy_gate(tmp_path, capsys):
    """``export --format openvino --int8 --calibration <folder>`` on a converted Depth Anything V2: the
    int8 model is written exactly when its held-out difference from fp32 is within the tolerance (a
    random tiny model may well be refused; what is checked is that the verdict follows the number)."""
    pytest.importorskip("nncf")
    import re

    import numpy as np
    from PIL import Image

    from depthsmith.bench import synthetic_rooms
    from depthsmith.cli import main

    _da2("relative", tmp_path / "hf")
    calibration = tmp_path / "calib"
    calibration.mkdir()
    for i, room in enumerate(synthetic_rooms(8, *EXPORT, seed=11)):
        Image.fromarray((room[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(calibration / f"{i}.png")
    out = tmp_path / "int8.xml"
    code = main(["export", "--model", str(tmp_path / "hf"), "--out", str(out), "--format", "openvino", "--int8",
                 "--calibration", str(calibration), "--height", str(EXPORT[0]), "--width", str(EXPORT[1])])
    printed = capsys.readouterr().out
    print(printed)
    assert "OpenVINO (f32) vs PyTorch" in printed and f"8 images from folder {calibration}; 6 calibrate, 2 held out" in printed
    found = re.search(r"mean relative difference ([0-9.]+|inf|nan)% \(tolerance 2%\), delta1 agreement ([0-9.]+)", printed)
    assert found, printed
    # A finite difference: with the disparity head's floor quantized, int8 returned inf on most pixels
    # (runtime/quantize.py keeps Divide and Maximum float); measured 22.9 % on this random tiny model.
    assert float(found.group(1)) < float("inf"), printed
    within = float(found.group(1)) <= 2.0
    assert code == (0 if within else 1)
    assert out.is_file() == within and out.with_suffix(".bin").is_file() == within
    assert ("REFUSED" in printed) != within
