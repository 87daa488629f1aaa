"""Depth Anything 3's DPT head: the ``dpt`` decoder plus a sky head whose pixels take a far depth.

Upstream: ``DPT`` in depth_anything_3/model/dpt.py (PyPI ``depth-anything-3``) with ``use_sky_head``.
After the shared ``output_conv1`` + upsample, a second branch (conv3x3 -> ``head_features``, ReLU,
conv1x1 -> 1, ReLU) gives a sky score. ``DepthAnything3Net._process_mono_sky_estimation``
(depth_anything_3/model/da3.py) then marks pixels with score >= 0.3 as sky and, when more than 10
pixels are sky and more than 10 are not, sets every sky pixel to the 0.99 quantile of the non-sky
depth (``torch.quantile``, linear interpolation).

Reproduced here per image, in the depth the exp head makes of the logits (``exp_depth``, models/heads.py):
the fill is written back as log(quantile), so the head's exp returns the quantile itself. Two
differences from upstream, both outside what a single image of at most 100 000 non-sky pixels sees:
upstream pools the mask and the quantile over every image of its batch, and above 100 000 non-sky
pixels it takes the quantile of a random sample of 100 000 (``torch.randint``: a different value each
run); this takes each image's exact quantile. The quantile is computed with sort and gather rather
than ``torch.quantile`` so the model exports to ONNX, and is detached: the fill is a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dpt import DPTDecoder, _up
from .registry import register_decoder

__all__ = ["DPTSkyDecoder"]


def fill_sky(logits: torch.Tensor, sky: torch.Tensor, threshold: float, quantile: float,
             min_pixels: int = 10) -> torch.Tensor:
    """``logits`` (B x 1 x H x W, depth = exp(logits)) with sky pixels (``sky >= threshold``) set to the
    log of each image's ``quantile`` of non-sky depth, where both parts have more than ``min_pixels``."""
    flat = logits.flatten(1).detach()
    ground = (sky < threshold).flatten(1)
    count = ground.sum(1, keepdim=True)
    # non-sky values first, ascending; sky pushed to the end by the per-image maximum (never selected below)
    ordered = torch.where(ground, flat, flat.amax(1, keepdim=True)).exp().sort(dim=1).values
    pos = quantile * (count - 1).clamp_min(0).to(flat.dtype)
    lo = pos.floor()
    hi = pos.ceil()
    v_lo, v_hi = ordered.gather(1, lo.long()), ordered.gather(1, hi.long())
    fill = (v_lo + (v_hi - v_lo) * (pos - lo)).log()  # torch.quantile's 'linear' interpolation
    use = (count > min_pixels) & (flat.shape[1] - count > min_pixels)
    out = torch.where(use & ~ground, fill, logits.flatten(1))
    return out.view_as(logits)


@register_decoder("dpt_sky")
class DPTSkyDecoder(DPTDecoder):
    """``dpt`` with Depth Anything 3's sky head and sky fill (``sky_threshold``, ``sky_quantile``:
    upstream's 0.3 and 0.99, which models/da3.py passes). Its fill assumes the ``exp_depth`` output
    kind, and nothing here trains the sky head (no sky loss), so it is built for converted checkpoints
    only: both arguments are required, which keeps it out of ``standalone_decoders``."""

    def __init__(self, channels: list[int], reductions: list[int], sky_threshold: float, sky_quantile: float,
                 features: int = 64, head_features: int = 32, **kwargs) -> None:
        super().__init__(channels, reductions, features=features, head_features=head_features, **kwargs)
        self.sky_threshold, self.sky_quantile = float(sky_threshold), float(sky_quantile)
        self.sky = nn.ModuleDict({
            "conv2": nn.Conv2d(features // 2, head_features, 3, padding=1),
            "conv3": nn.Conv2d(head_features, 1, 1),
        })

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        pred_size, levels = self.levels(feats, out_size)
        x = self.fuse(levels)
        if "projection" in self.head:
            x = F.relu(self.head["projection"](x))
        x = _up(self.head["conv1"](x), size=pred_size)
        crop = (..., slice(0, out_size[0]), slice(0, out_size[1]))  # after the convs, as DPTDecoder
        logits = self.head["conv3"](F.relu(self.head["conv2"](x)))[crop]
        sky = F.relu(self.sky["conv3"](F.relu(self.sky["conv2"](x))))[crop]
        return fill_sky(logits, sky, self.sky_threshold, self.sky_quantile)
