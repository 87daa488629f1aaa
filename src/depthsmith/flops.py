"""FLOPs of one forward pass, counted one way for the benchmark table and the report."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_flops"]


def count_flops(model: nn.Module, height: int, width: int) -> float:
    """GFLOPs (1e9 floating-point operations, a multiply-add counted as 2) of one forward pass of
    ``model`` on a 1 x 3 x height x width input: convolutions and matrix multiplies, as counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (element-wise ops and resizes are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.rand(1, 3, height, width, device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9
