"""The scorer: one protocol applied to one image at a time, and the result it adds up to.

It reads the protocol's fields only (never its name), so a registered protocol needs no code
here. Metric formulas live in ``depthsmith.metrics``; this decides which pixels, which scaling
and which averaging.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics import (CROP_MODES, MetricAccumulator, NoValidPixelError, as_map, crop_mask, metrics_in, r2_score,
                       valid_mask)
from ..models.heads import output_kind
from .protocols import Protocol, describe
from ..errors import InputError

__all__ = ["EvalResult", "Scorer", "make_result", "resize_map", "to_tensor", "summary_keys"]


def summary_keys() -> list[str]:
    """The columns of the evaluation table, metrics.json and per_image.csv (the metric table's "eval")."""
    return [m.key for m in metrics_in("eval")]


@dataclass
class EvalResult:
    """Metrics of one model (or prediction set) under one protocol, and how they were computed."""

    protocol: str
    standard: bool
    label: str
    description: str
    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    # First `keep_examples` images: name, image (3xHxW), gt, mask, pred (metres, as evaluated).
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def r2_values(self) -> np.ndarray:
        return np.array([row["r2"] for row in self.rows], dtype=float)


def resize_map(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False, the field's convention) resize of ... x H x W to `size`."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    shape = pred.shape
    flat = pred.reshape(-1, 1, *shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*shape[:-2], *size)


def to_tensor(x: Any) -> torch.Tensor:
    """A tensor of a tensor (detached) or of an array (as float64), for scoring."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float64)))


class Scorer:
    """Applies one protocol to one image at a time and keeps the rows. It reads the protocol's
    fields only (never its name), so a registered protocol needs no code here."""

    def __init__(self, proto: Protocol, align: str, output: str, keep_examples: int, crop_mode: str = "exact") -> None:
        fixed = proto.fixed_scale is not None or proto.relative_range is not None
        kind = output_kind(output)
        if align == "auto":  # the output kind's own default (metric: none; disparity: lstsq_disparity)
            align = "none" if fixed else kind.default_align
        if fixed and align != "none":
            raise InputError(f"protocol {proto.name!r} applies a fixed scaling; use align='none' with it")
        if align not in kind.alignments:
            raise InputError(
                f"this model's output kind is {kind.name!r} ({kind.card.split(':')[0].split(';')[0]}): evaluate it "
                f"with align={' or '.join(repr(a) for a in kind.alignments)} (--align), not {align!r}"
            )
        if kind.unitless and align == "none" and not (kind.protocol_range and proto.relative_range is not None):
            raise InputError(
                f"this model predicts {kind.name} (unitless) depth: evaluate it with align="
                f"{' or '.join(repr(a) for a in kind.alignments if a != 'none')} (or protocol 'seed', which "
                "reproduces the seed's fixed x7.5 scaling of a [0, 1] output)"
            )
        if crop_mode not in CROP_MODES:
            raise InputError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
        self.proto, self.align, self.output, self.crop_mode = proto, align, output, crop_mode
        self.keep_examples = keep_examples
        self.lo = proto.min_depth if proto.min_depth is not None else 0.0
        self.hi = proto.max_depth if proto.max_depth is not None else math.inf
        self.factor = (proto.relative_range or 1.0 if kind.protocol_range else 1.0) * (proto.fixed_scale or 1.0)
        self.acc = MetricAccumulator(pooled=proto.pooled, min_depth=self.lo, max_depth=self.hi, crop=proto.crop,
                                     align=align, crop_mode=crop_mode, clamp=proto.clamp, holes=not proto.masked)
        self.rows: list[dict[str, Any]] = []
        self.examples: list[dict[str, Any]] = []
        self.skipped: list[str] = []  # unreadable images, and images without any valid ground-truth pixel

    def sanitize(self, pred: torch.Tensor) -> torch.Tensor:
        """NaN / -inf -> the lower bound, +inf -> the upper bound (before upsampling spreads them)."""
        hi = self.hi if math.isfinite(self.hi) else None
        return torch.nan_to_num(pred, nan=self.lo, posinf=hi, neginf=self.lo)

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, name: str,
            image: np.ndarray | None = None) -> dict[str, Any]:
        """Score one H x W prediction (model output units, already at the GT size)."""
        pred = as_map(pred, "pred") * self.factor
        gt = as_map(gt, "gt")
        if pred.shape != gt.shape:
            # internal: callers upsample to the ground truth first
            raise ValueError(f"{name}: prediction {pred.shape} and ground truth {gt.shape} differ")  # internal
        try:
            prep = self.acc.prepare(pred, gt, mask=mask if self.proto.masked else None)
        except NoValidPixelError:  # e.g. a frame without depth in range: skipped, counted, never silent
            warnings.warn(f"{name}: no valid ground-truth pixel under protocol '{self.proto.name}': skipped",
                          stacklevel=2)
            self.skipped.append(name)
            return {}
        # The metrics, R^2 and the example map all use the prediction as `prepare` evaluated it.
        row = {"name": name, **self.acc.add(prep)}
        row["r2"] = self._r2(prep.pred, gt, prep.valid)
        self.rows.append(row)
        if len(self.examples) < self.keep_examples:
            self.examples.append({"name": name, "image": image, "gt": gt, "pred": prep.pred,
                                  "mask": valid_mask(gt, self.lo, self.hi, None, mask) if self.proto.masked else gt > 0})
        return row

    def _r2(self, pred: np.ndarray, gt: np.ndarray, usable: np.ndarray) -> float:
        if self.proto.r2_pool is None:
            return _safe_r2(pred, gt, usable)
        # Pooled R^2 (the seed's): over the crop's bounding box, holes as 0, no mask.
        inside = crop_mask(gt.shape, self.proto.crop, self.crop_mode)
        rows_idx, cols_idx = np.nonzero(inside.any(axis=1))[0], np.nonzero(inside.any(axis=0))[0]
        box = (slice(rows_idx[0], rows_idx[-1] + 1), slice(cols_idx[0], cols_idx[-1] + 1))
        gt_filled = np.where(usable, gt, 0.0)
        return _safe_r2(*(_avg_pool(a[box], *self.proto.r2_pool) for a in (pred, gt_filled)))

    def summary(self) -> dict[str, float]:
        if not self.rows:
            raise InputError(f"no image could be evaluated ({len(self.skipped)} skipped: unreadable or without a "
                             "valid ground-truth pixel)")
        metrics = dict(self.acc.compute())
        r2 = np.array([r["r2"] for r in self.rows], dtype=float)
        if self.proto.r2_keep is not None:
            lo, hi = self.proto.r2_keep
            kept = r2[(r2 >= lo) & (r2 <= hi)]
            metrics["r2"] = float(kept.mean()) if kept.size else math.nan
            metrics["r2_dropped"] = int(r2.size - kept.size)
        else:
            metrics["r2"] = float(np.nanmean(r2)) if np.isfinite(r2).any() else math.nan
        metrics["n_skipped"] = len(self.skipped)
        return metrics


def _avg_pool(a: np.ndarray, k: int, s: int) -> np.ndarray:
    if min(a.shape) < k:
        raise InputError(f"R^2 pools {k}x{k}: the cropped map {a.shape} is too small")
    return F.avg_pool2d(torch.from_numpy(np.ascontiguousarray(a))[None, None], k, s)[0, 0].numpy()


def _safe_r2(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """R^2, or NaN where it is undefined (constant ground truth, no pixel)."""
    try:
        return r2_score(pred, gt, mask)
    except ValueError:
        return math.nan


def make_result(scorer: Scorer, settings: dict[str, Any], flip_tta: bool, input_size: tuple[int, int] | None) -> EvalResult:
    proto = scorer.proto
    text = describe(proto, scorer.align, flip_tta, scorer.output, input_size, settings["source"] == "predictions",
                    seed_input=settings.get("seed_input", "model"), crop_mode=scorer.crop_mode)
    label = proto.label + (" [input as the seed's evaluate.py: RGB x/255]" if settings.get("seed_input") == "raw" else "")
    return EvalResult(
        protocol=proto.name, standard=proto.standard, label=label, description=text,
        metrics=scorer.summary(), rows=scorer.rows, examples=scorer.examples,
        settings={"protocol": proto.name, "align": scorer.align, "flip_tta": flip_tta, "output": scorer.output,
                  "input_size": list(input_size) if input_size else None,
                  "min_depth": proto.min_depth, "max_depth": proto.max_depth, "crop_mode": scorer.crop_mode,
                  **settings},
    )
