"""ONNX export (dynamic batch, height and width) and its check against PyTorch in ONNX Runtime.

The exporter is ``torch.onnx.export(dynamo=True)`` (torch.export underneath): it traces
the fx-built Inception-ResNet-v2 encoder and keeps every ``F.interpolate(size=...)``
symbolic, so one file serves every input size. Every export is run through ONNX Runtime
at the example size and at a second, different size and batch, and the largest absolute
difference from PyTorch is reported.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.heads import units_text
from ..paths import atomic_write
from .ort import onnx_session

__all__ = ["export_onnx", "check_onnx", "check_opset", "ExportResult", "TOLERANCE", "Check", "checks_pass",
           "compare", "MIN_OPSET"]

# torch.onnx's dynamo exporter implements opset 18 and up (torch/onnx/_internal/exporter/
# _constants.py, TORCHLIB_OPSET); below it, it tries a version conversion and, when that fails,
# silently writes opset 18 (torch/onnx/_internal/exporter/_compat.py).
MIN_OPSET = 18

# Largest |ONNX Runtime - PyTorch| accepted, relative to the largest |PyTorch output| of that check:
# 1 mm on a 10 m metric model, 1e-4 on a unitless (0, 1] output. fp32 against fp32 differs by float
# rounding only (~1e-6 relative); an absolute 1e-3 would pass a wrong head on a disparity model,
# whose values are 1e-3 to 1e-2.
TOLERANCE = 1e-4

# One protobuf message, hence one ONNX file with its weights inside, holds at most 2 GB.
PROTOBUF_LIMIT = 2**31 - 1


class _SymbolicSizeForward(nn.Module):
    """DepthModel.forward with the resize decision taken once, at export time.

    ``DepthModel.forward_normalized`` compares the decoder's output size with the input
    size in Python to decide whether to resize; torch.export would specialise that
    comparison on the example size. Here the decision is made once for the architecture;
    the numerical check below guards against any drift from the model's own forward.
    """

    def __init__(self, model: nn.Module, resize: bool) -> None:
        super().__init__()
        self.model, self.resize = model, resize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        size = (x.shape[-2], x.shape[-1])
        logits = m.decode(m.input_norm(x), size)
        if self.resize:  # decoders that stop short of full resolution, as forward_normalized does
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return m.head(logits)  # the output kind's one head (models/heads.py), as forward


@dataclass(frozen=True)
class Check:
    """One comparison of an exported model with PyTorch: input shape, max |difference| and the
    largest |PyTorch output| it is judged against."""
    shape: tuple[int, ...]
    diff: float
    scale: float

    @property
    def relative(self) -> float:
        return self.diff / max(self.scale, 1e-12)

    def __str__(self) -> str:
        return (f"at input {'x'.join(map(str, self.shape))}: max abs diff {self.diff:.3g} "
                f"({self.relative:.2g} of the largest output {self.scale:.3g})")


def checks_pass(checks: list[Check], tolerance: float) -> bool:
    return bool(checks) and all(c.relative <= tolerance for c in checks)


def compare(shape: tuple[int, ...], got: np.ndarray, ref: np.ndarray, kind: Any = None) -> Check:
    """The Check of an exported model's output ``got`` against PyTorch's ``ref`` (same shape), in the
    space the output kind is affine in (``models/heads.py``). A disparity model returns relative depth
    max(d) / d, which near its floor (d = max / 1000) turns a 1e-6 difference of d into 1e-3 of the
    output; compared as disparity, the export's float rounding stays at ~1e-6."""
    if got.shape != ref.shape:
        raise RuntimeError(f"exported output shape {got.shape} != PyTorch {ref.shape} at input "
                           f"{'x'.join(map(str, shape))}")
    if kind is not None:
        got, ref = kind.in_affine_space(got), kind.in_affine_space(ref)
    return Check(shape, float(np.abs(got - ref).max()), float(np.abs(ref).max()))


