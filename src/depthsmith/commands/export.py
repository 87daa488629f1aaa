"""``depthsmith export``: an ONNX file or an OpenVINO IR (fp32, or int8 checked on held-out images).

Prints every check. Exit codes, one rule for both formats: 2 when an argument cannot be honoured
(an opset the exporter cannot write, an --out that is a folder, unwritable, or on a full disk),
checked before any work; 1 when the export itself failed or was refused (int8 past its
tolerance); 0 when the file is written and matches PyTorch within tolerance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import check_output_dir, check_output_file
from ..models import load_any
from ..resize import example_size
from ..runtime.quantize import DEFAULT_TOLERANCE

__all__ = ["export_cli", "export_openvino_cli", "convert_cli"]


def export_cli(model: str, out: str | Path, fmt: str = "onnx", height: int | None = None, width: int | None = None,
               opset: int = 18, **openvino: Any) -> int:
    """``depthsmith export``: returns 0 when ONNX Runtime matches PyTorch within tolerance, else 1.
    ``fmt='openvino'``: see ``depthsmith.runtime.export_openvino`` (``openvino``: int8, calibration, tolerance).
    The example size (``height`` x ``width``) defaults to the model's working size (``resize.example_size``)."""
    if fmt == "openvino":
        return export_openvino_cli(model, out, height, width, **openvino)
    from ..runtime.export_onnx import check_opset, export_onnx

    check_opset(opset)
    check_output_file(out)
    if openvino.get("int8") or openvino.get("calibration"):
        raise InputError("--int8 and --calibration need --format openvino")
    if fmt != "onnx":
        print(f"format {fmt!r} is not supported; use onnx or openvino")
        return 2
    net = load_any(model)
    height, width = example_size(getattr(net, "working_size", None), height, width)
    try:
        result = export_onnx(net, out, height=height, width=width, opset=opset)
    except Exception as err:  # torch.export reports unsupported code paths in many exception types
        print(f"export of {model} failed: {type(err).__name__}: {err}")
        return 1
    print(result.summary())
    return 0 if result.ok else 1


def export_openvino_cli(model: Any, out: str | Path, height: int | None = None, width: int | None = None,
                        int8: bool = False,
                        calibration: str | None = None, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """Prints the export's checks (and int8's held-out accuracy); 0 when written, 1 when refused or failed."""
    from ..runtime.export_openvino import export_openvino

    if Path(out).suffix != ".xml":
        raise InputError(f"--out {out}: an OpenVINO IR is an .xml file (weights in a .bin beside it), e.g. model.xml")
    check_output_file(out)
    net = load_any(model)
    height, width = example_size(getattr(net, "working_size", None), height, width)
    if calibration is not None and not int8:
        print("note: --calibration is only used with --int8; writing an fp32 IR")
    try:
        result = export_openvino(net, out, height, width, int8=int8, calibration=calibration, tolerance=tolerance)
    except (ValueError, FileNotFoundError):
        raise  # bad arguments: the CLI prints these as errors
    except Exception as err:  # torch.export / OpenVINO / NNCF report failures in many exception types
        print(f"OpenVINO export of {model} failed: {type(err).__name__}: {err}")
        return 1
    print(result.summary())
    return 0 if result.ok else 1


def convert_cli(checkpoint: str | Path, out: str | Path) -> int:
    """``depthsmith convert``: the seed's ``.keras`` checkpoint as a model folder."""
    from ..models import convert_keras

    check_output_dir(out)
    print(f"wrote {convert_keras(checkpoint, out)} (load it with --model)")
    return 0
