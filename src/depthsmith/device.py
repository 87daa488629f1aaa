"""Which device and which precision: "auto" resolved the same way by every entry point.

bf16 is chosen only where the hardware computes it natively (``cpu.has_native_bf16`` reads the
CPU flags; torch's own check also says yes on CPUs that emulate bf16, slower than fp32).
"""

from __future__ import annotations

import torch

from .cpu import has_native_bf16
from .errors import InputError

__all__ = ["resolve_device", "resolve_precision", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> the CUDA GPU when there is one, else the CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware runs it natively, else 'fp32'."""
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r} is not valid; choose auto, fp32 or bf16.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and has_native_bf16() else "fp32"
