"""timm BEiT encoders (``beit_base_patch16_384``, ``beit_large_patch16_512``) at any input size, for
DPT-BEiT (MiDaS 3.1: ``Intel/dpt-beit-large-512``, ``-base-384``).

A BEiT is a ViT whose attention adds a learnt relative position bias, one table per block over the
(2 Wh - 1) x (2 Ww - 1) offsets of its pretraining window, plus three class-token entries. timm's
``Beit`` builds that bias for its one window; MiDaS 3.1 made it work at any size by resampling the
table bilinearly to the input's window and rebuilding the index (transformers
``BeitRelativePositionBias.forward`` / ``generate_relative_position_index``, which the published
checkpoints run with). ``BeitFeatures`` is ``ViTFeatures`` (taps, readout, padding) with that
attention; the block weights stay timm's, so timm checkpoints load as they are.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import Format
from torch import nn

from .vit import ViTFeatures
from ..errors import InputError

__all__ = ["BeitFeatures", "is_beit"]


def is_beit(name: str) -> bool:
    """True for timm's ``beit`` family."""
    return timm.models.split_model_name_tag(name)[0] in timm.list_models(module="beit")


@lru_cache(maxsize=16)
def relative_position_index(grid: tuple[int, int]) -> torch.Tensor:
    """(N + 1) x (N + 1) indices into the resampled table, N = gh * gw (transformers
    ``BeitRelativePositionBias.generate_relative_position_index``): token pairs by offset, then
    class-to-token, token-to-class and class-to-class.

    Cached per grid for the process, so it is built outside inference mode: an index first made under
    ``predict``'s ``torch.inference_mode`` could not be saved for backward when the same model is then
    fine-tuned in that process (found by running the predict tests before the fine-tuning ones)."""
    with torch.inference_mode(False):
        return _position_index(grid)


def _position_index(grid: tuple[int, int]) -> torch.Tensor:
    size = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
    coords = torch.stack(torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    offsets[:, :, 0] += grid[0] - 1
    offsets[:, :, 1] += grid[1] - 1
    offsets[:, :, 0] *= 2 * grid[1] - 1
    index = torch.zeros((grid[0] * grid[1] + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = offsets.sum(-1)
    index[0, 0:] = size - 3
    index[0:, 0] = size - 2
    index[0, 0] = size - 1
    return index


def relative_position_bias(table: torch.Tensor, window: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """1 x heads x (N + 1) x (N + 1) attention bias at ``grid`` from a table made for ``window``."""
    old = (2 * window[0] - 1, 2 * window[1] - 1)
    new = (2 * grid[0] - 1, 2 * grid[1] - 1)
    # transformers reshapes as (width, height): the same for the square windows of every checkpoint.
    offsets = table[:-3].reshape(1, old[1], old[0], -1).permute(0, 3, 1, 2)
    offsets = F.interpolate(offsets, size=new, mode="bilinear", align_corners=False)
    full = torch.cat([offsets.permute(0, 2, 3, 1).reshape(new[0] * new[1], -1), table[-3:]])
    index = relative_position_index(grid).to(table.device)
    n = grid[0] * grid[1] + 1
    return full[index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)


def _attention(attn: nn.Module, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """timm ``beit.Attention.forward`` with the given position bias instead of its fixed one."""
    batch, n, _ = x.shape
    qkv_bias = None
    if attn.q_bias is not None:
        qkv_bias = torch.cat((attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias))
    qkv = F.linear(x, attn.qkv.weight, qkv_bias).reshape(batch, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=attn.scale)
    # A clone to the contiguous layout, not reshape's implicit copy: torch.export records SDPA's masked
    # CPU output in its (B, N, heads, d) layout, the ONNX exporter's decomposition then yields
    # (B, heads, N, d), and the reshape, replayed as a view, fails on it for a symbolic token count
    # (torch 2.14: "Cannot view a tensor with shape ..."; .contiguous() is dropped as a no-op).
    out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format)
    return attn.proj(out.reshape(batch, n, -1))


class BeitFeatures(ViTFeatures):
    """``ViTFeatures`` for a timm BEiT: any input size, the relative position bias resampled to it."""

    @staticmethod
    def _create(name: str, pretrained: bool, timm_kwargs: dict[str, Any]) -> nn.Module:
        vit = timm.create_model(name, pretrained=pretrained, **{"num_classes": 0, "global_pool": "", **timm_kwargs})
        if vit.pos_embed is not None or vit.rel_pos_bias is not None:
            raise InputError(f"{name!r}: only BEiTs with per-block relative position bias and no absolute or "
                             "shared position embedding are supported (use_abs_pos_emb / use_shared_rel_pos_bias).")
        embed = vit.patch_embed  # any size, zero-padded to the patch, B x gh x gw x C out (as ViTFeatures's)
        embed.strict_img_size, embed.dynamic_img_pad, embed.flatten, embed.output_fmt = False, True, False, Format.NHWC
        return vit

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        x = torch.cat([self.vit.cls_token.expand(batch, -1, -1), x.reshape(batch, -1, x.shape[-1])], dim=1)
        return self.vit.pos_drop(x)

    def _block(self, block: nn.Module, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        attn = block.attn
        bias = relative_position_bias(attn.relative_position_bias_table, attn.window_size, grid)
        out = block.drop_path1(_scaled(block.gamma_1, _attention(attn, block.norm1(tokens), bias)))
        tokens = tokens + out
        return tokens + block.drop_path2(_scaled(block.gamma_2, block.mlp(block.norm2(tokens))))


def _scaled(gamma: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if gamma is None else gamma * x
