"""Convolution weights pre-packed for oneDNN, for CPU inference.

An eager ``nn.Conv2d`` on a channels-last CPU tensor hands its weight to oneDNN in PyTorch's
plain layout, and oneDNN reorders it into its blocked layout on every call: for the paper's model
that is 31M weights rewritten per image, about 7% of a batch-1 call. ``PackedConv2d`` reorders
once per input shape and keeps the result, through the same oneDNN ops that inductor uses when it
freezes a model (``torch.ops.mkldnn``). The arithmetic is the same: in bf16 the paper's model gave
bit-identical outputs here, in fp32 they differ in the last bits (another summation order).

The blocked layout oneDNN picks depends on the input's shape (a weight packed for batch 1 is
reordered again at batch 8, which is slower than not packing at all), so each module keeps one
packed weight per shape it has seen, up to ``MAX_SHAPES``.
"""

from __future__ import annotations

import torch
from torch import nn
from .errors import InputError

__all__ = ["PackedConv2d", "pack_convolutions", "packing_available", "MAX_SHAPES"]

MAX_SHAPES = 4  # packed copies kept per convolution; a video or a folder of one camera uses one


def packing_available() -> bool:
    """True when this torch build has oneDNN and the weight-packing convolution ops."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return bool(
        torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_convolution_weight")
        and hasattr(mkldnn, "_convolution_pointwise")
    )


def _packable(conv: nn.Module) -> bool:
    # Subclasses (timm's Conv2dSame pads in forward) and non-zero padding modes compute
    # something the plain oneDNN convolution does not.
    return type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


class PackedConv2d(nn.Module):
    """Inference-only stand-in for a CPU ``nn.Conv2d`` (zero padding), weight packed per input shape."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not _packable(conv):
            raise InputError(f"cannot pack {conv}: only plain nn.Conv2d with numeric zero padding")
        # Plain attributes, not parameters: this module is never trained or saved.
        self.weight = conv.weight.detach()
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.conv_args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.packed: dict[tuple[int, ...], torch.Tensor] = {}
        self.extra = f"{conv.in_channels}, {conv.out_channels}, kernel_size={conv.kernel_size}, stride={conv.stride}"

    def extra_repr(self) -> str:
        return self.extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        weight = self.packed.get(shape)
        if weight is None:
            if len(self.packed) >= MAX_SHAPES:
                self.packed.pop(next(iter(self.packed)))  # oldest first
            weight = torch.ops.mkldnn._reorder_convolution_weight(self.weight, *self.conv_args, list(shape))
            self.packed[shape] = weight
        return torch.ops.mkldnn._convolution_pointwise(x, weight, self.bias, *self.conv_args, "none", [], "")


def pack_convolutions(model: nn.Module) -> int:
    """Replace every packable ``nn.Conv2d`` of a CPU inference model, in place, by a
    ``PackedConv2d``. Returns how many were replaced (0 where oneDNN is not available)."""
    if not packing_available():
        return 0
    targets = [name for name, m in model.named_modules() if _packable(m) and m.weight.device.type == "cpu"]
    for name in targets:
        model.set_submodule(name, PackedConv2d(model.get_submodule(name)))
    return len(targets)
