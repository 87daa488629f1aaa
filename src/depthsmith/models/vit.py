"""Plain (non-hierarchical) timm Vision Transformers as depth encoders, at any input size.

A ViT sees the image as a grid of ``patch x patch`` tokens at one stride. Three things make
it usable for dense prediction at arbitrary H x W, all with timm's own means:

* ``dynamic_img_size=True``: the position embedding is resampled to the token grid of the
  input instead of asserting the pretraining size ("Input width (288) doesn't match model (224)").
* ``dynamic_img_pad=True``: timm's patch embedding zero-pads the (normalised) image on the
  right and bottom up to a multiple of the patch size, so a 100 x 130 image gives a
  ceil(100/14) x ceil(130/14) grid. The DPT decoder predicts at that padded size and crops
  the top-left H x W back out, so nothing outside the model needs to know about patches.
* Intermediate blocks (``out_indices``, the DPT "hooks") are read as timm's
  ``forward_intermediates`` does, with the final LayerNorm applied to each (as DINOv2's
  ``get_intermediate_layers(norm=True)`` and Depth Anything do), prefix tokens dropped and
  tokens reshaped to B x C x gh x gw. ``norm="last"`` normalises the deepest tap only: Depth Pro
  reads Hugging Face Dinov2's ``hidden_states`` (raw block outputs) at its hooks and the normalised
  ``last_hidden_state`` (transformers models/depth_pro/modeling_depth_pro.py, DepthProPatchEncoder).

The one step done here rather than by timm is the position-embedding resample: timm's default
is antialiased bicubic, DINOv2 (and Hugging Face's Dinov2, which the published Depth Anything
checkpoints run on) use plain bicubic. ``pos_embed_antialias`` picks; dinov2 names default to
False so converted checkpoints reproduce their published outputs at every size.

``pos_embed_offset``: the original DINOv2 code (facebookresearch/dinov2 ``interpolate_offset``,
kept by Depth-Anything-V2's ``depth_anything_v2/dinov2.py`` with 0.1) resamples by
``scale_factor=(grid + offset) / old_grid`` rather than to the grid size; the output has the same
grid but bicubic samples other source points (the offset guards against float error, see
facebookresearch/dino issue 8). 0 (the default) is timm's and Hugging Face's resample to the size.

Options for converted DPT / MiDaS 3 checkpoints (models/hf_dpt.py), each off by default:

* ``readout``: what the class token does to the patch tokens of a tap (DPT's "readout"; the
  original keeps it in the backbone, ``act_postprocess`` in isl-org/DPT ``dpt/vit.py``):
  ``ignore`` drops it, ``add`` adds it to every token, ``project`` concatenates it to every token
  and applies Linear(2C, C) + GELU (one per tap).
* ``pos_embed_interpolation``: ``bilinear`` for DPT (transformers ``DPTViTEmbeddings._resize_pos_embed``).
* ``layer_norm_eps``: every LayerNorm's epsilon (DPT's ViT uses 1e-12, timm 1e-6).
* ``final_norm_eps``: the final norm's epsilon only (Depth Anything 3's DINOv2 builds it as a plain
  ``nn.LayerNorm``, 1e-5, and its blocks' with 1e-6: depth_anything_3/model/dinov2/vision_transformer.py).
* ``pad_multiple``: zero-pad to this multiple instead of the patch. DPT fuses by doubling each
  level's size, so its grids must be even: 2 x patch (the processor's ``ensure_multiple_of`` 32).
* ``cnn_taps``: for a hybrid ViT (timm ``vision_transformer_hybrid``: a CNN whose stride-16 map
  is the token grid), the outputs of its first ``cnn_taps`` CNN stages come first in the list, as
  DPT-Hybrid takes ResNet stages 1 and 2 (``DPTViTHybridEmbeddings.residual_feature_map_index``).
"""

from __future__ import annotations

import functools

from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn
from torch.nn import functional as F

