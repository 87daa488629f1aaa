"""Depth Pro (Bochkovskii et al. 2024, apple/ml-depth-pro) as a depthsmith decoder.

The network (transformers ``models/depth_pro/modeling_depth_pro.py``, which ``models/hf_depth_pro.py``
converts) has three DINOv2 ViTs. The *patch* ViT runs on 35 overlapping tiles of the image at three
scales; the *image* ViT sees the whole image at tile size; the *fov* ViT estimates the field of
view. A fusion decoder turns the five feature maps into canonical inverse depth at the working size.

Why it is a ``DepthModel`` (timm encoder + this registered decoder + the ``metric_direct`` head) and
not a model class of its own: the patch ViT is an ordinary depthsmith encoder (``Encoder`` over a timm
ViT, taps at the hooks and the last block), so save/load, the card, training's encoder freeze, the
ONNX export and the fast paths all work unchanged. What does not fit the usual ``decoder(encoder(x))``
is that the encoder must see tiles, not the image; so this decoder declares ``runs_encoder`` and
``DepthModel.decode`` hands it the normalised image and the encoder, and it tiles, calls the encoder
once on all tiles and merges (``DepthProPatchEncoder``). The image and fov ViTs are timm ViTs held here.

Working size: the image is resized (bilinear, no antialias: ``DepthProImageProcessor``) to
``working_size`` squared, and the prediction is returned at the input size as
``post_process_depth_estimation`` does: inverse depth x width / focal, resized bilinearly to the
target size, then 1 / clamp(., 1e-4, 1e4). The focal length is 0.5 x width / tan(fov / 2), so
width / focal = 2 tan(fov / 2) for every width. The output is metres (or, without the fov ViT,
1 / canonical inverse depth, what the processor returns then).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .depth_pro_parts import FusionBlock, build_vit, fov_head, merge_tiles, split_tiles, upsample_block
from .registry import register_decoder
from ...errors import InputError

__all__ = ["DepthProDecoder"]

_CLAMP = (1e-4, 1e4)  # post_process_depth_estimation: 1 / clamp(inverse depth, 1e-4, 1e4)


def _fp32_or_more(x: torch.Tensor) -> torch.Tensor:
    """The metric post-processing in at least fp32 (a bf16 decoder's 1 / x would keep 3 digits)."""
    return x if x.dtype == torch.float64 else x.float()


def _resize(x: torch.Tensor, size: Any) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _grid(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """B x (prefix + g*g) x C tokens -> B x C x g x g (``reshape_features``)."""
    tokens = tokens[:, prefix:]
    side = int(tokens.shape[1] ** 0.5)
    return tokens.reshape(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)


@register_decoder("depth_pro")
class DepthProDecoder(nn.Module):
    """``channels``/``reductions``: the patch encoder's taps, i.e. ``sorted(hooks)`` then its last
    block (normalised). Defaults are ``DepthProConfig``'s (apple/DepthPro-hf)."""

    runs_encoder = True

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        image_vit: dict[str, Any],
        fov_vit: dict[str, Any] | None = None,
        hooks: Sequence[int] = (11, 5),
        hook_features: Sequence[int] = (256, 256),
        ratios: Sequence[float] = (0.25, 0.5, 1.0),
        overlaps: Sequence[float] = (0.0, 0.5, 0.25),
        scale_features: Sequence[int] = (1024, 1024, 512),
        features: int = 256,
        merge_padding: int = 3,
        fov_head_layers: int = 2,
        residual_bias: bool = True,
        working_size: int = 1536,
    ) -> None:
        super().__init__()
        self.hooks, self.ratios, self.overlaps = [int(h) for h in hooks], [float(r) for r in ratios], list(overlaps)
        if len(channels) != len(self.hooks) + 1 or len(set(channels)) != 1:
            raise InputError(f"depth_pro needs the encoder's {len(self.hooks)} hook taps and its last block, all "
                             f"one width; got channels {list(channels)}.")
        if self.ratios != sorted(self.ratios) or not len(self.ratios) == len(overlaps) == len(scale_features):
            raise InputError(f"depth_pro: ratios {self.ratios} must increase and match overlaps and scale_features.")
        self.working_size, self.merge_padding = int(working_size), int(merge_padding)
        self.tile = int(image_vit["img_size"])
        if self.working_size * self.ratios[0] != self.tile:
            raise InputError(f"depth_pro: working_size {self.working_size} x smallest ratio {self.ratios[0]} must be "
                             f"the tile size {self.tile} (one tile at the coarsest scale).")
        self.taps = sorted(self.hooks)  # encoder output i holds block taps[i]; the last one the final tokens
        width = int(channels[0])
        grid = self.tile // int(image_vit["patch_size"])  # transformers: image_model_config's out_size
        self.base = self.working_size // 2 ** int(math.log2(self.working_size / grid))
        self.grid = grid

        self.image_vit = build_vit(dict(image_vit), "image_vit")
        self.upsample_image = nn.ConvTranspose2d(self.image_vit.embed_dim, scale_features[0], 2, stride=2)
        self.upsample_scales = nn.ModuleList(upsample_block(width, c, c, 1, True, False) for c in scale_features)
        self.upsample_hooks = nn.ModuleList(
            upsample_block(width, features if i == 0 else c, c, 2 + i, True, False) for i, c in enumerate(hook_features))
        self.fuse_image = nn.Conv2d(2 * scale_features[0], scale_features[0], 1)
        dims = [*scale_features, *hook_features]
        self.project = nn.ModuleList(
            nn.Identity() if i == len(dims) - 1 and c == features else nn.Conv2d(c, features, 3, padding=1, bias=False)
            for i, c in enumerate(dims))
        self.fusion = nn.ModuleList(FusionBlock(features, residual_bias, skip=i > 0, upsample=True)
                                    for i in range(len(dims) - 1))
        self.fusion_final = FusionBlock(features, residual_bias, skip=True, upsample=False)
        self.head = nn.Sequential(
            nn.Conv2d(features, features // 2, 3, padding=1), nn.ConvTranspose2d(features // 2, features // 2, 2, stride=2),
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU())
        self.estimates_focal = fov_vit is not None
        if fov_vit is not None:
            self.fov_vit = build_vit(dict(fov_vit), "fov_vit")
            self.fov_neck = nn.Linear(self.fov_vit.embed_dim, features // 2)
            self.fov_conv = nn.Conv2d(features, features // 2, 3, stride=2, padding=1)
            self.fov_head = fov_head(features, int(fov_head_layers), grid)

    # ------------------------------------------------------------------ pieces

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The processor's resize to the working size (after normalisation: both are linear)."""
        x = x.to(self.fuse_image.weight.dtype)  # the fast path's bf16 decoder: its ViTs see bf16
        return _resize(x, (self.working_size, self.working_size))

    def _scaled(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.ratios[i], mode="bilinear", align_corners=False)

    def _scale_map(self, tokens: torch.Tensor, batch: int, i: int) -> torch.Tensor:
        """Merged tile features of scale ``i`` at base x 2^i (``reconstruct_feature_maps``)."""
        merged = merge_tiles(tokens, batch, int(self.merge_padding * (1 / self.ratios[i])))
        side = self.base * 2 ** i
        return _resize(merged, (side, side))

    def _global(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Image ViT + the coarsest patch scale -> the first fusion input (``DepthProNeck``)."""
        image = _grid(self.image_vit.forward_features(_resize(x, (self.tile, self.tile))),
                      self.image_vit.num_prefix_tokens)
        image = self.upsample_image(_resize(image, (self.base, self.base)))
        coarse = self.upsample_scales[0](coarse)
        return self.project[0](self.fuse_image(torch.cat([coarse, image], dim=1)))

    def _fov(self, x: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        """``DepthProFovModel``: the field of view in degrees, one per image."""
        side = int(self.fov_vit.patch_embed.img_size[0])
        tokens = self.fov_neck(self.fov_vit.forward_features(_resize(x, (side, side))))
        fov = _resize(_grid(tokens, self.fov_vit.num_prefix_tokens), (self.base, self.base))
        fov = fov + torch.relu(self.fov_conv(global_features))
        return self.fov_head(_resize(fov, (self.grid, self.grid))).flatten()

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, size: Any, encoder: nn.Module) -> torch.Tensor:
        """Normalised RGB (B x 3 x H x W) -> metres at ``size`` (B x 1 x H x W)."""
        batch = x.shape[0]
        x = self._prepare(x)
        tiles = [split_tiles(self._scaled(x, i), self.tile, self.overlaps[i]) for i in range(len(self.ratios))]
        counts = [t.shape[0] for t in tiles]
        taps = encoder(torch.cat(tiles[::-1], dim=0))  # finest tiles first, as transformers
        finals = torch.split(taps[-1], counts[::-1])[::-1]
        scales = [self._scale_map(finals[i], batch, i) for i in range(len(self.ratios))]
        fine = self.base * 2 ** (len(self.ratios) - 1)
        padding = int(self.merge_padding * (1 / self.ratios[-1]))
        hooks = [_resize(merge_tiles(taps[self.taps.index(h)], batch, padding), (fine, fine)) for h in self.hooks]
        global_features = self._global(x, scales[0])
        maps = [global_features]
        maps += [self.project[i](up(s)) for i, (up, s) in enumerate(zip(self.upsample_scales[1:], scales[1:]), 1)]
        n = len(self.ratios)
        maps += [self.project[n + i](up(h)) for i, (up, h) in enumerate(zip(self.upsample_hooks, hooks))]
        fused = None
        for block, feature in zip(self.fusion, maps[:-1]):
            fused = block(feature) if fused is None else block(fused, feature)
        inverse = _fp32_or_more(self.head(self.fusion_final(fused, maps[-1])))
        if self.estimates_focal:  # x width / focal = x 2 tan(fov / 2)
            fov = _fp32_or_more(self._fov(x, global_features))
            inverse = inverse * (2 * torch.tan(0.5 * torch.deg2rad(fov))).view(-1, 1, 1, 1)
        return 1.0 / _resize(inverse, size).clamp(*_CLAMP)

    def focal_length(self, x: torch.Tensor, encoder: nn.Module, width: Any) -> torch.Tensor:
        """fx in pixels of an image ``width`` wide: 0.5 x width / tan(fov / 2), from normalised RGB
        (``post_process_depth_estimation``). Runs only what the fov estimate needs: the image and fov
        ViTs and the single coarsest patch tile."""
        if not self.estimates_focal:
            raise InputError("this depth_pro model has no field-of-view ViT (use_fov_model false).")
        batch = x.shape[0]
        x = self._prepare(x)
        coarse = self._scale_map(encoder(split_tiles(self._scaled(x, 0), self.tile, self.overlaps[0]))[-1], batch, 0)
        fov = _fp32_or_more(self._fov(x, self._global(x, coarse)))
        return 0.5 * width / torch.tan(0.5 * torch.deg2rad(fov))
