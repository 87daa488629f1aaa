"""Evaluation protocols as data: what is cropped, masked, clamped and averaged.

Every number depthsmith prints comes with the protocol that produced it; `describe`
turns a protocol and the run's options into the sentence written next to the numbers.
Field notes §3 is the standard (BTS / AdaBins / ZoeDepth / NeWCRFs); §1 is the seed
paper's evaluation, kept only to reproduce (and explain) its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from depthsmith.metrics import CROP_REFERENCE_SIZE, CROPS

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "describe", "protocol_table"]

# The seed's evaluation code multiplies the sigmoid output by 10 (DenseDepth's 10 m range:
# [0, 1] -> metres) and then by 0.75, a factor documented nowhere (field notes §1).
SEED_RANGE_M = 10.0
SEED_FACTOR = 0.75
# The seed's R^2: 7x7 average pooling with stride 2 ('valid' padding, Keras default) of
# prediction and ground truth, then R^2 of the pooled maps; images with R^2 outside
# [0, 1] are dropped before averaging (its comparison notebook).
SEED_R2_POOL = (7, 2)
# The seed resizes every input to 240 x 320 and upsamples the prediction to the GT size.
SEED_INPUT_SIZE = (240, 320)


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol. ``min_depth``/``max_depth`` = None means "no bound"."""

    name: str
    crop: str | None  # a name in depthsmith.metrics.CROPS, or None for the whole image
    min_depth: float | None
    max_depth: float | None
    pooled: bool  # True: metrics over all pixels of all images; False: mean of per-image metrics
    clamp: bool  # clamp the prediction to [min_depth, max_depth]
    masked: bool  # False: no valid-pixel mask at all (the seed)
    standard: bool
    label: str  # printed next to every number
    origin: str
    input_size: tuple[int, int] | None = None  # network input size; None = the image's own size
    r2: str = "per-image R^2 over the evaluated pixels"


PROTOCOLS: dict[str, Protocol] = {
    "nyu-eigen": Protocol(
        name="nyu-eigen", crop="eigen", min_depth=1e-3, max_depth=10.0, pooled=False, clamp=True, masked=True,
        standard=True, label="standard", origin="BTS / AdaBins / ZoeDepth / NeWCRFs NYU Depth V2 evaluation",
    ),
    "densedepth": Protocol(
        name="densedepth", crop="densedepth", min_depth=1e-3, max_depth=10.0, pooled=True, clamp=True, masked=True,
        standard=True, label="standard variant (DenseDepth)",
        origin="DenseDepth's evaluation: its crop, metrics pooled over all pixels of the test set "
        "(DenseDepth used the filled depth of its test zip; here the dataset's own ground truth is used). "
        "Note: DenseDepth's evaluate() calls its compute_errors(gt, pred) as compute_errors(pred, gt), so "
        "its published AbsRel is mean(|d - g| / d), divided by the prediction; here AbsRel is the standard "
        "mean(|d - g| / g)",
    ),
    "seed": Protocol(
        name="seed", crop="seed", min_depth=None, max_depth=None, pooled=False, clamp=False, masked=False,
        standard=False, label="NON-STANDARD (seed paper)",
        origin="the seed paper's public evaluate.py, reproduced to explain its numbers; not comparable with the field",
        input_size=SEED_INPUT_SIZE,
        r2=f"R^2 of {SEED_R2_POOL[0]}x{SEED_R2_POOL[0]} stride-{SEED_R2_POOL[1]} average-pooled maps, "
        "images with R^2 outside [0, 1] dropped from the mean",
    ),
    "none": Protocol(
        name="none", crop=None, min_depth=1e-3, max_depth=None, pooled=False, clamp=True, masked=True,
        standard=True, label="standard formulas, user's depth range",
        origin="any dataset: the standard formulas with the user's valid depth range and no crop",
    ),
}


