"""ZoeDepth's pre- and post-processing, inside the model, so that ``model(x)`` at any size is what
``ZoeDepthImageProcessor`` + ``ZoeDepthForDepthEstimation`` + ``post_process_depth_estimation``
(transformers ``models/zoedepth/image_processing_zoedepth.py``) give for that image:

1. reflect-pad by ``int(sqrt(H / 2) * 3)`` rows and ``int(sqrt(W / 2) * 3)`` columns on each side
   (``_pad_images``; isl-org/ZoeDepth ``depth_model.py _infer_with_pad_aug``: against boundary
   artefacts);
2. resize bilinearly (align_corners=True) to the working size: ``size`` (384 x 512) with
   ``keep_aspect_ratio`` (the side that changes least sets the scale) and each side rounded to
   ``ensure_multiple_of`` (32) (``get_resize_output_image_size``);
3. the network; then the depth resized bicubically (align_corners=False, no antialias) to the
   padded size and the padding cropped off (``post_process_depth_estimation`` with ``source_sizes``).

Steps 1-2 run in the encoder (``encoder_kwargs['frame']``), step 3 in the decoder
(``decoder_kwargs['frame']``); both compute the sizes from the input size alone. The processor's
normalisation (``mean`` / ``std``) is applied here too, after the resize as the processor does,
and the model's own ``input_norm`` is ``none``: in the other order the result is the same up to
float rounding, which a metric bins head (a sharp softmax over bins) can amplify far beyond it.

Not reproduced: ``post_process_depth_estimation(outputs_flipped=...)``, the average with the
prediction of the mirrored image, which transformers does only when asked (the original ZoeDepth
``infer`` does it by default); depthsmith runs the network once.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InputFrame", "frame_out", "PROCESSOR_DEFAULTS"]

# ZoeDepthImageProcessor's class defaults (its ensure_multiple_of default is 1/32, as written there).
PROCESSOR_DEFAULTS = {"do_pad": True, "do_resize": True, "size": {"height": 384, "width": 512},
                      "keep_aspect_ratio": True, "ensure_multiple_of": 1 / 32, "do_normalize": True,
                      "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # IMAGENET_STANDARD_*


def _pads(height, width) -> tuple[int, int]:
    return int(math.sqrt(height / 2) * 3), int(math.sqrt(width / 2) * 3)


def _network_size(height: int, width: int, size: tuple[int, int], keep_aspect: bool,
                  multiple: float) -> tuple[int, int]:
    """``get_resize_output_image_size`` (round half to even, as np.round)."""
    scale_h, scale_w = size[0] / height, size[1] / width
    if keep_aspect:
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
    fit = lambda v: int(round(v / multiple) * multiple) or int(math.ceil(v / multiple) * multiple)  # noqa: E731
    return fit(scale_h * height), fit(scale_w * width)


class _Frame:
    def __init__(self, pad: bool = True, size: list[int] | None = None, keep_aspect_ratio: bool = True,
                 multiple: float = 32, mean: list[float] | None = None, std: list[float] | None = None) -> None:
        self.pad, self.keep, self.multiple = bool(pad), bool(keep_aspect_ratio), float(multiple)
        self.size = tuple(int(s) for s in size) if size else None  # None: no resize (do_resize false)

    def sizes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(pad rows, pad columns) and the network's input size for an input of ``height`` x ``width``."""
        pads = _pads(height, width) if self.pad else (0, 0)
        padded = (height + 2 * pads[0], width + 2 * pads[1])
        net = _network_size(*padded, self.size, self.keep, self.multiple) if self.size else padded
        return pads, net


class InputFrame(nn.Module, _Frame):
    """Steps 1-2: reflect padding, the resize to the working size, then the processor's normalisation."""

    def __init__(self, **frame: Any) -> None:
        nn.Module.__init__(self)
        _Frame.__init__(self, **frame)
        mean, std = frame.get("mean"), frame.get("std")
        self.normalize = mean is not None
        self.register_buffer("mean", torch.tensor(mean or [0.0] * 3).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or [1.0] * 3).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (ph, pw), net = self.sizes(int(x.shape[-2]), int(x.shape[-1]))
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), mode="reflect")
        if tuple(x.shape[-2:]) != net:
            x = F.interpolate(x, size=net, mode="bilinear", align_corners=True)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype) if self.normalize else x


def frame_out(depth: torch.Tensor, out_size: tuple[int, int], frame: dict[str, Any]) -> torch.Tensor:
    """Step 3: ``depth`` predicted for the framed input -> depth at ``out_size``."""
    (ph, pw), net = _Frame(**frame).sizes(int(out_size[0]), int(out_size[1]))
    padded = (int(out_size[0]) + 2 * ph, int(out_size[1]) + 2 * pw)
    depth = depth[..., : net[0], : net[1]]  # drop the encoder's zero padding to its patch multiple, if any
    depth = F.interpolate(depth, size=padded, mode="bicubic", align_corners=False)
    return depth[..., ph: ph + int(out_size[0]), pw: pw + int(out_size[1])]
