"""``trainer.precision: auto`` in Lightning's words: the one decision of ``device.resolve_precision``
(bf16 where the hardware computes it natively, else fp32) for the device training runs on.

On a CPU, bf16 autocast is several times faster than fp32 with AVX-512 BF16 or AMX, and several
times *slower* where bf16 is emulated (plain AVX-512 or AVX2), so the CPU's flags decide
(``depthsmith.cpu.has_native_bf16``; torch's own check says yes on emulating CPUs).
On CUDA, ``torch.cuda.is_bf16_supported()`` decides (Ampere and newer).
"""

from __future__ import annotations

import torch

from ..device import resolve_precision

__all__ = ["resolve_training_precision"]

_LIGHTNING = {"bf16": "bf16-mixed", "fp32": "32-true"}


def resolve_training_precision(precision: str, accelerator: str = "auto") -> str:
    """The Lightning precision for ``precision`` ('auto' or any Lightning value, returned as is)."""
    if str(precision) != "auto":
        return precision
    accelerator = str(accelerator or "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu and not torch.cuda.is_available():
        return "32-true"  # no GPU to ask; Lightning itself refuses the run
    return _LIGHTNING[resolve_precision("auto", torch.device("cuda" if on_gpu else "cpu"))]
