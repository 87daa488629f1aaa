"""FLOPs of one forward pass, counted one way for the benchmark table and the report."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_flops"]


def count_flops(model: nn.Module, height: int, width: int) -> float:
    """GFLOPs (1e9 floating-point operations, a multiply-add counted as 2) of one forward pass of
    ``model`` on a 1 x 3 x height x width input: convolutions, matrix multiplies and attention, as counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (element-wise ops and resizes are not counted)."""
    from torch.utils.flop_counter import sdpa_flop_count

    # torch (2.14) counts scaled_dot_product_attention on CUDA kernels only; on the CPU it dispatches to
    # _scaled_dot_product_flash_attention_for_cpu, which its registry lacks: a ViT's q.k and attn.v
    # (a third of DINOv2-S's FLOPs at 518 x 518) would be left out of the floor.
    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    custom = {cpu_attention: cpu_sdpa} if cpu_attention is not None else {}
    param = next(model.parameters(), None)
    was_training = model.training
    model.eval()
    try:
        # Shapes only (fake tensors): a Depth Pro-shaped model's 19 TFLOPs are counted in a second,
        # not in the minutes a real forward takes on a CPU. A model that reads values to decide
        # (data-dependent control flow) cannot run on fake tensors and is run for real.
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode(allow_non_fake_inputs=True):
            return _count(model, height, width, param, custom) / 1e9
    except Exception:  # internal: any failure of the fake run falls back to the real forward
        return _count(model, height, width, param, custom) / 1e9
    finally:
        model.train(was_training)


def _count(model: nn.Module, height: int, width: int, param: torch.Tensor | None, custom: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, height, width, device=param.device if param is not None else "cpu")
    with FlopCounterMode(display=False, custom_mapping=custom) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()
