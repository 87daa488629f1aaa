"""Pieces shared by the decoders: walking an encoder pyramid up to full resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ...errors import InputError

__all__ = ["upsample_to", "upsample_x2", "pad_centered", "split_padding", "plan_stages", "size_at"]


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to an exact size.

    Upsampling to the skip's own size (instead of a fixed x2) is what lets any input
    size work: valid-padding encoders (IRv2) and odd sizes (231x307) give feature maps
    that are not exact halves of each other.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample_x2(x: torch.Tensor) -> torch.Tensor:
    """Exactly x2, half-pixel bilinear: Keras ``UpSampling2D(interpolation='bilinear')``."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def pad_centered(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad to ``size``, the extra pixel (odd padding) before: see ``UNetDecoder``.

    A negative difference crops instead (F.pad takes negative amounts), so a feature map
    larger than the grid still fits.
    """
    top, bottom = split_padding(size[0] - x.shape[-2])
    left, right = split_padding(size[1] - x.shape[-1])
    return F.pad(x, (left, right, top, bottom))


def split_padding(p):
    """``p`` pixels of padding as (before, after) = (ceil(p/2), floor(p/2)), the seed's split.

    Works on ints and on symbolic sizes; (p + 1) // 2 is the ceil because ONNX turns // into
    truncation, which agrees for p >= 0.
    """
    before = (p + 1) // 2
    return before, p - before


def size_at(out_size: tuple[int, int], stride: int) -> tuple[int, int]:
    # Integer ceil division with non-negative operands only: symbolic sizes stay symbolic,
    # and exporters that turn floor division into truncation (ONNX) still agree.
    return ((out_size[0] + stride - 1) // stride, (out_size[1] + stride - 1) // stride)


def plan_stages(reductions: list[int]) -> list[tuple[int, int | None]]:
    """Stages from the deepest feature up to stride 1.

    Returns one ``(target_stride, skip_index or None)`` per x2 step: the deepest
    feature at stride R needs log2(R) steps; a step uses the encoder feature of that
    stride as a skip when there is one.
    """
    deepest = reductions[-1]
    if deepest < 1 or deepest & (deepest - 1):
        raise InputError(f"Deepest feature stride must be a power of two, got {deepest}.")
    by_stride = {r: i for i, r in enumerate(reductions[:-1])}
    stages, stride = [], deepest
    while stride > 1:
        stride //= 2
        stages.append((stride, by_stride.get(stride)))
    return stages
