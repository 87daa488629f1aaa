"""Depth Anything 3's any-view DINOv2 (DA3-Small / DA3-Base), run on one view: a timm ViT with its
RoPE, QK-norm and camera-token blocks, as ``DinoVisionTransformer._get_intermediate_layers_not_chunked``
(depth_anything_3/model/dinov2/vision_transformer.py, PyPI ``depth-anything-3`` 0.1.1) runs it for
S = 1 view. Built for converted checkpoints only (models/da3_anyview.py).

What one view keeps of the any-view design (``any_view`` = {alt_start, qknorm_start, rope_start,
rope_freq}, the package's configs/da3-small.yaml: 4, 4, 4 and DinoVisionTransformer's default 100):

* Blocks from ``qknorm_start`` on LayerNorm q and k per head (upstream attention.py: ``nn.LayerNorm``,
  eps 1e-5; timm's q_norm / k_norm modules, with that eps).
* Blocks from ``rope_start`` on rotate q and k by a 2D RoPE (upstream layers/rope.py): the first half
  of each head by the token's row, the second half by its column, each half split in two
  ("rotate half"), frequencies 1 / rope_freq ** (2i / (head_dim / 2)). The class token sits at
  position (0, 0), which rotates nothing; patches at (row + 1, col + 1).
* At block ``alt_start`` the class token is replaced by the reference view's camera token
  (``camera_token[:, 0]``; the second, for the other views, is unused with one view).
* From ``alt_start`` on, odd blocks are "global" (cross-view) attention: with one view the same
  tokens attend, but every patch sits at position (1, 1) (upstream's ``pos_nodiff``). Even blocks
  are per-view ("local") with the grid positions.
* Each tap is the concatenation [last local block's output, final-LayerNorm'd output] (``cat_token``),
  patch tokens only, so it is 2 x embed_dim wide. The final LayerNorm is upstream's ``nn.LayerNorm``
  (eps 1e-5; the blocks' are 1e-6, as timm's).

Views beyond one (reference-view selection, cross-view attention between views) and the camera
encoder / decoder do not occur in single-image depth and are not here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .vit import ViTFeatures

__all__ = ["AnyViewViTFeatures", "ANY_VIEW_KEYS"]

ANY_VIEW_KEYS = ("alt_start", "qknorm_start", "rope_start", "rope_freq")
_TORCH_LAYER_NORM_EPS = 1e-5  # upstream's q/k norm and final norm are plain nn.LayerNorm


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rope_tables(positions: torch.Tensor, head_dim: int, frequency: float,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (N x head_dim) for token positions (N x 2: row, column), in the layout of
    upstream's ``RotaryPositionEmbedding2D`` (rows on the first half of the head, columns on the second);
    angles in float32, cos and sin in ``dtype``, as upstream's tables."""
    half = head_dim // 2
    exponents = torch.arange(0, half, 2, device=positions.device).float() / half
    inv_freq = 1.0 / (frequency ** exponents)  # upstream _compute_frequency_components, same expression
    cos, sin = [], []
    for axis in (0, 1):
        angles = positions[:, axis, None].float() * inv_freq[None]
        angles = torch.cat((angles, angles), dim=-1).to(dtype)
        cos.append(angles.cos())
        sin.append(angles.sin())
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B x heads x N x head_dim): each half of the head by its own axis."""
    rows, cols = x.chunk(2, dim=-1)
    rotated = torch.cat((_rotate_half(rows), _rotate_half(cols)), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def _rope_attention(attn: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """timm ``Attention.forward`` with the rotation between the q/k norm and the product, as upstream's
    ``Attention.forward`` (timm's own ``AttentionRope`` rotates in a different channel layout)."""
    batch, tokens, _ = x.shape
    qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    x = F.scaled_dot_product_attention(q, k, v)
    x = x.transpose(1, 2).reshape(batch, tokens, attn.attn_dim)
    return attn.proj(attn.norm(x))


def _rope_block(block: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """timm ``Block.forward`` with the rotated attention."""
    x = x + block.drop_path1(block.ls1(_rope_attention(block.attn, block.norm1(x), cos, sin)))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


class AnyViewViTFeatures(ViTFeatures):
    """A timm DINOv2 run as DA3's any-view ViT on one view; taps 2 x embed_dim wide (see module doc)."""

    def __init__(self, name: str, pretrained: bool = False, out_indices=None, weight_file=None,
                 any_view: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if pretrained or weight_file is not None:
            raise InputError(f"{name!r} with any_view: built for converted Depth Anything 3 checkpoints only "
                             "(load_model); its camera token and QK-norm have no ImageNet weights.")
        config = dict(any_view or {})
        unknown = sorted(set(config) - set(ANY_VIEW_KEYS))
        missing = [k for k in ANY_VIEW_KEYS if k not in config]
        if unknown or missing:
            raise InputError(f"any_view needs exactly the keys {', '.join(ANY_VIEW_KEYS)} (got unknown {unknown}, "
                             f"missing {missing}).")
        super().__init__(name, False, out_indices, None, qk_norm=True, **kwargs)
        self.alt_start, self.qknorm_start, self.rope_start = (int(config[k]) for k in ANY_VIEW_KEYS[:3])
        self.rope_freq = float(config["rope_freq"])
        depth = len(self.vit.blocks)
        if not (0 <= self.alt_start < depth and 0 <= self.qknorm_start < depth and 0 <= self.rope_start < depth
                and self.rope_freq > 0):
            raise InputError(f"any_view {config}: alt_start, qknorm_start and rope_start must be blocks of the "
                             f"{depth} kept (0..{depth - 1}) and rope_freq positive.")
        for i, block in enumerate(self.vit.blocks):
            if i < self.qknorm_start:  # plain DINOv2 blocks before qknorm_start (vision_transformer.py qk_norm=)
                block.attn.q_norm = nn.Identity()
                block.attn.k_norm = nn.Identity()
            else:
                block.attn.q_norm.eps = block.attn.k_norm.eps = _TORCH_LAYER_NORM_EPS
        self.vit.norm.eps = _TORCH_LAYER_NORM_EPS
        dim = int(self.vit.embed_dim)
        self.camera_token = nn.Parameter(torch.zeros(1, 2, dim))  # reference view, other views
        self.channels = [2 * dim] * len(self.out_indices)

    def _positions(self, gh: int, gw: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token positions (1 + gh*gw) x 2: per-view (grid + 1) and cross-view (all patches at 1); the class
        or camera token at 0 (upstream ``_prepare_rope``). Built from tensors so export keeps gh, gw symbolic."""
        rows = torch.arange(gh, device=like.device)[:, None].expand(gh, gw).reshape(-1)
        cols = torch.arange(gw, device=like.device)[None, :].expand(gh, gw).reshape(-1)
        grid = torch.stack((rows, cols), dim=-1) + 1
        special = torch.zeros(1, 2, dtype=grid.dtype, device=like.device)
        return torch.cat((special, grid)), torch.cat((special, torch.ones_like(grid)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        vit = self.vit
        batch = x.shape[0]
        _, tokens = self._embed(x)
        gh, gw = tokens.shape[1], tokens.shape[2]
        tokens = self._tokens(tokens)
        head_dim = vit.blocks[0].attn.head_dim
        local_pos, global_pos = self._positions(gh, gw, tokens)
        local_rope = rope_tables(local_pos, head_dim, self.rope_freq, tokens.dtype)
        global_rope = rope_tables(global_pos, head_dim, self.rope_freq, tokens.dtype)
        feats, local = [], tokens
        for i, block in enumerate(vit.blocks):
            if i == self.alt_start:  # the reference view's camera token takes the class token's place
                tokens = torch.cat((self.camera_token[:, :1].expand(batch, -1, -1), tokens[:, 1:]), dim=1)
            cross_view = i >= self.alt_start and i % 2 == 1
            if i < self.rope_start:
                tokens = block(tokens)
            else:
                tokens = _rope_block(block, tokens, *(global_rope if cross_view else local_rope))
            if not cross_view:
                local = tokens
            if i in self.out_indices:
                out = torch.cat((local, vit.norm(tokens)), dim=-1)[:, vit.num_prefix_tokens:]
                feats.append(out.reshape(batch, gh, gw, out.shape[-1]).permute(0, 3, 1, 2).contiguous())
        return feats
