"""The ``onnx`` backend: ONNX Runtime on the model's checked export.

A DepthModel given to the backend is exported first (``runtime.export_onnx``, checked against
PyTorch) into the model cache (``runtime.cache``), so the export happens once per model.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import Backend, Runner, register
from .cache import export_refusal, exported_onnx
from .ort import OnnxRunner, onnx_session

__all__ = ["OnnxBackendRunner", "OnnxRunner", "onnx_session"]


class OnnxBackendRunner(Runner):
    backend, precision = "onnx", "fp32"

    def __init__(self, model: Any, threads: int | None = None) -> None:
        self.path = exported_onnx(model)
        self.runner = OnnxRunner(self.path, threads)
        self.name, self.is_metric, self.max_depth = self.runner.name, self.runner.is_metric, self.runner.max_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner(x.cpu().numpy()))


def _onnx(model: Any, device: Any = None, threads: int | None = None, **_: Any) -> OnnxBackendRunner:
    return OnnxBackendRunner(model, threads)


register(Backend("onnx", _onnx, "ONNX Runtime fp32 (CPU; CUDA with onnxruntime-gpu)", "fp32", tolerance=1e-4,
                 requires=("onnxruntime", "onnx"), file_suffixes=(".onnx",),
                 unsupported=export_refusal("model.onnx")))
