"""ZoeDepth decoder: the DPT neck and relative head (MiDaS), then the metric bins head that computes
depth in metres itself (output kind ``metric_direct``, models/heads.py). transformers
``ZoeDepthForDepthEstimation.forward`` (models/zoedepth/modeling_zoedepth.py):

1. Neck: reassemble, 3x3 convs and RefineNet fusion, as the ``dpt`` decoder (same modules and
   names). The deepest level after its 3x3 conv, before fusion, is the metric head's bottleneck;
   the four fusion outputs (deepest first) feed its attractors.
2. Relative head (``ZoeDepthRelativeDepthEstimationHead``): the dpt head (conv3x3, x2 bilinear
   align_corners=True, conv3x3 + ReLU, conv1x1 + ReLU); the features after the second conv and
   the relative depth both go to the metric head.
3. Metric head: zoe_bins.py (one bin configuration) or zoe_domains.py (several, with the domain
   classifier). Its output is the depth in metres at the relative head's resolution.

``bins``: ZoeDepth's ``bin_configurations`` (``n_bins``, ``min_depth``, ``max_depth``, and ``name``
when there are several). Any input size: as the dpt decoder, the prediction is made at the
patch-padded size and cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..zoe_frame import frame_out
from .dpt import DPTDecoder, _up
from .registry import register_decoder
from .zoe_bins import MetricBinsHead
from .zoe_domains import MultiMetricBinsHead
from ...errors import InputError

__all__ = ["ZoeDepthDecoder"]

_NYU = [{"n_bins": 64, "min_depth": 1e-3, "max_depth": 10.0}]  # ZoeDepthConfig's default bin_configurations


@register_decoder("zoedepth")
class ZoeDepthDecoder(DPTDecoder):
    """``features``: the fusion width (= the bottleneck's); ``relative_features``: the relative head's
    width (``num_relative_features``); ``embedding``: ``bin_embedding_dim``; ``attractors``:
    ``num_attractors``; ``normed``: ``bin_centers_type == 'normed'``; ``kind``: ``attractor_kind``;
    ``transformer``: the domain classifier's (hidden, intermediate, heads, layers), two or more bins only.
    ``frame``: the encoder's ZoeDepth ``frame`` (models/zoe_frame.py), whose padding and resize the
    decoder undoes: the depth is resized bicubically to the padded input and the padding cropped."""

    def __init__(self, channels: list[int], reductions: list[int], features: int = 256,
                 out_channels: list[int] | None = None, relative_features: int = 32, bins: list[dict] | None = None,
                 embedding: int = 128, attractors: list[int] = (16, 8, 4, 1), normed: bool = False,
                 kind: str = "mean", min_temp: float = 0.0212, max_temp: float = 50.0,
                 transformer: list[int] | None = None, fusion_batch_norm: bool = False,
                 fusion_bias: bool | None = None, head_projection: bool = False, frame: dict | None = None) -> None:
        super().__init__(channels, reductions, features, out_channels, relative_features, fusion_batch_norm,
                         fusion_bias, head_projection)
        bins = [dict(b) for b in (bins or _NYU)]
        self.frame = dict(frame) if frame else None  # the encoder's ZoeDepth input frame, undone here
        if kind not in ("mean", "sum"):
            raise InputError(f"zoedepth decoder: kind={kind!r}; ZoeDepth's attractors take the mean or the sum.")
        if len(attractors) != 4:
            raise InputError(f"zoedepth decoder: attractors={list(attractors)} needs one count per level (4).")
        common = dict(embedding=embedding, attractors=tuple(attractors), normed=bool(normed), kind=kind,
                      min_temp=min_temp, max_temp=max_temp)
        if len(bins) == 1:
            b = bins[0]
            self.metric = MetricBinsHead(features, features, relative_features, int(b["n_bins"]),
                                         float(b["min_depth"]), float(b["max_depth"]), **common)
        else:
            if transformer is None or len(transformer) != 4:
                raise InputError("zoedepth decoder: several bin configurations need transformer=[hidden, "
                                 "intermediate, heads, layers] for the domain classifier.")
            self.metric = MultiMetricBinsHead(features, features, relative_features, bins,
                                              transformer=tuple(int(t) for t in transformer), **common)

    @property
    def export_unsupported(self) -> str:
        """Why this decoder's model cannot go to ONNX ("" when it can; DepthModel.export_unsupported).
        The frame's sizes are Python arithmetic on the input size (models/zoe_frame.py): traced with a
        symbolic size, ``int(sqrt(H / 2) * 3)`` becomes torch's sym_sqrt, for which the ONNX exporter
        has no op (torch 2.14: "No ONNX function found for _sym_sqrt"), and the keep-aspect choice of
        the side that sets the scale would be fixed at the export size's aspect ratio."""
        if self.frame is None or not (self.frame.get("pad", True) or self.frame.get("size")):
            return ""
        return ("ZoeDepth's input padding (int(sqrt(H / 2) * 3) pixels, models/zoe_frame.py) and its "
                "keep-aspect resize are computed from the input size in Python; torch's ONNX exporter has no "
                "op for the square root of a symbolic size, so no file valid at every input size can be written")

    def forward(self, feats: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        pred_size, levels = self.levels(feats, out_size)
        bottleneck, fused, x = levels[0], [], None
        for i, (block, level) in enumerate(zip(self.fusion, levels)):
            nxt = levels[i + 1].shape[-2:] if i + 1 < len(levels) else None
            x = block(level if x is None else x, None if x is None else level, nxt)
            fused.append(x)
        if "projection" in self.head:
            x = F.relu(self.head["projection"](x))
        x = _up(self.head["conv1"](x), size=pred_size)
        last = F.relu(self.head["conv2"](x))
        relative = F.relu(self.head["conv3"](last))
        depth = self.metric(last, bottleneck, fused, relative)
        if self.frame is not None:
            return frame_out(depth, out_size, self.frame)
        return depth[..., : out_size[0], : out_size[1]]
