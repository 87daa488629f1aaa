"""The paper's U-Net decoder (Enc-Dec-IRv2, field notes section 1).

From the bottleneck: LeakyReLU(0.2), then per up-block: bilinear upsample -> conv3x3 ->
LeakyReLU(0.2) -> concat skip -> conv3x3 -> LeakyReLU(0.2) -> BatchNorm -> conv3x3 ->
LeakyReLU(0.2) -> BatchNorm. Head: conv3x3 to one channel (sigmoid in the model).
"""

from __future__ import annotations

import torch
from torch import nn

from . import register_decoder
from .common import plan_stages, size_at, upsample_to

DEFAULT_FILTERS = (256, 128, 64, 32, 16, 16)


def _conv_act(cin: int, cout: int, slope: float) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(slope)]


class UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, slope: float = 0.2) -> None:
        super().__init__()
        self.up_conv = nn.Sequential(*_conv_act(cin, cout, slope))
        self.fuse = nn.Sequential(
            *_conv_act(cout + cskip, cout, slope),
            nn.BatchNorm2d(cout),
            *_conv_act(cout, cout, slope),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up_conv(upsample_to(x, size))
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.fuse(x)


@register_decoder("unet")
class UNetDecoder(nn.Module):
    """Paper decoder; ``filters`` gives one width per x2 step (default 256, 128, 64, 32, ...)."""

    def __init__(
        self,
        channels: list[int],
        reductions: list[int],
        filters: list[int] | None = None,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.stages = plan_stages(reductions)
        filters = list(filters or DEFAULT_FILTERS[: len(self.stages)])
        if len(filters) != len(self.stages):
            raise ValueError(
                f"unet decoder needs {len(self.stages)} filter widths for an encoder of stride "
                f"{reductions[-1]} (one per x2 step), got {len(filters)}: {filters}."
            )
        self.bottleneck_act = nn.LeakyReLU(negative_slope)
        blocks, cin = [], channels[-1]
        for (_, skip), cout in zip(self.stages, filters):
            cskip = channels[skip] if skip is not None else 0
            blocks.append(UpBlock(cin, cskip, cout, negative_slope))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        x = self.bottleneck_act(feats[-1])
        for block, (stride, skip) in zip(self.blocks, self.stages):
            skip_t = feats[skip] if skip is not None else None
            size = tuple(skip_t.shape[-2:]) if skip_t is not None else size_at(out_size, stride)
            x = block(x, size, skip_t)
        return self.head(x)
