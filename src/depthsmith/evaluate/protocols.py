"""Evaluation protocols as data: what is cropped, masked, clamped, scaled and averaged.

Every number depthsmith prints comes with the protocol that produced it; `describe` turns a
protocol and the run's options into the sentence written next to the numbers. The scorer
(`evaluate.core`) reads the fields below and nothing else, so adding a protocol is one
`register_protocol(Protocol(...))` call. `nyu-eigen` is the NYU standard as BTS (`utils/eval_with_pngs.py` in
cleinc/bts), AdaBins, ZoeDepth and NeWCRFs compute it; `seed` is the seed paper's evaluation (the notebook of
dabbrata/Depth-Estimation-Enc-Dec), kept only to reproduce its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from depthsmith.metrics import CROP_REFERENCE_SIZE, CROPS, FRACTION_CROPS
from depthsmith.models.heads import output_kind
from depthsmith.registry import Registry
from ..errors import InputError

__all__ = ["Protocol", "PROTOCOLS", "register_protocol", "get_protocol", "describe", "protocol_table",
           "ALIGN_TEXTS"]

# The description line of each --align (metrics/clip_align.ALIGN_SPACES are the video aligner's spaces): depth space (median / lstsq) or disparity space.
ALIGN_TEXTS = {
    "none": "Alignment: none (metric prediction used as is).",
    "median": "Alignment: per-image median scaling on the valid pixels, in depth space.",
    "lstsq": "Alignment: per-image least-squares scale and shift on the valid pixels, in depth space.",
    "lstsq_disparity": "Alignment: per-image least-squares scale and shift on the valid pixels in DISPARITY space "
                       "(1 / depth), as MiDaS and Depth Anything evaluate relative models; the aligned disparity is "
                       "floored at 1 / max depth and inverted back to depth.",
}


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol. ``min_depth``/``max_depth`` None means "no bound".

    Pixels: ``crop`` (a name in ``metrics.CROPS`` / ``FRACTION_CROPS`` or None) and, when
    ``masked``, min_depth < gt < max_depth and the dataset's own mask; unmasked protocols (the
    seed's) count every crop pixel, holes as failures. ``clamp`` clamps the prediction to the
    valid range. ``fixed_scale`` multiplies metric predictions (the seed's undocumented x0.75);
    ``relative_range`` turns a relative [0, 1] output into metres first (the seed's x10), which
    lets a relative model be scored without alignment. ``r2_pool`` = (kernel, stride) average
    pooling before R^2; ``r2_keep`` = images whose R^2 lies outside are dropped from its mean.
    ``raw_input``: the protocol's own code fed RGB x/255 to the network, bypassing the model's input
    normalisation; ``seed_input='raw'`` reproduces that. ``user_range`` lets the caller set min/max depth (protocol 'none' only: a changed range is
    another protocol, and numbers computed with it must not carry a standard name).
    """

    name: str
    label: str
    origin: str
    crop: str | None = None
    min_depth: float | None = 1e-3
    max_depth: float | None = None
    pooled: bool = False
    clamp: bool = True
    masked: bool = True
    standard: bool = True
    input_size: tuple[int, int] | None = None
    fixed_scale: float | None = None
    relative_range: float | None = None
    r2_pool: tuple[int, int] | None = None
    r2_keep: tuple[float, float] | None = None
    user_range: bool = False
    datasets: str = "any"
    raw_input: bool = False  # its source fed RGB x/255 past the model's normalisation (seed_input='raw')

    @property
    def r2(self) -> str:
        if self.r2_pool is None:
            return "per-image R^2 over the evaluated pixels"
        k, s = self.r2_pool
        text = f"R^2 of {k}x{k} stride-{s} average-pooled maps"
        if self.r2_keep is not None:
            text += f", images with R^2 outside [{self.r2_keep[0]:g}, {self.r2_keep[1]:g}] dropped from the mean"
        return text


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol (a new name; registering a name twice is a mistake, not an override)."""
    crops = {*CROPS, *FRACTION_CROPS}
    if protocol.crop is not None and protocol.crop not in crops:
        raise InputError(f"protocol {protocol.name!r}: unknown crop {protocol.crop!r}; valid: {sorted(crops)}")
    return PROTOCOLS.add(protocol.name, protocol)


_ZOE = "the ZoeDepth paper's zero-shot evaluation (zoedepth/utils/config.py, DATASETS_CONFIG)"
for _p in (
    Protocol("nyu-eigen", "standard", "BTS / AdaBins / ZoeDepth / NeWCRFs NYU Depth V2 evaluation", crop="eigen",
             max_depth=10.0, datasets="NYU Depth V2 (480x640)"),
    Protocol("densedepth", "standard variant (DenseDepth)",
             "DenseDepth's evaluation: its crop, metrics pooled over all pixels of the test set (DenseDepth used "
             "the filled depth of its test zip; here the dataset's own ground truth is used). Note: DenseDepth's "
             "evaluate() calls its compute_errors(gt, pred) as compute_errors(pred, gt), so its published AbsRel is "
             "mean(|d - g| / d), divided by the prediction; here AbsRel is the standard mean(|d - g| / g)",
             crop="densedepth", max_depth=10.0, pooled=True, datasets="NYU Depth V2 (480x640)"),
    Protocol("seed", "NON-STANDARD (seed paper)",
             "the seed paper's public evaluate.py, reproduced to explain its numbers; not comparable with the field",
             crop="seed", min_depth=None, clamp=False, masked=False, standard=False, input_size=(240, 320),
             fixed_scale=0.75, relative_range=10.0, r2_pool=(7, 2), r2_keep=(0.0, 1.0), raw_input=True,
             datasets="NYU Depth V2 (480x640)"),
    Protocol("kitti-garg", "standard (KITTI, Garg crop)",
             "BTS / AdaBins / NeWCRFs / ZoeDepth KITTI Eigen-split evaluation (652 images with ground truth), "
             "Garg crop, 80 m cap", crop="kitti-garg", max_depth=80.0, datasets="KITTI (LiDAR size, e.g. 375x1242)"),
    Protocol("kitti-eigen", "standard (KITTI, Eigen crop)",
             "Eigen et al.'s KITTI crop, 80 m cap (BTS's --eigen_crop)", crop="kitti-eigen", max_depth=80.0,
             datasets="KITTI (LiDAR size)"),
    Protocol("kitti-eigen-cap50", "standard (KITTI, Eigen crop, 50 m cap)",
             "Eigen et al.'s KITTI crop with the 50 m cap of the papers that report 'cap 50 m' (Garg, Godard)",
             crop="kitti-eigen", max_depth=50.0, datasets="KITTI (LiDAR size)"),
    Protocol("ibims", "zero-shot (iBims-1)", f"iBims-1 as in {_ZOE}: Eigen crop, 0 < gt < 10 m", crop="eigen",
             min_depth=0.0, max_depth=10.0, datasets="iBims-1 (480x640)"),
    Protocol("sunrgbd", "zero-shot (SUN RGB-D)", f"SUN RGB-D as in {_ZOE}: Eigen crop, 0 < gt < 8 m", crop="eigen",
             min_depth=0.0, max_depth=8.0, datasets="SUN RGB-D (its sizes vary: pass crop_mode)"),
    Protocol("diode-indoor", "zero-shot (DIODE indoor)", f"DIODE indoor as in {_ZOE}: Eigen crop, 1e-3 < gt < 10 m",
             crop="eigen", max_depth=10.0, datasets="DIODE indoor (768x1024: pass crop_mode)"),
    Protocol("diode-outdoor", "zero-shot (DIODE outdoor)",
             f"DIODE outdoor as in {_ZOE}: Garg crop, 1e-3 < gt < 80 m", crop="kitti-garg", max_depth=80.0,
             datasets="DIODE outdoor (768x1024)"),
    Protocol("eth3d", "zero-shot (ETH3D)",
             "ETH3D as Marigold's evaluation reads it (ETH3DDataset: min depth 1e-5 m, no upper bound), "
             "the zero-shot relative benchmark of MiDaS / Depth Anything / Marigold", min_depth=1e-5,
             datasets="ETH3D (4032x6048)"),
    Protocol("none", "standard formulas, user's depth range",
             "any dataset: the standard formulas with the user's valid depth range and no crop", user_range=True),
):
    register_protocol(_p)


def get_protocol(name: str, min_depth: float | None = None, max_depth: float | None = None) -> Protocol:
    """The named protocol; ``min_depth``/``max_depth`` may only change a ``user_range`` protocol ('none').

    The named protocols fix their range on purpose: a changed range is a different protocol,
    and numbers computed with it must not be labelled 'nyu-eigen'.
    """
    proto = PROTOCOLS.get(name)
    if not proto.user_range:
        if min_depth is not None or max_depth is not None:
            raise InputError(
                f"protocol {name!r} fixes its own valid depth range; --min-depth/--max-depth are for protocol 'none'"
            )
        return proto
    lo = proto.min_depth if min_depth is None else float(min_depth)
    hi = proto.max_depth if max_depth is None else float(max_depth)
    if hi is not None and not lo < hi:
        raise InputError(f"need min_depth < max_depth, got {lo} and {hi}")
    return replace(proto, min_depth=lo, max_depth=hi)


def _crop_text(crop: str | None, crop_mode: str) -> str:
    if crop is None:
        return "no crop (every pixel)"
    if crop in FRACTION_CROPS:
        t, b, l, r = FRACTION_CROPS[crop]
        return f"{crop} crop rows int({t:g} H):int({b:g} H), cols int({l:g} W):int({r:g} W) (BTS)"
    top, bottom, left, right = CROPS[crop]
    h, w = CROP_REFERENCE_SIZE
    how = {"exact": "ground truth must be that size", "scaled": "scaled proportionally for other ground-truth sizes",
           "literal": "sliced literally on other ground-truth sizes, as BTS / ZoeDepth / MMSeg do"}[crop_mode]
    return f"{crop} crop rows {top}:{bottom}, cols {left}:{right} of {h}x{w} ({how})"


def _range_text(lo: float | None, hi: float | None) -> str:
    lo = 0.0 if lo is None else lo
    if hi is None or math.isinf(hi):
        return f"gt > {lo:g} m (no upper bound)"
    return f"{lo:g} m < gt < {hi:g} m"


def _scaling_text(proto: Protocol, output: str) -> str:
    if output_kind(output).protocol_range and proto.relative_range is not None:
        factor = proto.relative_range * (proto.fixed_scale or 1.0)
        return (f"Scaling: depth = {factor:g} * network output (fixed x{proto.relative_range:g}"
                + (f" then x{proto.fixed_scale:g}" if proto.fixed_scale else "") + ").")
    if proto.fixed_scale is not None:
        return (f"Scaling: a metric model already outputs metres, so only the fixed x{proto.fixed_scale:g} is "
                f"applied: depth = {proto.fixed_scale:g} * predicted metres.")
    return ""


def describe(proto: Protocol, align: str = "none", flip_tta: bool = False, output: str = "metric",
             input_size: tuple[int, int] | None = None, from_predictions: bool = False,
             seed_input: str = "model", crop_mode: str = "exact") -> str:
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
    if scaling := _scaling_text(proto, output):
        parts.append(scaling)
    if proto.masked:
        parts.append(f"Valid pixels: {_range_text(proto.min_depth, proto.max_depth)}, finite, dataset mask; "
                     f"{_crop_text(proto.crop, crop_mode)}.")
    else:
        parts.append(f"Pixels: {_crop_text(proto.crop, crop_mode)}; NO valid-depth mask. Every pixel in the crop "
                     "counts in RMSE and delta (a hole, gt = 0, is a delta failure and a squared error pred^2); "
                     "AbsRel, SqRel, log10, RMSElog and SILog skip gt = 0 pixels, where the formulas give inf.")
    if proto.clamp:
        hi = "no upper bound" if proto.max_depth is None else f"{proto.max_depth:g} m"
        lo = max(proto.min_depth or 0.0, 1e-12)
        parts.append(f"Prediction clamped to [{lo:g} m, {hi}].")
    else:
        parts.append("NO clamp (the prediction is only floored at 1e-12 m, so that log10 stays finite).")
    parts.append("Averaging: " + ("metrics of all valid pixels of all images pooled." if proto.pooled
                                   else "metrics per image, then the mean over images."))
    parts.append(f"R^2: {proto.r2}.")
    parts.append(ALIGN_TEXTS[align])
    if not from_predictions:
        parts.append("Flip test-time augmentation: " + ("on (mean of the prediction and the flipped prediction of "
                                                       "the flipped image)." if flip_tta else "off."))
    if not proto.standard:
        parts.append("NON-STANDARD: these numbers are not comparable with published results.")
    return " ".join(parts)


def protocol_table() -> str:
    """Markdown table of the protocols (README, `depthsmith eval --help` epilogue), from the registry."""
    lines = ["| protocol | for | crop | valid gt | clamp | averaging | R^2 | status |",
             "|---|---|---|---|---|---|---|---|"]
    for p in PROTOCOLS.values():
        valid = "no mask" if not p.masked else _range_text(p.min_depth, p.max_depth)
        if p.user_range:
            valid = "user's --min-depth/--max-depth"
        lines.append(f"| `{p.name}` | {p.datasets} | {p.crop or '-'} | {valid} | {'yes' if p.clamp else 'no'} | "
                     f"{'pooled pixels' if p.pooled else 'per-image mean'} | {p.r2} | {p.label} |")
    return "\n".join(lines)
