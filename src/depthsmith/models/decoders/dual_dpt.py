"""The depth branch of Depth Anything 3's ``DualDPT`` head (depth_anything_3/model/dualdpt.py, PyPI
``depth-anything-3`` 0.1.1), the head of the any-view models DA3-Small / DA3-Base.

It is the ``dpt`` decoder with three differences, all in ``DualDPT._forward_impl``:

* each tap (the any-view ViT's 2 x embed_dim concatenation, models/da3_vit.py) is LayerNorm'd over its
  channels (``self.norm``, eps 1e-5) before the 1x1 projection;
* a fixed sinusoidal UV embedding x ``pos_ratio`` (upstream 0.1, ``_add_pos_embed``) is added after each
  projection (before the resampling) and again after the head's upsampling to the prediction size
  (``create_uv_grid`` and ``position_grid_to_embed`` in depth_anything_3/model/utils/head_utils.py);
* the last 1x1 conv gives two channels: depth logits (exp, the ``exp_depth`` output kind) and a
  confidence (upstream ``expp1``: 1 + exp). Only the depth is returned; the confidence conv is kept so
  the checkpoint's tensor loads as it is.

The second (ray) branch, its fusion blocks and heads, is for camera rays: not used for depth, and
dropped at conversion (models/da3_anyview.py). Built for converted checkpoints only: ``pos_ratio`` is
required, which keeps it out of ``standalone_decoders``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from .dpt import DPTDecoder, _up
from .registry import register_decoder

__all__ = ["DualDPTDepthDecoder", "uv_embedding"]


def uv_embedding(height: int, width: int, channels: int, like: torch.Tensor, omega_0: float = 100.0) -> torch.Tensor:
    """1 x channels x height x width: upstream's ``position_grid_to_embed(create_uv_grid(width, height),
    channels)``. The grid spans +-w/d by +-h/d (d the diagonal, aspect = width / height), at pixel centres:
    linspace(-s (n-1)/n, s (n-1)/n, n) = s (2i + 1 - n) / n. Built from tensors (no Python floats of the
    size) so export keeps the size symbolic."""
    cols = torch.arange(width, device=like.device, dtype=torch.float32)
    rows = torch.arange(height, device=like.device, dtype=torch.float32)
    w, h = cols[-1] + 1, rows[-1] + 1
    aspect = w / h
    diag = (aspect * aspect + 1.0).sqrt()
    u = (aspect / diag) * (2 * cols + 1 - w) / w
    v = (1.0 / diag) * (2 * rows + 1 - h) / h
    quarter = channels // 4
    omega = 1.0 / omega_0 ** (torch.arange(quarter, device=like.device, dtype=torch.float32) / (channels // 2 / 2.0))

    def sincos(p: torch.Tensor) -> torch.Tensor:  # make_sincos_pos_embed: [sin, cos] of p x omega
        angle = p[:, None] * omega[None]
        return torch.cat((angle.sin(), angle.cos()), dim=-1)

    eu, ev = sincos(u), sincos(v)  # width x C/2, height x C/2
    emb = torch.cat((eu[None].expand(height, -1, -1), ev[:, None].expand(-1, width, -1)), dim=-1)
    return emb.permute(2, 0, 1)[None].to(like.dtype)


@register_decoder("dual_dpt")
class DualDPTDepthDecoder(DPTDecoder):
    """``dpt`` with DualDPT's token LayerNorm, UV embeddings and two-channel last conv (see module doc)."""

    def __init__(self, channels: list[int], reductions: list[int], pos_ratio: float, features: int = 64,
                 out_channels: list[int] | None = None, head_features: int = 32) -> None:
        super().__init__(channels, reductions, features=features, out_channels=out_channels,
                         head_features=head_features)
        if not self.single_stride or len(set(channels)) != 1:
            raise InputError(f"dual_dpt decoder needs the four equal-width taps of a ViT, got channels {channels} "
                             f"at strides {reductions}.")
        self.pos_ratio = float(pos_ratio)
        self.norm = nn.LayerNorm(channels[0])  # upstream nn.LayerNorm(dim_in): eps 1e-5
        self.head["conv3"] = nn.Conv2d(head_features, 2, 1)  # depth logits, confidence

    def _with_uv(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_ratio * uv_embedding(x.shape[-2], x.shape[-1], x.shape[1], x)

    def levels(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> tuple[tuple, list[torch.Tensor]]:
        grid = feats[-1].shape[-2:]
        pred_size = (grid[0] * self.patch, grid[1] * self.patch)
        levels = []
        for reassemble, feat in zip(self.reassemble, feats):
            feat = self.norm(feat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            levels.append(reassemble.resample(self._with_uv(reassemble.project(feat))))
        return pred_size, [rn(x) for rn, x in zip(self.layer_rn, levels)][::-1]

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        pred_size, levels = self.levels(feats, out_size)
        x = self.fuse(levels)
        x = self._with_uv(_up(self.head["conv1"](x), size=pred_size))
        logits = self.head["conv3"](F.relu(self.head["conv2"](x)))
        return logits[:, :1, : out_size[0], : out_size[1]]
