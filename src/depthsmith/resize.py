"""The one resize rule for RGB images going into a network: bilinear, antialiased when shrinking."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resized"]


def resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1 x) 3 x H x W RGB image or batch at ``size``, bilinear, antialiased when shrinking (so a
    downscaled photo does not alias); as it is when already that size."""
    x = x[None] if x.ndim == 3 else x
    if tuple(x.shape[-2:]) == tuple(size):
        return x.contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=x.shape[-2] > size[0])