def get_protocol(name: str, min_depth: float | None = None, max_depth: float | None = None) -> Protocol:
    """The named protocol; ``min_depth``/``max_depth`` may only change protocol 'none'.

    The named protocols fix their range on purpose: a changed range is a different protocol,
    and numbers computed with it must not be labelled 'nyu-eigen'.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[name]
    if name != "none":
        if min_depth is not None or max_depth is not None:
            raise ValueError(
                f"protocol {name!r} fixes its own valid depth range; --min-depth/--max-depth are for protocol 'none'"
            )
        return proto
    lo = proto.min_depth if min_depth is None else float(min_depth)
    hi = proto.max_depth if max_depth is None else float(max_depth)
    if hi is not None and not lo < hi:
        raise ValueError(f"need min_depth < max_depth, got {lo} and {hi}")
    return Protocol(**{**proto.__dict__, "min_depth": lo, "max_depth": hi})


def _crop_text(crop: str | None) -> str:
    if crop is None:
        return "no crop (every pixel)"
    top, bottom, left, right = CROPS[crop]
    h, w = CROP_REFERENCE_SIZE
    return (f"{crop} crop rows {top}:{bottom}, cols {left}:{right} of {h}x{w} "
            "(scaled proportionally for other ground-truth sizes)")


def _range_text(lo: float | None, hi: float | None) -> str:
    if hi is None or math.isinf(hi):
        return f"gt > {lo:g} m (no upper bound)"
    return f"{lo:g} m < gt < {hi:g} m"


def describe(proto: Protocol, align: str = "none", flip_tta: bool = False, output: str = "metric",
             input_size: tuple[int, int] | None = None, from_predictions: bool = False,
             seed_input: str = "model") -> str:
    """One paragraph stating exactly what was computed (written into every output)."""
    size = input_size or proto.input_size
    parts = [f"Protocol '{proto.name}' [{proto.label}]: {proto.origin}."]
    if from_predictions:
        source = "Predictions supplied by the caller (no network run)"
    elif size is None:
        source = "Network input: the image at its own size"
    else:
        source = f"Network input: the image resized to {size[0]}x{size[1]} (bilinear)"
    if not from_predictions:
        source += (", fed as RGB x/255 straight to the network, bypassing the model's own input "
                   "normalisation, AS THE SEED'S evaluate.py DOES (it trained on BGR min-max input)"
                   if seed_input == "raw" else ", normalised by the model itself (as in training)")
    parts.append(f"{source}; prediction upsampled bilinearly (align_corners=False) to the ground-truth size; "
                 "NaN/inf replaced.")
    if proto.name == "seed":
        if output == "relative":
            parts.append(f"Scaling: depth = {SEED_RANGE_M * SEED_FACTOR:g} * network output "
                         f"(the seed's fixed x{SEED_RANGE_M:g} then x{SEED_FACTOR:g}).")
        else:
            parts.append(f"Scaling: the seed's x{SEED_RANGE_M:g} maps its [0, 1] output to metres, which a metric model "
                         f"already outputs, so only the seed's undocumented x{SEED_FACTOR:g} is applied: "
                         f"depth = {SEED_FACTOR:g} * predicted metres.")
        parts.append(f"Pixels: {_crop_text(proto.crop)}; NO valid-depth mask and NO clamp (the prediction is only floored at 1e-12 m, so that log10 stays finite where the seed's would be -inf). Every pixel in the crop counts "
                     "in RMSE and delta (a hole, gt = 0, is a delta failure and a squared error pred^2), as the seed's code "
                     "does; AbsRel, SqRel, log10, RMSElog and SILog skip gt = 0 pixels, where the seed's formulas give inf "
                     "(its filled test depth has no holes, so there it counts every pixel too).")
    else:
        parts.append(f"Valid pixels: {_range_text(proto.min_depth, proto.max_depth)}, finite, dataset mask; {_crop_text(proto.crop)}.")
        hi = "no upper bound" if proto.max_depth is None else f"{proto.max_depth:g} m"
        parts.append(f"Prediction clamped to [{proto.min_depth:g} m, {hi}].")
    parts.append("Averaging: " + ("metrics of all valid pixels of all images pooled." if proto.pooled
                                   else "metrics per image, then the mean over images."))
    parts.append(f"R^2: {proto.r2}.")
    parts.append({"none": "Alignment: none (metric prediction used as is).",
                  "median": "Alignment: per-image median scaling on the valid pixels (relative-depth evaluation).",
                  "lstsq": "Alignment: per-image least-squares scale and shift on the valid pixels "
                           "(relative-depth evaluation)."}[align])
    if not from_predictions:
        parts.append("Flip test-time augmentation: " + ("on (mean of the prediction and the flipped prediction of "
                                                       "the flipped image)." if flip_tta else "off."))
    if not proto.standard:
        parts.append("NON-STANDARD: these numbers are not comparable with published NYU Depth V2 results.")
    return " ".join(parts)


def protocol_table() -> str:
    """Markdown table of the protocols (README, `depthsmith eval --help` epilogue)."""
    lines = ["| protocol | crop | valid gt | clamp | averaging | R^2 | status |", "|---|---|---|---|---|---|---|"]
    for p in PROTOCOLS.values():
        valid = "no mask" if not p.masked else _range_text(p.min_depth, p.max_depth)
        lines.append(f"| {p.name} | {p.crop or '-'} | {valid} | {'yes' if p.clamp else 'no'} | "
                     f"{'pooled pixels' if p.pooled else 'per-image mean'} | {p.r2} | {p.label} |")
    return "\n".join(lines)