@dataclass
class ExportResult:
    path: Path
    checks: list[Check] = field(default_factory=list)
    tolerance: float = TOLERANCE

    @property
    def max_abs_diff(self) -> float:
        return max((c.diff for c in self.checks), default=float("nan"))

    @property
    def max_rel_diff(self) -> float:
        return max((c.relative for c in self.checks), default=float("nan"))

    @property
    def ok(self) -> bool:
        return checks_pass(self.checks, self.tolerance)

    def summary(self) -> str:
        data = self.path.with_name(f"{self.path.name}.data")
        weights = f", weights in {data.name} ({data.stat().st_size / 1e6:.1f} MB)" if data.is_file() else ""
        lines = [f"wrote {self.path} ({self.path.stat().st_size / 1e6:.1f} MB{weights}), dynamic batch/height/width"]
        lines += [f"  ONNX Runtime vs PyTorch {c}" for c in self.checks]
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"  check {verdict}: max abs diff {self.max_abs_diff:.3g}, {self.max_rel_diff:.2g} of the "
                     f"output's largest value (tolerance {self.tolerance:g} of it)")
        return "\n".join(lines)


def check_opset(opset: int) -> int:
    """``opset`` if the exporter can write it (MIN_OPSET up to the installed onnx's newest), else an
    InputError before any work."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise InputError(f"--opset {opset} cannot be written: torch's ONNX exporter writes opsets "
                         f"{MIN_OPSET} to {newest} (the installed onnx's newest); default 18.")
    return opset


def _second_size(height: int, width: int) -> tuple[int, int]:
    # Different from the example in both sides, odd, and not a multiple of any stride.
    return max(64, height * 3 // 4) | 1, (width * 5 // 4 + 3) | 1


def export_onnx(
    model: nn.Module,
    out: str | Path,
    height: int = 240,
    width: int = 320,
    opset: int = 18,
    check: bool = True,
    external_data: bool | None = None,
) -> ExportResult:
    """Export a DepthModel to ONNX: input ``image`` (B x 3 x H x W float RGB in [0, 1]), output
    ``depth`` (B x 1 x H x W; metres unless the model is relative), B, H and W dynamic.

    ``external_data``: weights in ``<out>.data`` beside the file (ONNX's external-data format, read by
    ONNX Runtime and OpenVINO from the file's folder) instead of inside it; by default only when they
    would not fit in one protobuf (2 GB)."""
    import onnx

    check_opset(opset)
    if reason := getattr(model, "export_unsupported", ""):  # before minutes of tracing, not after
        raise InputError(f"model {getattr(model, 'name', type(model).__name__)} cannot be exported to ONNX: {reason}.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    # Batch 2, not 1: traced from a batch-1 example, torch.export (2.14) records the batch of some
    # ViT token tensors (LayerNorm outputs) as a constant 1, and the ONNX graph fails at batch 2.
    example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    # Dim.DYNAMIC lets torch.export derive each size's valid range; named Dims with explicit
    # ranges fail on timm encoders ("Invalid ranges [2:1]") in torch 2.15.
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    with torch.no_grad():  # does the decoder itself reach the input size?
        logits = model.decode(model.input_norm(example), (height, width))
    wrapper = _SymbolicSizeForward(model, resize=tuple(logits.shape[-2:]) != (height, width)).eval()
    # Traced into a temp folder beside ``out``, written under its name only once whole (paths.atomic_write).
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        traced = Path(tmp) / "model.onnx"
        torch.onnx.export(wrapper, (example,), str(traced), dynamo=True,
                          dynamic_shapes=(dims,), input_names=["image"], output_names=["depth"],
                          opset_version=opset, verbose=False)
        proto = onnx.load(str(traced))
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:  # torch falls back to its own opset when a conversion fails
        raise RuntimeError(f"the exporter wrote opset {written}, not the requested {opset}; nothing written")
    _name_dynamic_dims(proto, ("batch", None, "height", "width"))
    # Metadata travels with the file so ONNX users know the units without the Python config.
    meta = {"depthsmith.name": getattr(model, "name", type(model).__name__),
            "depthsmith.is_metric": str(bool(getattr(model, "is_metric", True))),
            "depthsmith.max_depth": str(getattr(model, "max_depth", "")),
            "depthsmith.input": "image: B x 3 x H x W float32 RGB in [0, 1], any H and W",
            # JSON of the model's working size (depthsmith.resize): predict resizes to it, as for the model.
            "depthsmith.working_size": json.dumps(getattr(model, "working_size", None)),
            "depthsmith.output": "depth: B x 1 x H x W float32, " + units_text(
                bool(getattr(model, "is_metric", True)), getattr(model, "output", None),
                bool(getattr(model, "card", {}).get("focal_normalised"))),
            # The output kind (models/heads.py) and DA3-Metric's focal rule, so that predict on the file
            # aligns a video in the kind's space and turns a focal-normalised output into metres as it
            # does for the model (inference.Predictor).
            "depthsmith.output_kind": str(getattr(model, "output", "") or ""),
            "depthsmith.focal_normalised": str(getattr(model, "card", {}).get("focal_normalised", "") or "")}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    if external_data is None:
        external_data = _over_protobuf_limit(proto)
    if external_data:
        _save_external(proto, out)
    else:
        with atomic_write(out) as handle:  # the bytes onnx.save writes (it wants a named file to write to)
            handle.write(proto.SerializeToString())
    del proto  # Depth Pro's is 3.8 GB: the check below needs that memory for the model and the session

    result = ExportResult(out)
    if check:
        h2, w2 = _second_size(height, width)
        result.checks = check_onnx(out, model, [(1, height, width), (2, h2, w2)])
    return result


def _over_protobuf_limit(proto: Any) -> bool:
    """True when ``proto`` cannot be one protobuf message. Past 2 GB ``ByteSize()`` itself raises
    (``EncodeError: Failed to serialize proto``: found on Depth Pro's 3.8 GB), which answers the question."""
    from google.protobuf.message import EncodeError

    try:
        return proto.ByteSize() > PROTOBUF_LIMIT
    except EncodeError:
        return True


def _save_external(proto: Any, out: Path) -> None:
    """``out`` with its tensors in ``out.name + '.data'`` beside it, written in a temp folder and renamed
    into place data first, so an .onnx on disk always has its weights."""
    import onnx

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        path = Path(tmp) / out.name
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        # shape constants (< 1 KB) stay inline: ONNX Runtime infers shapes from them
                        location=f"{out.name}.data")
        os.replace(path.with_name(f"{out.name}.data"), out.with_name(f"{out.name}.data"))
        os.replace(path, out)


def _name_dynamic_dims(proto: Any, names: tuple[str | None, ...]) -> None:
    """Rename the exporter's symbols (s0, s53, ...) of the input's dims to readable names,
    everywhere the exact same symbol appears (outputs, intermediate shapes)."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    rename = {d.dim_param: n for d, n in zip(dims, names) if n and d.dim_param}
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]


@torch.inference_mode()
def check_onnx(path: str | Path, model: nn.Module, shapes: list[tuple[int, int, int]]) -> list[Check]:
    """ONNX Runtime against PyTorch fp32 on random inputs of each (batch, height, width). The PyTorch
    outputs come first, so the model's activations and the session's weights are not held at once
    (Depth Pro at 1536: 3.8 GB of weights and ~10 GB of activations each; together they ran out of 24 GB)."""
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.rand(b, 3, h, w, generator=gen) for b, h, w in shapes]
    refs = [model(x).numpy() for x in inputs]
    session = onnx_session(path, lean=True)
    return [compare(tuple(x.shape), session.run(None, {"image": x.numpy()})[0], ref, getattr(model, "output_kind", None))
            for x, ref in zip(inputs, refs)]
