"""What the Depth Anything 3 converters share (models/da3.py: mono / metric; models/da3_anyview.py: DA3-Small
/ Base): the published checkpoint's key prefixes, the working size, the checkpoint error and the DA3 name of
a depthsmith parameter. Its own module so that da3.py can route to da3_anyview.py without a cycle."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch

from .da2_pth import _source_name as _da2_name
from .weights import WeightFileError, check_fit

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


def dinov2_dpt_kwargs(state: dict[str, torch.Tensor], weights: Path, width: int, heads: int,
                      taps: list[int]) -> tuple[dict, dict]:
    """(encoder_kwargs, decoder_kwargs) of a DA3 DINOv2 + DPT read off the checkpoint's shapes: patch size,
    position grid, MLP ratio, the head's feature and projection widths (both converters start from these)."""
    fc1 = _shape(state, _B + "blocks.0.mlp.fc1.weight", weights)
    patch = _shape(state, _B + "patch_embed.proj.weight", weights)[-1]
    tokens = _shape(state, _B + "pos_embed", weights)[1] - 1
    grid = round(tokens ** 0.5)
    if grid * grid != tokens:
        raise DA3CheckpointError(f"{weights}: '{_B}pos_embed' holds {tokens} patch positions, not a square grid.")
    encoder_kwargs = {"out_indices": taps, "img_size": grid * patch, "patch_size": patch, "embed_dim": width,
                      "num_heads": heads, "mlp_ratio": fc1[0] / width, "init_values": 1.0, "pos_embed_offset": 0.1,
                      "depth": taps[-1] + 1}
    decoder_kwargs = {"features": _shape(state, _H + "scratch.layer1_rn.weight", weights)[0],
                      "out_channels": [_shape(state, f"{_H}projects.{i}.weight", weights)[0] for i in range(4)],
                      "head_features": _shape(state, _H + "scratch.output_conv2.0.weight", weights)[0]}
    return encoder_kwargs, decoder_kwargs


def rename_checked(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], weights: Path,
                   source_name: Callable[[str], str], holds: str, skip: re.Pattern | None = None) -> dict:
    """``state`` under the depthsmith model's names (``target``), every tensor shape-checked: the message
    names the first checkpoint key with no place in the model (unless ``skip`` matches it: parts not
    converted), the first model tensor the checkpoint lacks, or the first that does not fit. ``holds``
    says what the checkpoint should hold."""
    origin = {name: source_name(name) for name in target}
    expected = {key: name for name, key in origin.items()}
    unknown = [key for key in state if key not in expected and not (skip and skip.match(key))]
    if unknown:
        raise DA3CheckpointError(f"{weights}: key {unknown[0]!r} has no place in the depthsmith model of this "
                                 f"checkpoint ({len(unknown)} such keys; {holds}).")
    out = {expected[key]: value for key, value in state.items() if key in expected}
    missing = [name for name in target if name not in out]
    if missing:
        raise DA3CheckpointError(f"{weights}: no tensor {origin[missing[0]]!r} (for {missing[0]!r} of the depthsmith "
                                 "model).")
    check_fit(out, target, lambda name: weights, origin)
    return out
