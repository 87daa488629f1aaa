"""``depthsmith export --format openvino [--int8 --calibration ...]``: OpenVINO IR with metadata.

The IR is converted from the checked ONNX export (``export_onnx``: dynamic batch, height and
width, compared with PyTorch at two sizes), then itself compared with PyTorch at two sizes. With
``int8`` the fp32 IR is quantized by NNCF (``quantize.quantize_int8``) and the int8 model is only
written when its held-out accuracy is within the tolerance.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .export_onnx import TOLERANCE, Check, checks_pass, compare
from .quantize import DEFAULT_CALIBRATION, DEFAULT_TOLERANCE, Int8Result, quantize_int8
from ..errors import InputError

__all__ = ["export_openvino", "OpenVinoExport"]


@dataclass
class OpenVinoExport:
    path: Path | None
    onnx_summary: str
    checks: list[Check] = field(default_factory=list)  # fp32 IR vs PyTorch
    int8: Int8Result | None = None
    tolerance: float = TOLERANCE  # fp32 IR vs PyTorch, relative to the output's scale, as the ONNX check

    @property
    def ok(self) -> bool:
        return checks_pass(self.checks, self.tolerance) and (self.int8 is None or self.int8.ok)

    def summary(self) -> str:
        lines = [self.onnx_summary]
        lines += [f"  OpenVINO (f32) vs PyTorch {c}" for c in self.checks]
        if self.int8 is not None:
            lines.append(self.int8.summary())
        elif self.path is not None:
            lines.append(f"wrote {self.path} (+ {self.path.with_suffix('.bin').name}), dynamic batch/height/width")
        return "\n".join(lines)


@torch.inference_mode()
def _check(xml: Path, model: nn.Module, shapes: list[tuple[int, int, int]]) -> list[Check]:
    from .openvino_ir import OpenVinoRunner

    runner, gen, out = OpenVinoRunner(xml, "fp32"), torch.Generator().manual_seed(2), []
    for b, h, w in shapes:
        x = torch.rand(b, 3, h, w, generator=gen)
        out.append(compare((b, 3, h, w), runner(x).numpy(), model(x).numpy()))
    return out


def export_openvino(model: nn.Module, out: str | Path, height: int = 240, width: int = 320, int8: bool = False,
                    calibration: str | Path | None = None, tolerance: float = DEFAULT_TOLERANCE,
                    calibration_count: int = DEFAULT_CALIBRATION,
                    images: list[np.ndarray] | None = None) -> OpenVinoExport:
    """Write ``out`` (.xml + .bin): fp32, or int8 when ``int8`` (see the module docstring)."""
    from .export_onnx import _second_size, export_onnx
    from .openvino_ir import convert_to_openvino

    out = Path(out)
    if out.suffix != ".xml":
        raise InputError(f"--out {out}: an OpenVINO IR is an .xml file (weights in a .bin beside it), e.g. model.xml")
    model = model.eval().float().cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Everything is built in a temp folder beside ``out`` and renamed into place once checked:
    # .bin first, .xml last, so an .xml on disk always has its weights (as runtime/cache.py does).
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        onnx_result = export_onnx(model, Path(tmp) / "model.onnx", height=height, width=width)
        result = OpenVinoExport(None, onnx_result.summary())
        if not onnx_result.ok:
            return result
        fp32_xml = Path(tmp) / "fp32.xml"
        convert_to_openvino(onnx_result.path, fp32_xml)
        result.checks = _check(fp32_xml, model, [(1, height, width), (2, *_second_size(height, width))])
        if not result.ok:
            return result
        if int8:
            result.int8 = quantize_int8(fp32_xml, out, calibration, tolerance, calibration_count,
                                        (height, width), images=images,
                                        source="the given images" if images is not None else "")
            result.path = result.int8.path
        else:
            for suffix in (".bin", ".xml"):
                os.replace(fp32_xml.with_suffix(suffix), out.with_suffix(suffix))
            result.path = out
    return result
