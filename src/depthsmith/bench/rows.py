"""One callable per benchmark row: the eager references, every backend of ``depthsmith.runtime``,
and predict's default path (backend auto)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..inference import Predictor
from ..runtime import create_runner, list_backends
from ..runtime.base import agreement, get_backend
from ..errors import InputError

__all__ = ["BACKENDS", "PEERS", "default_backends", "row_runner", "mean_agreement", "BatchFn"]

BatchFn = Callable[[torch.Tensor], torch.Tensor]


def _backends() -> dict[str, str]:
    eager = {"fp32": "PyTorch fp32 eager", "channels_last": "fp32 channels_last", "bf16": "bf16 autocast",
             "bf16_cl": "bf16 autocast + channels_last"}
    # Every registered backend is a row (the registry's description is its label), then the public path.
    return {**eager, **{n: f"{n}: {get_backend(n, installed=False).description}" for n in list_backends()},
            **PEERS, "predict": "predict() default path (backend auto)"}


# The other runtimes at their own default settings on the model's ONNX export (runtime.cache.exported_onnx,
# the file the onnx and openvino backends run): what a user gets who takes the file and calls them.
PEERS = {"ort-default": "ONNX Runtime, InferenceSession(onnx) with its default options",
         "openvino-default": "OpenVINO, core.compile_model(onnx, 'CPU') with no config (dynamic shapes as exported)"}


BACKENDS = _backends()


def default_backends() -> list[str]:
    """The rows run when none are named: installed backends suited to this CPU; torch.compile
    (minutes of compilation per size) only when asked for."""
    def wanted(name: str) -> bool:
        if name in PEERS:  # opt-in: the zoo benchmark names them
            return False
        if name not in list_backends():  # the eager rows and "predict"
            return True
        spec = get_backend(name, installed=False)
        return (name != "torch-compile" and spec.installed() and spec.suits_hardware())

    return [n for n in BACKENDS if wanted(n)]


def row_runner(model: nn.Module, backend: str, height: int, width: int) -> tuple[BatchFn, Any]:
    """A callable B x 3 x H x W float -> B x 1 x H x W depth for ``backend``, and its precision
    (or a function giving it: backend auto knows its precision once it has chosen)."""
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    if backend == "fp32":
        return model, "fp32"
    if backend in ("channels_last", "bf16_cl"):
        # .eval() again: deepcopy of an fx GraphModule (the tapped IRv2 encoder) comes back in train mode
        cl = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)

        def run_cl(x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous(memory_format=torch.channels_last)
            if backend == "bf16_cl":
                with bf16:
                    return cl(x).float()
            return cl(x)

        return run_cl, "bf16" if backend == "bf16_cl" else "fp32"
    if backend == "bf16":
        def run_bf16(x: torch.Tensor) -> torch.Tensor:
            with bf16:
                return model(x).float()

        return run_bf16, "bf16"
    if backend == "predict":
        predictor = Predictor(model, device="cpu")

        def run_predict(x: torch.Tensor) -> torch.Tensor:
            # The public path: decoded H x W x 3 images in, H x W depth arrays out.
            images = list(enumerate(x.permute(0, 2, 3, 1).numpy()))
            depths = [d for _, _, d in predictor.predict_many(images, batch_size=len(images))]
            return torch.from_numpy(np.stack(depths))[:, None]

        run_predict.predictor = predictor  # type: ignore[attr-defined]  (the loaded pass re-decides auto)
        return run_predict, lambda: predictor.precision
    if backend in PEERS:
        return _peer(model, backend)
    if backend in list_backends():
        # int8 is measured whatever its accuracy (the table shows it); predict and export refuse past 2%.
        options = {"tolerance": float("inf")} if backend == "openvino-int8" else {}
        runner = create_runner(backend, model, device="cpu", **options)
        return runner, lambda: runner.precision
    raise InputError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _peer(model: Any, backend: str) -> tuple[BatchFn, str]:
    from ..runtime.cache import exported_onnx

    path = str(exported_onnx(model))
    if backend == "ort-default":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run_ort(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])

        return run_ort, "fp32"
    from ..runtime.openvino_ir import core  # the process's one Core (openvino_ir.core says why)

    compiled = core().compile_model(path, "CPU")
    request = compiled.create_infer_request()

    def run_ov(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.contiguous().numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    # OpenVINO's default precision: bf16 where the CPU has it natively, else f32.
    import openvino as ov

    return run_ov, "bf16" if compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else "fp32"


def mean_agreement(run: BatchFn, inputs: list[torch.Tensor], refs: list[torch.Tensor]) -> tuple[float, float]:
    """Mean over images of (mean relative difference, delta1 agreement); NaN for no images."""
    if not inputs:
        return float("nan"), float("nan")
    pairs = [agreement(run(x), ref) for x, ref in zip(inputs, refs)]
    return float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))
