"""Output kinds: one record per kind of model output, and the one head module that applies it.

A depth network ends in logits; what they mean differs between model families. Each kind says,
in one place:

* ``activation`` of the logits (sigmoid, ReLU, or a fixed scale) -> the "normalised" output the
  losses compare with the training target;
* ``to_depth``: normalised output -> the model's output units (metres, or unitless);
* ``target``: the training-target mode of ``data.transforms.depth_to_target`` (None: this kind
  cannot be trained here, ``untrainable`` says why); ``invariant_loss``: only with the
  scale-and-shift-invariant loss terms (``loss: midas``);
* ``unitless``: True when the output has no metric scale (evaluation must align it);
* ``alignments`` evaluation accepts for it and ``default_align``;
* ``card``: the sentence the model card and ``depthsmith models`` print.

``DepthHead`` is the one module that applies a kind. ``DepthModel``, the ONNX/OpenVINO export,
the fast torch paths (``runtime/fast.py``), training and evaluation all go through it, so no file
branches on the kind's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import Registry

__all__ = ["OutputKind", "OUTPUT_KINDS", "DepthHead", "output_kind", "output_kind_table", "DISPARITY_RANGE",
           "units_text"]

# Disparity models return relative depth max(disp) / disp, floored at 1 / DISPARITY_RANGE of the
# per-image maximum: 1 / that is an exact scale of the disparity, so align='lstsq_disparity'
# (which inverts the prediction) fits the disparity itself.
DISPARITY_RANGE = 1.0e3

Mapping = Callable[[torch.Tensor, float, float], torch.Tensor]  # (x, min_depth, max_depth) -> tensor


@dataclass(frozen=True)
class OutputKind:
    name: str
    activation: Mapping
    to_depth: Mapping
    target: str | None
    unitless: bool
    alignments: tuple[str, ...]
    default_align: str
    card: str
    untrainable: str = ""
    # A unitless [0, 1] output that a protocol's fixed range may turn into metres (the seed's x10).
    protocol_range: bool = False
    # The space the output is affine in (what alignment fits and export checks compare): "depth", or
    # "disparity" for outputs returned as relative depth of an affine-invariant disparity.
    affine_space: str = "depth"
    # Trainable only with scale-and-shift-invariant loss terms (losses.INVARIANT_TERMS): the output's
    # per-image scale and shift are free, so a loss on the target's own values would pin them.
    invariant_loss: bool = False

    def in_affine_space(self, depth):
        """``depth`` (tensor or array of this kind's output) in the space it is affine in."""
        return 1.0 / depth if self.affine_space == "disparity" else depth

    def describe(self, max_depth: float) -> str:
        return self.card.format(max_depth=max_depth)


OUTPUT_KINDS: Registry[OutputKind] = Registry("output kind")


def output_kind(name: str) -> OutputKind:
    """The record of ``name`` (an UnknownNameError listing the kinds otherwise)."""
    return OUTPUT_KINDS.get(name)


def _sigmoid(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.sigmoid(x)


def _relu(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.relu(x)


def _times_max(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return x * hi


def _identity(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return x


def _inverse(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo / x.clamp_min(lo / hi)


def _disparity_to_relative(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    top = x.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return top / x.clamp_min(top / DISPARITY_RANGE) / DISPARITY_RANGE


def _over_max(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return x / hi


def _exp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return torch.exp(x)


_ANY_ALIGN = ("none", "median", "lstsq", "lstsq_disparity")
_AFFINE_DEPTH = ("median", "lstsq", "lstsq_disparity")

for _kind in (
    OutputKind("metric", _sigmoid, _times_max, "metric", False, _ANY_ALIGN, "none",
               "metric depth in metres: sigmoid x max_depth ({max_depth:g} m)"),
    OutputKind("metric_relu", _relu, _times_max, "metric", False, _ANY_ALIGN, "none",
               "metric depth in metres: ReLU x max_depth (not capped)"),
    # The decoder computes metres itself (ZoeDepth's bins, Depth Pro's focal from its field of view);
    # normalised by max_depth only so that training targets and losses stay in [0, 1].
    OutputKind("metric_direct", _over_max, _times_max, "metric", False, _ANY_ALIGN, "none",
               "metric depth in metres, computed by the model's own head (trained up to {max_depth:g} m)"),
    OutputKind("inverse", _sigmoid, _inverse, "inverse", False, _ANY_ALIGN, "none",
               "metric depth in metres from inverse-depth targets (min_depth / sigmoid)"),
    # Unitless [0, 1] depth (the seed's per-image min-max training): 'none' only under a protocol
    # with a fixed range (the seed's x10), which the scorer checks.
    OutputKind("relative", _sigmoid, _identity, "minmax", True, ("none", *_AFFINE_DEPTH), "lstsq",
               "relative depth, unitless in [0, 1] (per-image scale and shift unknown): align before scoring",
               protocol_range=True),
    # Trained on inverse-depth targets with an affine-invariant loss (loss: midas, losses.py), as MiDaS
    # and Depth Anything are; the target's own scale does not matter to that loss.
    OutputKind("disparity", _relu, _disparity_to_relative, "inverse", True, ("lstsq_disparity",), "lstsq_disparity",
               "affine-invariant disparity (ReLU head); predictions are returned as relative depth in (0, 1]; "
               "evaluate with align='lstsq_disparity'",
               affine_space="disparity", invariant_loss=True),
    # Depth Anything 3's DPT head ends in exp (depth_anything_3/model/dpt.py, activation="exp"): depth, not
    # disparity, with no metric scale of its own; DA3-Metric's is focal-normalised (metres = focal x output / 300).
    OutputKind("exp_depth", _exp, _identity, None, True, _AFFINE_DEPTH, "lstsq",
               "depth of unknown scale from an exp head (Depth Anything 3; DA3-Metric: metres = focal in pixels "
               "x output / 300): align before scoring",
               untrainable="a scale-invariant depth loss for an exp head is not implemented"),
):
    OUTPUT_KINDS.add(_kind.name, _kind)


class DepthHead(nn.Module):
    """Logits -> the model's output, for one output kind. No parameters: the learnt last layer
    belongs to the decoder, so weights saved before this module existed load unchanged."""

    def __init__(self, kind: str, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.kind = output_kind(kind)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The normalised output (what the training target is compared with)."""
        return self.kind.activation(logits, self.min_depth, self.max_depth)

    def to_depth(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalised output -> output units (metres unless the kind is unitless)."""
        return self.kind.to_depth(normalized, self.min_depth, self.max_depth)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.to_depth(self.activate(logits))

    def extra_repr(self) -> str:
        return f"kind={self.kind.name}, min_depth={self.min_depth:g}, max_depth={self.max_depth:g}"


def output_kind_table() -> str:
    """Markdown table of the output kinds (README), from the registry."""
    lines = ["| output | what the model returns | units | trained on | evaluation alignments (default first) |",
             "|---|---|---|---|---|"]
    for kind in OUTPUT_KINDS.values():
        aligns = [kind.default_align, *(a for a in kind.alignments if a != kind.default_align)]
        text = kind.card.replace(" ({max_depth:g} m)", "").replace("{max_depth:g} m", "max_depth")
        lines.append(f"| `{kind.name}` | {text} | "
                     f"{'unitless' if kind.unitless else 'metres'} | {kind.target or 'not trainable'}"
                     f"{', loss: midas only' if kind.invariant_loss else ''} | "
                     f"{', '.join(aligns)} |")
    return "\n".join(lines)


def units_text(is_metric: bool, output: str | None = None, focal_normalised: bool = False) -> str:
    """What a prediction's values are, in words (predict's ``depth_info.json``, the app, exported files'
    metadata): metres, DA3-Metric's focal-normalised depth (models/da3.py), an exp head's relative
    depth of unknown scale, or a relative depth in [0, 1]."""
    if is_metric:
        return "metres"
    if focal_normalised:
        return ("focal-normalised depth (unitless, not metres: metres = focal in pixels x value / 300; "
                "give the camera's intrinsics for metres)")
    if output == "exp_depth":  # an exp head: neither metres nor [0, 1]
        return "relative depth (unitless, of unknown scale, not metres)"
    return "relative depth (unitless, 0-1, not metres)"
