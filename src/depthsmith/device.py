"""Which device and which precision: "auto" resolved the same way by every entry point.

bf16 is chosen only where the hardware computes it natively (``cpu.has_native_bf16`` reads the
CPU flags; torch's own check also says yes on CPUs that emulate bf16, slower than fp32).
Inference (``runtime``) and training (``train/run.py``, which writes the answer in Lightning's
names through ``train.schema.PRECISION_ALIASES``) both ask :func:`resolve_precision`.
"""

from __future__ import annotations

import torch

from .cpu import has_native_bf16
from .errors import InputError

__all__ = ["resolve_device", "resolve_precision", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> the CUDA GPU when there is one, else the CPU; Lightning's accelerator name 'gpu'
    -> CUDA; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device) == "gpu":
        return torch.device("cuda")
    return torch.device(device)


def resolve_precision(precision: str, device: str | torch.device = "auto") -> str:
    """'auto' -> 'bf16' where ``device`` (a torch device, 'auto', or a Lightning accelerator:
    'cpu', 'gpu', 'cuda') computes it natively, else 'fp32'; 'fp32' and 'bf16' are kept."""
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r} is not valid; choose auto, fp32 or bf16.")
    if precision != "auto":
        return precision
    device = resolve_device(device)
    if device.type == "cuda":
        # accelerator=gpu on a machine without one: nothing to ask; Lightning itself refuses the run.
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and has_native_bf16() else "fp32"
