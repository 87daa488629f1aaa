"""What the Depth Anything 3 converters share (models/da3.py: mono / metric; models/da3_anyview.py: DA3-Small
/ Base): the published checkpoint's key prefixes, the working size, the checkpoint error and the DA3 name of
a depthsmith parameter. Its own module so that da3.py can route to da3_anyview.py without a cycle."""

from __future__ import annotations

from pathlib import Path

import torch

from .da2_pth import _source_name as _da2_name
from .weights import WeightFileError

__all__ = ["DA3CheckpointError", "WORKING_SIZE"]

WORKING_SIZE = {"long_side": 504, "multiple_of": 14}


class DA3CheckpointError(WeightFileError):
    """A Depth Anything 3 folder that is not one of the monocular models, or whose weights do not fit."""


def _shape(state: dict[str, torch.Tensor], key: str, where: Path) -> tuple[int, ...]:
    if key not in state:
        raise DA3CheckpointError(f"{where}: no tensor {key!r}, which every Depth Anything 3 monocular checkpoint holds.")
    return tuple(state[key].shape)


_B, _H = "model.backbone.pretrained.", "model.head."


def _source_name(name: str) -> str:
    """The DA3 key of a depthsmith parameter name: DA-V2's (models/da2_pth.py) under DA3's prefixes."""
    if name.startswith("decoder.sky."):  # DA3 dpt.py: sky_output_conv2 = Conv3x3, ReLU, Conv1x1
        index = {"conv2": "0", "conv3": "2"}[name.split(".")[2]]
        return f"{_H}scratch.sky_output_conv2.{index}.{name.split('.', 3)[3]}"
    old = _da2_name(name)
    if old.startswith("pretrained."):
        return _B + old.removeprefix("pretrained.")
    return _H + old.removeprefix("depth_head.")
