"""The paper's U-Net decoder (Enc-Dec-IRv2; the seed notebook's Keras decoder, README "Seed fidelity").

From the bottleneck: LeakyReLU(0.2), then per up-block: bilinear upsample -> conv3x3 ->
LeakyReLU(0.2) -> concat skip -> conv3x3 -> LeakyReLU(0.2) -> BatchNorm -> conv3x3 ->
LeakyReLU(0.2) -> BatchNorm. Head: conv3x3 to one channel (sigmoid in the model).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_decoder
from .common import pad_centered, plan_stages, size_at, upsample_to, upsample_x2
from ...errors import InputError

DEFAULT_FILTERS = (256, 128, 64, 32, 16, 16)
ALIGNS = ("resize", "pad")


def _conv_act(cin: int, cout: int, slope: float) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(slope)]


class UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, slope: float = 0.2,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.up_conv = nn.Sequential(*_conv_act(cin, cout, slope))
        self.fuse = nn.Sequential(
            *_conv_act(cout + cskip, cout, slope),
            nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum),
            *_conv_act(cout, cout, slope),
            nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None, skip: torch.Tensor | None) -> torch.Tensor:
        """``size=None``: upsample exactly x2; otherwise resize to ``size``."""
        x = self.up_conv(upsample_x2(x) if size is None else upsample_to(x, size))
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.fuse(x)


@register_decoder("unet")
class UNetDecoder(nn.Module):
    """Paper decoder; ``filters`` gives one width per x2 step (default 256, 128, 64, 32, ...).

    ``align`` says how the decoder meets skips whose size is not twice its own (valid-
    padding encoders such as IRv2 give 119x159 at stride 2 of 240x320; odd inputs too):

    * ``"resize"``: resize the decoder to each skip's own size (bilinear) and the last
      stage to the input size.
    * ``"pad"``: the seed Keras code's rule. Let S be the bottleneck stride and G the input
      size rounded up to a multiple of S. Every feature at stride s, the bottleneck and the
      stride-1 input skip included, is zero-padded to G / s; a padding of p pixels puts
      ceil(p/2) before and floor(p/2) after (top/left first). The decoder upsamples by
      exactly x2 (half-pixel bilinear) from G / S to G, and the output is cropped back to
      the input at the input skip's offset. At 240x320 this is the seed's ZeroPadding2D of
      every tap: 119x159 -> 120x160 ((1,0),(1,0)), 58x78 -> 60x80 (1,1), 27x37 -> 30x40
      ((2,1),(2,1)) and the bottleneck 13x18 -> 15x20 (1,1), padded before its LeakyReLU.

    ``bn_eps`` and ``bn_momentum`` (torch's convention: Keras' momentum 0.99 is 0.01 here)
    let the BatchNorms behave as Keras' defaults (1e-3, 0.99) for the seed presets.
    """

    def __init__(
        self,
        channels: list[int],
        reductions: list[int],
        filters: list[int] | None = None,
        negative_slope: float = 0.2,
        align: str = "resize",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if align not in ALIGNS:
            raise InputError(f"unet decoder align={align!r} is not valid; choose one of {ALIGNS}.")
        self.align = align
        self.stages = plan_stages(reductions)
        self.bottleneck_stride = reductions[-1]
        filters = list(filters or DEFAULT_FILTERS[: len(self.stages)])
        if len(filters) != len(self.stages):
            raise InputError(
                f"unet decoder needs {len(self.stages)} filter widths for an encoder of stride "
                f"{reductions[-1]} (one per x2 step), got {len(filters)}: {filters}."
            )
        self.bottleneck_act = nn.LeakyReLU(negative_slope)
        blocks, cin = [], channels[-1]
        for (_, skip), cout in zip(self.stages, filters):
            cskip = channels[skip] if skip is not None else 0
            blocks.append(UpBlock(cin, cskip, cout, negative_slope, bn_eps, bn_momentum))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        if self.align == "pad":
            return self._forward_padded(feats, out_size)
        x = self.bottleneck_act(feats[-1])
        for block, (stride, skip) in zip(self.blocks, self.stages):
            skip_t = feats[skip] if skip is not None else None
            size = tuple(skip_t.shape[-2:]) if skip_t is not None else size_at(out_size, stride)
            x = block(x, size, skip_t)
        return self.head(x)

    def _forward_padded(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        cells = size_at(out_size, self.bottleneck_stride)  # G / S

        def grid(stride: int) -> tuple[int, int]:
            k = self.bottleneck_stride // stride
            return cells[0] * k, cells[1] * k

        x = self.bottleneck_act(pad_centered(feats[-1], cells))  # the seed pads, then activates
        for block, (stride, skip) in zip(self.blocks, self.stages):
            skip_t = pad_centered(feats[skip], grid(stride)) if skip is not None else None
            x = block(x, None, skip_t)
        x = self.head(x)
        # Crop where the input skip was padded: output pixel (i, j) is input pixel (i, j).
        h, w = out_size
        top, left = (x.shape[-2] - h + 1) // 2, (x.shape[-1] - w + 1) // 2
        return x[..., top: top + h, left: left + w]
