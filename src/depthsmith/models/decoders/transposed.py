"""The report's baseline decoder: transposed convolutions on the deepest feature only.

Four ConvTranspose2d (kernel 4, stride 2) each followed by ReLU, then a 1x1 conv to
one channel. From ResNet50's stride 32 this reaches stride 2; the model head resizes
the logits to the input size (bilinear), which the report leaves unspecified.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_decoder


@register_decoder("transposed")
class TransposedDecoder(nn.Module):
    def __init__(self, channels: list[int], reductions: list[int], decoder_channels: list[int] | None = None) -> None:
        super().__init__()
        widths = list(decoder_channels or (256, 128, 64, 32))
        layers, cin = [], channels[-1]
        for cout in widths:
            layers += [nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        return self.head(self.body(feats[-1]))
