"""The report's residual U-Net decoder (ConvNeXt U-Net; README presets table).

After each upsample + concat with the encoder skip: a residual block of two
conv3x3 + BatchNorm (+ ReLU), with a 1x1 conv on the shortcut to match channels.
Steps below the shallowest encoder stride (ConvNeXt starts at 1/4) upsample without a skip.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_decoder
from .common import plan_stages, size_at, upsample_to
from ...errors import InputError

DEFAULT_CHANNELS = (256, 128, 64, 32, 16, 16)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


@register_decoder("residual_unet")
class ResidualUNetDecoder(nn.Module):
    def __init__(self, channels: list[int], reductions: list[int], decoder_channels: list[int] | None = None) -> None:
        super().__init__()
        self.stages = plan_stages(reductions)
        widths = list(decoder_channels or DEFAULT_CHANNELS[: len(self.stages)])
        if len(widths) != len(self.stages):
            raise InputError(
                f"residual_unet decoder needs {len(self.stages)} widths for an encoder of stride "
                f"{reductions[-1]}, got {len(widths)}: {widths}."
            )
        blocks, cin = [], channels[-1]
        for (_, skip), cout in zip(self.stages, widths):
            blocks.append(ResidualBlock(cin + (channels[skip] if skip is not None else 0), cout))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        x = feats[-1]
        for block, (stride, skip) in zip(self.blocks, self.stages):
            if skip is not None:
                x = torch.cat([upsample_to(x, tuple(feats[skip].shape[-2:])), feats[skip]], dim=1)
            else:
                x = upsample_to(x, size_at(out_size, stride))
            x = block(x)
        return self.head(x)
