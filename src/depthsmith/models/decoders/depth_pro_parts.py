"""Building blocks of the ``depth_pro`` decoder: tiling, merging, fusion blocks, the ViT builder.

Each one reproduces a piece of transformers' ``models/depth_pro/modeling_depth_pro.py`` (itself a
port of apple/ml-depth-pro ``src/depth_pro/network/encoder.py`` and ``decoder.py``); the name of the
function or class there is given with each.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from ...errors import InputError

__all__ = ["split_tiles", "merge_tiles", "build_vit", "FusionBlock", "upsample_block", "fov_head", "VIT_KEYS"]

# What a ViT spec in decoder_kwargs may hold: shape options only (config.json may come from the internet).
VIT_KEYS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "img_size", "qkv_bias", "init_values")


def build_vit(spec: dict[str, Any], role: str) -> VisionTransformer:
    """A timm DINOv2-style ViT (class token, LayerScale, LayerNorm eps 1e-6, exact GELU) at one fixed
    size, as Hugging Face's Dinov2Model; ``forward_features`` returns its normalised tokens."""
    unknown = sorted(set(spec) - set(VIT_KEYS))
    if unknown:
        raise InputError(f"depth_pro {role}: unknown ViT option(s) {unknown}; valid: {', '.join(VIT_KEYS)}.")
    return VisionTransformer(num_classes=0, global_pool="", **spec)


def split_tiles(image: torch.Tensor, tile: int, overlap: float) -> torch.Tensor:
    """``split_to_patches``: overlapping ``tile`` x ``tile`` crops, ordered tile-major then batch
    (tile 0 of every image, then tile 1, ...); the image itself when it is one tile."""
    batch, channels, height, width = image.shape
    if height == width == tile:
        return image
    stride = int(tile * (1 - overlap))
    tiles = torch.nn.functional.unfold(image, kernel_size=(tile, tile), stride=(stride, stride))
    return tiles.permute(2, 0, 1).reshape(-1, channels, tile, tile)


def merge_tiles(tiles: torch.Tensor, batch: int, padding: int) -> torch.Tensor:
    """``merge_patches``: the first g x g tiles per image (g = floor(sqrt(tiles per image))) put back
    side by side, ``padding`` cells cut from every edge two tiles share (none under 4 tiles per image;
    at most a quarter of a tile). One gather per axis instead of g x g slices (a small export graph)."""
    count, channels, size, _ = tiles.shape
    if count == batch:
        return tiles
    per_image = count // batch
    grid = int(per_image ** 0.5)
    padding = 0 if per_image < 4 else min(size // 4, padding)
    tiles = tiles[: grid * grid * batch].reshape(grid, grid, batch, channels, size, size)
    full = tiles.permute(2, 3, 0, 4, 1, 5).reshape(batch, channels, grid * size, grid * size)
    keep = torch.tensor([t * size + i for t in range(grid) for i in range(size)
                         if (t == 0 or i >= padding) and (t == grid - 1 or i < size - padding)], device=full.device)
    return full.index_select(2, keep).index_select(3, keep)


def upsample_block(in_channels: int, mid: int, out: int, steps: int, project: bool, bias: bool) -> nn.Sequential:
    """``DepthProFeatureUpsampleBlock``: an optional 1x1 projection, then ``steps`` x2 transposed convs."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, mid, 1, bias=bias)] if project else []
    for i in range(steps):
        layers.append(nn.ConvTranspose2d(mid if i == 0 else out, out, 2, stride=2, bias=bias))
    return nn.Sequential(*layers)


class ResidualUnit(nn.Module):
    """``DepthProPreActResidualLayer`` without BatchNorm: x + conv(relu(conv(relu(x))))."""

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class FusionBlock(nn.Module):
    """``DepthProFeatureFusionLayer``: (x + unit1(skip)) -> unit2 -> x2 transposed conv -> 1x1 conv.
    The first block has no skip; its ``residual_layer1`` is built by transformers but never run, so
    it is left out here (no parameter without a gradient)."""

    def __init__(self, channels: int, bias: bool, skip: bool, upsample: bool) -> None:
        super().__init__()
        self.res1 = ResidualUnit(channels, bias) if skip else None
        self.res2 = ResidualUnit(channels, bias)
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=False) if upsample else None
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.res1 is not None and skip is not None:
            x = x + self.res1(skip)
        x = self.res2(x)
        if self.deconv is not None:
            x = self.deconv(x)
        return self.project(x)


def fov_head(features: int, layers: int, grid: int) -> nn.Sequential:
    """``DepthProFovHead``: ``layers`` stride-2 3x3 convs halving the channels, then one conv whose
    kernel covers what is left of the ``grid`` x ``grid`` map: one value, the field of view in degrees."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Conv2d(-(-features // 2 ** (i + 1)), -(-features // 2 ** (i + 2)), 3, stride=2, padding=1),
                    nn.ReLU()]
    kernel = int((grid - 1) / 2 ** layers + 1)
    modules.append(nn.Conv2d(-(-features // 2 ** (layers + 1)), 1, kernel))
    return nn.Sequential(*modules)
