"""DPT decoder (Ranftl et al. 2021, "Vision Transformers for Dense Prediction"), as Depth Anything
V1/V2 use it (their ``DPTHead``; Hugging Face ``DepthAnythingNeck`` + ``DepthAnythingDepthEstimationHead``).

1. Reassemble. A plain ViT gives four token grids at one stride (the patch, p). Each is projected
   by a 1x1 conv to ``out_channels[i]`` and resampled to strides p/4, p/2, p, 2p: ConvTranspose
   k=s=4, ConvTranspose k=s=2, identity, conv3x3 stride 2. A hierarchical encoder (ResNet,
   ConvNeXt: strides 4..32 already) is used as it is; only its last four stages are taken.
2. ``layer_rn``: a 3x3 conv (no bias) per level to ``features`` channels.
3. Fusion, deepest first, RefineNet style: x = x + RCU(level); x = RCU(x); bilinear upsample
   (align_corners=True) to the next level's size (x2 after the shallowest); 1x1 conv. RCU is the
   pre-activation residual conv unit ReLU-conv3x3-ReLU-conv3x3 + identity. The deepest block has
   no level to add, so it has no first RCU (the original builds one and never calls it).
4. Head: conv3x3 (features -> features/2), bilinear upsample (align_corners=True) to the
   prediction size, conv3x3 -> ``head_features``, ReLU, conv1x1 -> 1 channel of logits.

The final activation is not here: ``DepthModel`` applies it from its ``output`` kind (sigmoid
x max_depth for ``metric``, ReLU for ``metric_relu`` and ``disparity``), as for every decoder.

Options for DPT / MiDaS 3 (transformers ``DPTNeck`` / ``DPTDepthEstimationHead``), off by default:
``fusion_batch_norm`` (conv-BN in each RCU, ``use_batch_norm_in_fusion_residual``; its convs then
have no bias unless ``fusion_bias``), ``head_projection`` (conv3x3 + ReLU before the head,
``add_projection``), ``cnn_taps`` (DPT-Hybrid: the first taps are ResNet stages, not reassembled).
DPT upsamples each fusion level x2 where Depth Anything resizes to the next
level; with the even token grids its encoder pads to (``pad_multiple``) the two are the same.

Any input size: for a ViT the prediction size is the patch-padded input size (the encoder
zero-pads to a multiple of p), and the top-left H x W is cropped back out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_decoder
from ...errors import InputError

__all__ = ["DPTDecoder"]


def _up(x: torch.Tensor, size=None, scale: int | None = None) -> torch.Tensor:
    # align_corners=True everywhere, as DPT / Depth Anything: converted weights expect it.
    if scale is not None:
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int, batch_norm: bool = False, bias: bool | None = None) -> None:
        super().__init__()
        bias = not batch_norm if bias is None else bias
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=bias)
        if batch_norm:
            self.bn1, self.bn2 = nn.BatchNorm2d(features), nn.BatchNorm2d(features)
        else:
            self.bn1 = self.bn2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not in-place: the input is also the residual.
        if self.bn1 is None:
            return self.conv2(F.relu(self.conv1(F.relu(x)))) + x
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(F.relu(x)))))) + x


class FusionBlock(nn.Module):
    def __init__(self, features: int, with_level: bool, batch_norm: bool = False, bias: bool | None = None) -> None:
        super().__init__()
        self.res1 = ResidualConvUnit(features, batch_norm, bias) if with_level else None
        self.res2 = ResidualConvUnit(features, batch_norm, bias)
        self.project = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, level: torch.Tensor | None, size) -> torch.Tensor:
        if level is not None:
            if level.shape[-2:] != x.shape[-2:]:
                level = F.interpolate(level, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.res1(level)
        x = self.res2(x)
        x = _up(x, scale=2) if size is None else _up(x, size=size)
        return self.project(x)


class Reassemble(nn.Module):
    """1x1 projection, then resampling by ``factor`` (4, 2, 1 or 0.5)."""

    def __init__(self, cin: int, cout: int, factor: float) -> None:
        super().__init__()
        self.project = nn.Conv2d(cin, cout, 1)
        if factor > 1:
            self.resample: nn.Module = nn.ConvTranspose2d(cout, cout, int(factor), stride=int(factor))
        elif factor == 1:
            self.resample = nn.Identity()
        else:
            self.resample = nn.Conv2d(cout, cout, 3, stride=int(round(1 / factor)), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resample(self.project(x))


@register_decoder("dpt")
class DPTDecoder(nn.Module):
    """DPT / Depth Anything decoder sized from the encoder pyramid.

    ``features``: fusion width (Depth-Anything-V2 S/B/L: 64/128/256). ``out_channels``: the
    reassemble widths of a ViT's four taps (default C/8, C/4, C/2, C; S: 48, 96, 192, 384).
    ``head_features``: width before the last 1x1 conv (32 in DPT and Depth Anything).
    """

    FACTORS = (4, 2, 1, 0.5)

    def __init__(
        self,
        channels: list[int],
        reductions: list[int],
        features: int = 64,
        out_channels: list[int] | None = None,
        head_features: int = 32,
        fusion_batch_norm: bool = False,
        fusion_bias: bool | None = None,
        head_projection: bool = False,
        cnn_taps: int = 0,
    ) -> None:
        super().__init__()
        self.single_stride = len(set(reductions)) == 1
        if self.single_stride or cnn_taps:
            if len(channels) != 4:
                raise InputError(
                    f"dpt decoder needs 4 taps of a ViT encoder (encoder_kwargs out_indices), got {len(channels)}."
                )
            self.patch = int(reductions[-1])
            # A hybrid ViT's first cnn_taps maps are CNN stages already at strides p/4, p/2: used as
            # they are (nn.Identity, as DPT-Hybrid's reassemble layers 0 and 1).
            wrong = [r for r, f in zip(reductions[:cnn_taps], self.FACTORS) if r * f != self.patch]
            if wrong or not 0 <= cnn_taps < 4:
                raise InputError(f"dpt decoder: cnn_taps={cnn_taps} needs CNN taps at strides "
                                 f"{[self.patch / f for f in self.FACTORS[:cnn_taps]]}, got {reductions[:cnn_taps]}.")
            default = [max(channels[i] // d, 1) for i, d in enumerate((8, 4, 2, 1))][cnn_taps:]
            tokens = list(out_channels or default)
            if len(tokens) != 4 - cnn_taps:
                raise InputError(f"dpt decoder: out_channels needs {4 - cnn_taps} widths, got {tokens}.")
            widths = list(channels[:cnn_taps]) + tokens
            self.reassemble = nn.ModuleList([*(nn.Identity() for _ in range(cnn_taps)), *(
                Reassemble(c, w, f) for c, w, f in zip(channels[cnn_taps:], tokens, self.FACTORS[cnn_taps:]))])
        else:
            if out_channels is not None:
                raise InputError("dpt decoder: out_channels is for ViT encoders; a hierarchical encoder's "
                                 "stages are used as they are.")
            self.taken = len(channels) - min(4, len(channels))  # the last (deepest) four stages
            widths = list(channels[self.taken:])
            self.reassemble = None
            self.patch = 1
        self.layer_rn = nn.ModuleList(nn.Conv2d(w, features, 3, padding=1, bias=False) for w in widths)
        self.fusion = nn.ModuleList(FusionBlock(features, i > 0, fusion_batch_norm, fusion_bias)
                                    for i in range(len(widths)))
        self.head = nn.ModuleDict({
            **({"projection": nn.Conv2d(features, features, 3, padding=1)} if head_projection else {}),
            "conv1": nn.Conv2d(features, features // 2, 3, padding=1),
            "conv2": nn.Conv2d(features // 2, head_features, 3, padding=1),
            "conv3": nn.Conv2d(head_features, 1, 1),
        })

    def levels(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> tuple[tuple, list[torch.Tensor]]:
        """(prediction size, the ``layer_rn`` levels deepest first): reassembled token grids of a
        ViT (predicted at the patch-padded input size), or a CNN's last stages as they are."""
        if self.reassemble is not None:
            grid = feats[-1].shape[-2:]
            pred_size = (grid[0] * self.patch, grid[1] * self.patch)  # the patch-padded input size
            levels = [r(f) for r, f in zip(self.reassemble, feats)]
        else:
            pred_size = out_size
            levels = list(feats[self.taken:])
        return pred_size, [rn(x) for rn, x in zip(self.layer_rn, levels)][::-1]

    def fuse(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """The fusion blocks from the deepest level up, each upsampled to the next level's size."""
        x = None
        for i, (block, level) in enumerate(zip(self.fusion, levels)):
            nxt = levels[i + 1].shape[-2:] if i + 1 < len(levels) else None
            x = block(level if x is None else x, None if x is None else level, nxt)
        return x

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        pred_size, levels = self.levels(feats, out_size)
        x = self.fuse(levels)
        if "projection" in self.head:
            x = F.relu(self.head["projection"](x))
        x = self.head["conv1"](x)
        x = _up(x, size=pred_size)
        x = self.head["conv3"](F.relu(self.head["conv2"](x)))
        return x[..., : out_size[0], : out_size[1]]