from .weights import load_encoder_file
from ..errors import InputError

__all__ = ["is_plain_vit", "is_hybrid_vit", "ViTFeatures", "READOUTS"]

READOUTS = ("ignore", "add", "project")


def _static_same_padding(cnn: nn.Module) -> None:
    """timm's "same" padding of the stride-2 convs and max pool of a hybrid's ResNetV2, made static.

    timm pads those layers by ``max((ceil(x / s) - 1) * s + (k - 1) * d + 1 - x, 0)`` of the input size
    x (timm/layers/padding.py ``pad_same``). Traced with a symbolic size, each layer's expression nests
    the previous ones, and torch.export spent tens of minutes simplifying them (a tiny DPT-hybrid,
    torch 2.14). Here the input is first zero-padded to ``pad_multiple``, a multiple of the patch
    (checked above), which is the product of the CNN's power-of-two strides: every such layer then
    sees a multiple of its stride, where the formula is the constant ``max((k - 1) * d + 1 - s, 0)``.
    The same numbers, as a fixed pad before the layer.
    """
    from timm.layers.pool2d_same import MaxPool2dSame

    for module in cnn.modules():
        pool = isinstance(module, MaxPool2dSame)
        if not (pool or getattr(module, "same_pad", False)):
            continue
        pad = [max((int(k) - 1) * int(d) + 1 - int(s), 0) for k, s, d in
               zip(_pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))]
        sides = (pad[1] // 2, pad[1] - pad[1] // 2, pad[0] // 2, pad[0] - pad[0] // 2)
        value = float("-inf") if pool else 0.0
        module.register_forward_pre_hook(lambda m, args, sides=sides, value=value: (F.pad(args[0], sides, value=value),))
        if pool:  # MaxPool2dSame.forward pads itself: the plain pooling instead
            module.forward = functools.partial(F.max_pool2d, kernel_size=module.kernel_size, stride=module.stride,
                                               padding=0, dilation=module.dilation, ceil_mode=module.ceil_mode)
        else:
            module.same_pad = False


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def is_hybrid_vit(name: str) -> bool:
    """True for timm's ``vision_transformer_hybrid`` family (``vit_base_r50_s16_384``, ...)."""
    base = timm.models.split_model_name_tag(name)[0]
    return base in timm.list_models(module="vision_transformer_hybrid")


def is_plain_vit(name: str) -> bool:
    """True for timm's ``vision_transformer`` family (DINOv2, AugReg, DeiT-style, test_vit...)."""
    base = timm.models.split_model_name_tag(name)[0]
    return base in timm.list_models(module="vision_transformer")


def _exporting() -> bool:
    # ONNX/dynamo export must not take a size-dependent early-out (it would freeze the size).
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def _cubic_matrix(size, old: int, inverse_scale, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` x ``old`` matrices: [i == j], and PyTorch's bicubic resampling by ``scale_factor``
    1 / ``inverse_scale`` (aten/src/ATen/native/UpSample.h: source (dst + 0.5) / scale - 0.5, not
    clamped; Keys' kernel with A = -0.75; taps outside clamped to the border). Built from tensors, so
    export keeps ``size`` symbolic where ``F.interpolate(scale_factor=...)`` freezes the example's scale."""
    dst = torch.arange(size, dtype=torch.float32, device=like.device)
    src = (dst + 0.5) * inverse_scale - 0.5
    base = torch.floor(src)
    t = src - base
    a = -0.75
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731  |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731  1 < |x| < 2
    columns = torch.arange(old, dtype=torch.float32, device=like.device)
    matrix = sum(w[:, None] * ((base + k - 1).clamp(0, old - 1)[:, None] == columns).float()
                 for k, w in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t))))
    identity = (dst[:, None] == columns).float()
    return identity, matrix


def _resample_with_offset(pos: torch.Tensor, new, old, prefix_count: int, offset: float) -> torch.Tensor:
    """DINOv2's original ``interpolate_pos_encoding``: bicubic (no antialias) by ``scale_factor``
    (new + offset) / old in float32, giving the ``new`` grid; the embedding as it is when ``new`` == ``old``."""
    prefix, grid = pos[:, :prefix_count], pos[:, prefix_count:]
    dim = grid.shape[-1]
    grid = grid.float().reshape(old[0], old[1], dim).permute(2, 0, 1)  # C x old_h x old_w
    eye_h, rows = _cubic_matrix(new[0], old[0], old[0] / (new[0] + offset), grid)
    eye_w, cols = _cubic_matrix(new[1], old[1], old[1] / (new[1] + offset), grid)
    # new == old as a tensor (last index == old - 1), not a Python bool that export would specialise on
    same = (eye_h[-1, -1] > 0) & (eye_w[-1, -1] > 0)
    rows, cols = torch.where(same, eye_h, rows), torch.where(same, eye_w, cols)
    # rows @ grid @ cols.T as two 2-D products: OpenVINO's CPU plugin fails to compile the rank-2 x rank-3
    # MatMul ("argument shapes ranks are not equal") that ONNX Runtime runs
    channels, old_h, old_w = grid.shape
    grid = rows @ grid.permute(1, 0, 2).reshape(old_h, channels * old_w)  # new_h x (C old_w)
    grid = grid.reshape(-1, old_w) @ cols.T  # (new_h C) x new_w
    grid = grid.reshape(rows.shape[0], channels, cols.shape[0]).permute(1, 0, 2)  # C x new_h x new_w
    grid = grid.permute(1, 2, 0).reshape(1, -1, dim).to(pos.dtype)
    return torch.cat([prefix, grid], dim=1)


class ViTFeatures(nn.Module):
    """A timm ViT returning ``len(out_indices)`` feature maps (B x C x gh x gw), shallow to deep.

    ``channels`` / ``reductions`` describe them like a CNN's ``feature_info``: every tap has the
    embedding width and the patch size as stride. ``patch_size`` is what the decoder pads to.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        out_indices: Sequence[int] | None = None,
        weight_file: str | Path | None = None,
        norm: bool | str = True,
        pos_embed_antialias: bool | None = None,
        pos_embed_offset: float = 0.0,
        readout: str = "ignore",
        pos_embed_interpolation: str = "bicubic",
        layer_norm_eps: float | None = None,
        final_norm_eps: float | None = None,
        pad_multiple: int | None = None,
        cnn_taps: int = 0,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        self.vit = self._create(name, pretrained, timm_kwargs)
        if not hasattr(self.vit, "blocks") or not hasattr(self.vit, "patch_embed"):
            raise InputError(f"{name!r} is not a plain timm VisionTransformer (no blocks / patch_embed).")
        depth = len(self.vit.blocks)
        # Default: four evenly spaced blocks ending at the last one (DPT's hooks; ViT-S/B: 2, 5, 8, 11).
        indices = list(out_indices) if out_indices is not None else [depth * (i + 1) // 4 - 1 for i in range(4)]
        bad = [i for i in indices if not -depth <= i < depth]
        if bad:
            raise InputError(f"out_indices {bad} out of range for {name!r}, which has {depth} blocks (0..{depth - 1}).")
        self.out_indices = [i % depth for i in indices]
        if self.out_indices != sorted(set(self.out_indices)):
            raise InputError(f"out_indices must be increasing block indices, got {list(indices)} for {name!r}.")
        # Blocks after the deepest tap are dropped (not just skipped): fewer parameters, and none
        # left without a gradient (DDP would need find_unused_parameters otherwise).
        self.vit.blocks = self.vit.blocks[: self.out_indices[-1] + 1]
        if norm not in (True, False, "last"):
            raise InputError(f"norm={norm!r} is not valid for {name!r}: True (every tap), False or 'last'.")
        self.norm_last_only = norm == "last"
        if not norm:
            self.vit.norm = nn.Identity()
        if weight_file is not None:  # a timm/DINOv2 checkpoint keys the bare ViT, not this wrapper
            load_encoder_file(self.vit, weight_file)
        self.antialias = ("dinov2" not in name) if pos_embed_antialias is None else bool(pos_embed_antialias)
        self.offset = float(pos_embed_offset)
        if not 0 <= self.offset < 1:
            raise InputError(f"pos_embed_offset={pos_embed_offset!r} must be in [0, 1) (DINOv2's original: 0.1).")
        if self.offset and self.antialias:
            raise InputError(f"pos_embed_offset={self.offset} is DINOv2's original resample, which does not "
                             f"antialias; pos_embed_antialias must be False for {name!r}.")
        # A hybrid's token stride is its CNN's (feature_ratio) times its patch on that map (1).
        ratio = tuple(getattr(self.vit.patch_embed, "feature_ratio", (1, 1)))
        stride = tuple(int(p) * int(r) for p, r in zip(self.vit.patch_embed.patch_size, ratio))
        self.patch_size = stride[0]
        if stride != (self.patch_size, self.patch_size):
            raise InputError(f"{name!r}: only square patches are supported, got {stride}.")
        self.channels = [int(self.vit.embed_dim)] * len(self.out_indices)
        self.reductions = [self.patch_size] * len(self.out_indices)
        self.cnn_taps = int(cnn_taps)
        if self.cnn_taps:
            backbone = getattr(self.vit.patch_embed, "backbone", None)
            info = [f for f in getattr(backbone, "feature_info", []) if f["module"].startswith("stages.")]
            if not 0 < self.cnn_taps < len(info):
                raise InputError(f"cnn_taps={cnn_taps}: {name!r} has {len(info)} CNN stages before its tokens "
                                 "(a hybrid ViT is needed, and the last stage makes the tokens).")
            self.channels = [int(f["num_chs"]) for f in info[:self.cnn_taps]] + self.channels
            self.reductions = [int(f["reduction"]) for f in info[:self.cnn_taps]] + self.reductions
        self.pretrained_cfg = dict(getattr(self.vit, "pretrained_cfg", None) or {})
        if readout not in READOUTS:
            raise InputError(f"readout={readout!r} is not valid; choose one of {READOUTS}.")
        if pos_embed_interpolation not in ("bicubic", "bilinear"):
            raise InputError(f"pos_embed_interpolation={pos_embed_interpolation!r}: choose bicubic or bilinear.")
        if pad_multiple is not None and (int(pad_multiple) < 1 or int(pad_multiple) % self.patch_size):
            raise InputError(f"pad_multiple={pad_multiple} must be a positive multiple of the patch ({self.patch_size}).")
        if readout != "ignore" and self.vit.num_prefix_tokens != 1:
            raise InputError(f"readout={readout!r} needs exactly one class token; {name!r} has "
                             f"{self.vit.num_prefix_tokens} prefix tokens.")
        self.readout_mode, self.interpolation, self.pad_multiple = readout, pos_embed_interpolation, pad_multiple
        if pad_multiple is not None and getattr(self.vit.patch_embed, "backbone", None) is not None:
            _static_same_padding(self.vit.patch_embed.backbone)
        dim = int(self.vit.embed_dim)
        # One per output, CNN maps included (as nn.Identity), so index i is DPT's readout_projects.i.
        self.readout = (nn.ModuleList([*(nn.Identity() for _ in range(self.cnn_taps)),
                                       *(nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU()) for _ in self.out_indices)])
                        if readout == "project" else None)
        if layer_norm_eps is not None:
            for module in self.vit.modules():
                if isinstance(module, nn.LayerNorm):
                    module.eps = float(layer_norm_eps)
        if final_norm_eps is not None and isinstance(self.vit.norm, nn.LayerNorm):
            self.vit.norm.eps = float(final_norm_eps)

    @staticmethod
    def _create(name: str, pretrained: bool, timm_kwargs: dict[str, Any]) -> nn.Module:
        # No classifier, no pooling head: their parameters would never get a gradient here.
        kwargs = dict(num_classes=0, global_pool="", dynamic_img_size=True, dynamic_img_pad=True)
        kwargs.update(timm_kwargs)
        return timm.create_model(name, pretrained=pretrained, **kwargs)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The token sequence entering the first block (B x gh x gw x C patches in)."""
        return self.vit.norm_pre(self.vit.patch_drop(self._pos_embed(x)))

    def _block(self, block: nn.Module, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return block(tokens)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """timm's ``VisionTransformer._pos_embed`` with the antialias choice made explicit."""
        vit = self.vit
        batch, gh, gw, dim = x.shape
        prefix = [t.expand(batch, -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None]
        x = x.reshape(batch, gh * gw, dim)
        if vit.pos_embed is None:
            return torch.cat([*prefix, x], dim=1)
        old = tuple(vit.patch_embed.grid_size)
        if not _exporting() and (gh, gw) == old:
            pos = vit.pos_embed  # bicubic to the same size is the identity: skip it
        elif self.offset:
            prefix_count = 0 if vit.no_embed_class else vit.num_prefix_tokens
            pos = _resample_with_offset(vit.pos_embed, (gh, gw), old, prefix_count, self.offset)
        else:
            pos = resample_abs_pos_embed(
                vit.pos_embed, new_size=(gh, gw), old_size=old,
                num_prefix_tokens=0 if vit.no_embed_class else vit.num_prefix_tokens,
                interpolation=self.interpolation, antialias=self.antialias,
            )
        if vit.no_embed_class:
            x = torch.cat([*prefix, x + pos], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + pos
        return vit.pos_drop(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        vit = self.vit
        batch = x.shape[0]
        if self.pad_multiple is not None:  # zeros on the right and bottom, as timm's patch padding
            x = F.pad(x, (0, (-x.shape[-1]) % self.pad_multiple, 0, (-x.shape[-2]) % self.pad_multiple))
        maps, tokens = self._embed(x)  # tokens: B x gh x gw x C (NHWC with dynamic_img_size)
        gh, gw = tokens.shape[1], tokens.shape[2]
        tokens = self._tokens(tokens)
        feats = list(maps)
        for i, block in enumerate(vit.blocks):
            tokens = self._block(block, tokens, (gh, gw))
            if i in self.out_indices:
                norm = not self.norm_last_only or i == self.out_indices[-1]
                out = self._read_out(vit.norm(tokens) if norm else tokens, len(feats))
                feats.append(out.reshape(batch, gh, gw, out.shape[-1]).permute(0, 3, 1, 2).contiguous())
        return feats

    def _embed(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The patch tokens, and for a hybrid the first ``cnn_taps`` CNN stage outputs on the way
        (timm ``HybridEmbed.forward`` with its stages run one by one; its 1 x 1 patch needs no padding)."""
        embed = self.vit.patch_embed
        if not self.cnn_taps:
            return [], embed(x)  # padded to the patch by timm
        backbone = embed.backbone
        x = backbone.stem(x)
        maps = []
        for stage in backbone.stages:
            x = stage(x)
            maps.append(x)
        return maps[: self.cnn_taps], embed.proj(backbone.norm(x)).permute(0, 2, 3, 1)

    def _read_out(self, tokens: torch.Tensor, tap: int) -> torch.Tensor:
        """The patch tokens of one tap, with the class token's readout (transformers
        ``DPTReassembleStage.forward``)."""
        patches = tokens[:, self.vit.num_prefix_tokens:]
        if self.readout_mode == "add":
            return patches + tokens[:, :1]
        if self.readout is not None:
            return self.readout[tap](torch.cat([patches, tokens[:, :1].expand_as(patches)], dim=-1))
        return patches
