"""PyTorch backends: the fast path of ``runtime.fast.fast_model`` in fp32 or bf16, and torch.compile.

``threads``: run with that many intra-op threads (set around each call, restored after). On a
machine where another process keeps a core busy, fewer OpenMP threads than cores avoid waiting
at every barrier for a descheduled sibling thread; ``auto`` probes this variant under load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Backend, Runner, model_meta, register
from ..cpu import has_native_bf16
from ..errors import InputError

__all__ = ["TorchRunner"]


class TorchRunner(Runner):
    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", precision: str = "fp32",
                 compile: bool = False, threads: int | None = None, backend: str = "") -> None:
        from ..device import resolve_device
        from .fast import fast_model

        if not isinstance(model, nn.Module):
            raise InputError(f"the torch backends run a DepthModel (a saved folder, Hub id or preset), not {model}; "
                             "run an exported file with --backend onnx or openvino")
        self.device = resolve_device(device)
        self.precision, self.threads = precision, threads
        self.name, self.is_metric, self.max_depth = model_meta(model)
        self.backend = backend or f"torch-{precision}"
        # torch.compile packs weights itself (freezing); our per-shape packing would only break its graph.
        self.model = fast_model(model, self.device, precision, prepack=not compile)
        if compile:
            # Inductor with frozen weights: prepacked weights and fused activations, 3% faster
            # than the default path at batch 1 and 10% at batch 8 on a 2-core CPU, but every
            # new input size costs a compilation of a minute or more: only for long videos.
            self.model = torch.compile(self.model, options={"freezing": True}, dynamic=False)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if self.threads is None or self.device.type != "cpu":
            return self.model(x).float()
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self.model(x).float()
        finally:
            torch.set_num_threads(before)


def _fp32(model: Any, device: str | torch.device = "cpu", **options: Any) -> TorchRunner:
    return TorchRunner(model, device, "fp32", **options)


def _bf16(model: Any, device: str | torch.device = "cpu", **options: Any) -> TorchRunner:
    return TorchRunner(model, device, "bf16", **options)


def _compile(model: Any, device: str | torch.device = "cpu", precision: str = "auto", **options: Any) -> TorchRunner:
    from ..device import resolve_device, resolve_precision

    resolved = resolve_precision(precision, resolve_device(device))
    return TorchRunner(model, device, resolved, compile=True, backend="torch-compile", **options)


register(Backend("torch-fp32", _fp32, "PyTorch fp32: BatchNorm folded, channels-last, weights pre-packed",
                 "fp32", tolerance=1e-4))
# bf16 keeps 8 mantissa bits: ~0.3% mean relative difference on the paper's model.
register(Backend("torch-bf16", _bf16, "PyTorch bf16 encoder/decoder, fp32 head (runtime.fast.fast_model)",
                 "bf16", tolerance=0.01, condition=has_native_bf16))
register(Backend("torch-compile", _compile, "torch.compile (inductor, frozen weights); opt-in: compiles per size",
                 "auto", tolerance=0.01, auto=False))
