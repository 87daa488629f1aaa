"""Export a model to run without PyTorch: the public names in one place.

    from depthsmith.export import export_onnx, export_openvino
    export_onnx(model, "model.onnx")               # dynamic batch/height/width, checked in ONNX Runtime
    export_openvino(model, "ir/", int8=True)       # OpenVINO IR, int8 checked on held-out images

The code lives in the runtime layer (``runtime.export_onnx``, ``runtime.export_openvino``),
next to the backends that run the files.
"""

from .runtime.export_onnx import TOLERANCE, ExportResult, check_onnx, export_onnx
from .runtime.export_openvino import OpenVinoExport, export_openvino
from .runtime.ort import OnnxRunner, onnx_session

__all__ = ["export_onnx", "check_onnx", "ExportResult", "TOLERANCE", "export_openvino", "OpenVinoExport",
           "OnnxRunner", "onnx_session"]
