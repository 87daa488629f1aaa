"""The OpenVINO backends (fp32, bf16, int8) on the IR of ``runtime.openvino_ir``.

The IR is converted from the ONNX file that ``export_onnx`` writes and checks (dynamic batch,
height and width) rather than from the torch module: ``ov.convert_model(module)`` traces with
TorchScript, which freezes the Python size comparisons in ``DepthModel.forward`` to the example size.

Precision: OpenVINO's CPU plugin computes in bf16 by default on CPUs with AVX-512 BF16 or AMX
(``INFERENCE_PRECISION_HINT``), which changes the numbers. ``openvino-fp32`` therefore asks for f32
explicitly; ``openvino-bf16`` is the bf16 hint, offered to ``auto`` only where bf16 is native;
``openvino-int8`` runs a model quantized by NNCF (``depthsmith.runtime.quantize``), whose
remaining float parts run in f32.

Shapes: each backend compiles the IR for the input shape it is given (``OpenVinoRunner(static=True)``;
predict always runs at the model's working size), not once for dynamic shapes as
``core.compile_model(path)`` does by default; the compiled blobs are cached on disk.
"""

from __future__ import annotations

from typing import Any

from ..cpu import has_int8_dot, has_native_bf16
from .base import Backend, register
from .cache import export_refusal, exported_openvino
from .openvino_ir import HINTS, OpenVinoRunner, convert_to_openvino, int8_conv_rate, read_metadata, save_openvino

__all__ = ["OpenVinoRunner", "convert_to_openvino", "save_openvino", "read_metadata", "int8_conv_rate", "HINTS"]


def _runner(precision: str):
    def build(model: Any, device: Any = None, threads: int | None = None, **options: Any) -> OpenVinoRunner:
        if precision == "int8":  # options: tolerance (see quantize.cached_int8)
            from .quantize import cached_int8

            return OpenVinoRunner(cached_int8(model, **options), "int8", threads, backend="openvino-int8",
                                  static=True)
        path = exported_openvino(model)
        return OpenVinoRunner(path, precision, threads, backend=f"openvino-{precision}", static=True)

    return build


register(Backend("openvino-fp32", _runner("fp32"), "OpenVINO CPU, f32 precision hint", "fp32", tolerance=1e-4,
                 requires=("openvino", "onnx"), file_suffixes=(".xml",), aliases=("openvino",),
                 unsupported=export_refusal("model.xml")))
register(Backend("openvino-bf16", _runner("bf16"), "OpenVINO CPU, bf16 precision hint (native bf16 only)", "bf16",
                 tolerance=0.01, requires=("openvino", "onnx"), condition=has_native_bf16,
                 unsupported=export_refusal("model.xml")))
# int8 is never picked by auto: its accuracy cost is measured at export, on the user's images.
register(Backend("openvino-int8", _runner("int8"), "OpenVINO CPU, NNCF int8 post-training quantization", "int8",
                 tolerance=0.02, requires=("openvino", "nncf", "onnx"), auto=False, condition=has_int8_dot,
                 unsupported=export_refusal("model.xml")))
