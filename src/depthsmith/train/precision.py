"""``trainer.precision: auto``: bf16-mixed where the hardware computes bf16 natively, else 32-true.

On a CPU, bf16 autocast is several times faster than fp32 with AVX-512 BF16 or AMX, and several
times *slower* where bf16 is emulated (plain AVX-512 or AVX2), so the CPU's flags decide
(``depthsmith.cpu.has_native_bf16``; torch's own check says yes on emulating CPUs).
On CUDA, ``torch.cuda.is_bf16_supported()`` decides (Ampere and newer).
"""

from __future__ import annotations

import torch

__all__ = ["resolve_training_precision"]


def resolve_training_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision for ``precision`` ('auto' or any Lightning value, returned as is)."""
    if str(precision) != "auto":
        return precision
    from .. import cpu

    accelerator = str(accelerator or "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu.has_native_bf16() else "32-true"
