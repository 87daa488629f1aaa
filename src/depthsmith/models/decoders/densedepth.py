"""DenseDepth's decoder (Alhashim & Wonka 2018), the paper's closest peer.

A 1x1 conv on the bottleneck to ``width`` x its channels, then per skip (deep to
shallow) halve the features: bilinear upsample to the skip size, concat, conv3x3 ->
LeakyReLU(0.2) -> conv3x3 -> LeakyReLU(0.2); a final conv3x3 to one channel. Output at
the shallowest skip's stride (1/2); the model head resizes to the input size.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_decoder
from .common import upsample_to


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([upsample_to(x, tuple(skip.shape[-2:])), skip], dim=1))


@register_decoder("densedepth")
class DenseDepthDecoder(nn.Module):
    def __init__(self, channels: list[int], reductions: list[int], width: float = 1.0) -> None:
        super().__init__()
        features = int(channels[-1] * width)
        self.bottleneck = nn.Conv2d(channels[-1], features, 1)
        ups = []
        for cskip in reversed(channels[:-1]):
            ups.append(_Up(features + cskip, features // 2))
            features //= 2
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(features, 1, 3, padding=1)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        x = self.bottleneck(feats[-1])
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
        return self.head(x)
