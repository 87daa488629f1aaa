"""Evaluation: predictions (from a model or saved) -> protocol -> metrics per image and overall.

`evaluate_predictions` is the core: it takes predictions in the model's output units at
any resolution, so saved predictions and hand-made test cases go through exactly the code
path that `evaluate(model, dataset)` uses. Metric formulas live in `depthsmith.metrics`;
this module only decides which pixels, which scaling and which averaging (the protocol).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from depthsmith.metrics import (CROP_MODES, METRIC_KEYS, PRED_FLOOR, MetricAccumulator, align_prediction, crop_mask,
                                r2_score, valid_mask)

from .protocols import PROTOCOLS, Protocol, describe, get_protocol

__all__ = ["EvalResult", "evaluate", "evaluate_predictions", "upsample_to", "SEED_INPUTS", "check_seed_input"]

SUMMARY_KEYS = (*METRIC_KEYS, "r2")


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


def upsample_to(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False, the field's convention) resize of ... x H x W to `size`."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    shape = pred.shape
    flat = pred.reshape(-1, 1, *shape[-2:])
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).reshape(*shape[:-2], *size)


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float64)))


def _squeeze_map(x: np.ndarray, name: str) -> np.ndarray:
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"{name} must be an H x W map, got shape {x.shape}")
    return x


class _Scorer:
    """Applies one protocol to one image at a time and keeps the rows. It reads the protocol's
    fields only (never its name), so a registered protocol needs no code here."""

    def __init__(self, proto: Protocol, align: str, output: str, keep_examples: int, crop_mode: str = "exact") -> None:
        fixed = proto.fixed_scale is not None or proto.relative_range is not None
        if fixed and align != "none":
            raise ValueError(f"protocol {proto.name!r} applies a fixed scaling; use align='none' with it")
        if output == "disparity" and align != "lstsq_disparity":
            raise ValueError(
                "this model predicts affine-invariant disparity (Depth Anything / MiDaS relative): evaluate it "
                f"with align='lstsq_disparity' (--align lstsq_disparity), not {align!r}"
            )
        if output == "relative" and align == "none" and proto.relative_range is None:
            raise ValueError(
                "this model predicts relative (unitless) depth: evaluate it with align='median', 'lstsq' or "
                "'lstsq_disparity' (or protocol 'seed', which reproduces the seed's fixed x7.5 scaling)"
            )
        if crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
        self.proto, self.align, self.output, self.crop_mode = proto, align, output, crop_mode
        self.keep_examples = keep_examples
        self.lo = proto.min_depth if proto.min_depth is not None else 0.0
        self.hi = proto.max_depth if proto.max_depth is not None else math.inf
        self.factor = (proto.relative_range or 1.0 if output == "relative" else 1.0) * (proto.fixed_scale or 1.0)
        self.acc = MetricAccumulator(pooled=proto.pooled, min_depth=self.lo, max_depth=self.hi, crop=proto.crop,
                                     align=align, crop_mode=crop_mode, clamp=proto.clamp)
        self.rows: list[dict[str, Any]] = []
        self.examples: list[dict[str, Any]] = []
        self.skipped: list[str] = []  # unreadable images, and images without any valid ground-truth pixel

    def sanitize(self, pred: torch.Tensor) -> torch.Tensor:
        """NaN / -inf -> the lower bound, +inf -> the upper bound (before upsampling spreads them)."""
        hi = self.hi if math.isfinite(self.hi) else None
        return torch.nan_to_num(pred, nan=self.lo, posinf=hi, neginf=self.lo)

    def _usable(self, gt: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if self.proto.masked:
                return valid_mask(gt, self.lo, self.hi, self.proto.crop, mask, self.crop_mode)
            return crop_mask(gt.shape, self.proto.crop, self.crop_mode) & np.isfinite(gt) & (gt > 0)

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None, name: str,
            image: np.ndarray | None = None) -> dict[str, Any]:
        """Score one H x W prediction (model output units, already at the GT size)."""
        pred = _squeeze_map(np.asarray(pred, dtype=np.float64), "pred") * self.factor
        gt = _squeeze_map(np.asarray(gt, dtype=np.float64), "gt")
        if pred.shape != gt.shape:
            raise ValueError(f"{name}: prediction {pred.shape} and ground truth {gt.shape} differ")
        usable = self._usable(gt, mask)
        if not usable.any():  # e.g. a frame without depth in range: skipped, counted, never silent
            warnings.warn(f"{name}: no valid ground-truth pixel under protocol '{self.proto.name}': skipped",
                          stacklevel=2)
            self.skipped.append(name)
            return {}
        row = {"name": name, **self.acc.update(pred, gt, mask=mask if self.proto.masked else None)}
        # R^2 and the example map use the prediction exactly as the metrics saw it: sanitised,
        # aligned on the valid pixels, clamped (the steps of metrics.compute_metrics).
        evaluated = np.nan_to_num(pred, nan=self.lo, posinf=self.hi if math.isfinite(self.hi) else None,
                                  neginf=self.lo)
        evaluated = align_prediction(evaluated, gt, usable, self.align, max_depth=self.hi)
        evaluated = (np.clip(evaluated, max(self.lo, PRED_FLOOR), self.hi) if self.proto.clamp
                     else np.maximum(evaluated, PRED_FLOOR))
        if not self.proto.masked:
            self._fold_holes(row, evaluated, gt, usable)
        row["r2"] = self._r2(evaluated, gt, usable)
        self.rows.append(row)
        if len(self.examples) < self.keep_examples:
            self.examples.append({"name": name, "image": image, "gt": gt, "pred": evaluated,
                                  "mask": valid_mask(gt, self.lo, self.hi, None, mask) if self.proto.masked else gt > 0})
        return row

    def _fold_holes(self, row: dict[str, Any], pred: np.ndarray, gt: np.ndarray, positive: np.ndarray) -> None:
        """An unmasked protocol counts the crop's holes (gt = 0) where its formulas stay finite:
        in RMSE as a squared error pred^2, in delta as a failure (max(gt/pred, pred/gt) = inf)."""
        inside = crop_mask(gt.shape, self.proto.crop, self.crop_mode)
        holes = inside & ~positive
        n_pos, n_all = row["n_valid"], int(inside.sum())
        if n_all > n_pos:
            hole_sq = float(np.sum(pred[holes] ** 2))
            row["rmse"] = math.sqrt((row["rmse"] ** 2 * n_pos + hole_sq) / n_all)
            for key in ("d1", "d2", "d3"):
                row[key] = row[key] * n_pos / n_all
        row["n_valid"] = n_all

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
            raise ValueError(f"no image could be evaluated ({len(self.skipped)} skipped: unreadable or without a "
                             "valid ground-truth pixel)")
        metrics = dict(self.acc.compute())
        if not self.proto.masked:  # per-image rows were adjusted for the holes: average those
            metrics.update({k: float(np.mean([r[k] for r in self.rows])) for k in ("rmse", "d1", "d2", "d3")})
            metrics["n_valid"] = int(sum(r["n_valid"] for r in self.rows))
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
        raise ValueError(f"R^2 pools {k}x{k}: the cropped map {a.shape} is too small")
    return F.avg_pool2d(torch.from_numpy(np.ascontiguousarray(a))[None, None], k, s)[0, 0].numpy()


def _safe_r2(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """R^2, or NaN where it is undefined (constant ground truth, no pixel)."""
    try:
        return r2_score(pred, gt, mask)
    except ValueError:
        return math.nan


def _result(scorer: _Scorer, settings: dict[str, Any], flip_tta: bool, input_size: tuple[int, int] | None) -> EvalResult:
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


def evaluate_predictions(
    preds: Iterable[Any],
    gts: Iterable[Any],
    protocol: str = "nyu-eigen",
    masks: Iterable[Any] | None = None,
    names: Sequence[str] | None = None,
    align: str = "none",
    output: str = "metric",
    min_depth: float | None = None,
    max_depth: float | None = None,
    images: Iterable[Any] | None = None,
    keep_examples: int = 0,
    crop_mode: str = "exact",
) -> EvalResult:
    """Evaluate saved or hand-made predictions.

    preds: H' x W' maps in the model's output units (metres; [0, 1] for ``output='relative'``),
    at any resolution: each is upsampled bilinearly to its ground truth's size.
    gts: H x W metres, 0 = invalid. masks: optional H x W bool (True = valid).
    crop_mode: how a protocol's pixel crop (defined on 480 x 640) applies to ground truth of
    another size: 'exact' (refuse), 'scaled' or 'literal' (see ``metrics.crop_mask``).
    """
    proto = get_protocol(protocol, min_depth, max_depth)
    scorer = _Scorer(proto, align, output, keep_examples, crop_mode)
    masks_it = iter(masks) if masks is not None else None
    images_it = iter(images) if images is not None else None
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        gt_np = _squeeze_map(np.asarray(_as_tensor(gt).cpu().double()), "gt")
        pred_t = scorer.sanitize(_as_tensor(pred).to(torch.float64).cpu())
        pred_np = upsample_to(pred_t, gt_np.shape).numpy()
        mask = None if masks_it is None else np.asarray(next(masks_it), dtype=bool)
        image = None if images_it is None else next(images_it)
        scorer.add(pred_np, gt_np, mask, names[i] if names is not None else f"{i:05d}", image)
    return _result(scorer, {"source": "predictions"}, False, None)


def _load_model(model: Any) -> torch.nn.Module:
    if isinstance(model, (str, Path)):
        from depthsmith.models import load_model

        return load_model(model)
    return model


def _unreadable_name(data: Any, position: int) -> str:
    """A name for the skipped list, for a sample the dataset could not read."""
    names = getattr(data, "names", None)
    try:
        return f"{names()[position]} (unreadable)" if names is not None else f"sample {position} (unreadable)"
    except Exception:  # a reader that cannot name it either
        return f"sample {position} (unreadable)"


def _load_dataset(dataset: Any) -> Any:
    if isinstance(dataset, (str, Path, dict)):
        from depthsmith.data import build_dataset

        return build_dataset(dataset)
    return dataset


SEED_INPUTS = ("model", "raw")


@contextmanager
def _input_as(model: torch.nn.Module, seed_input: str) -> Iterator[None]:
    """``raw``: feed RGB x/255 straight to the network, as the seed's evaluate.py does (no per-image
    min-max, no BGR order), although the seed trained on BGR min-max input. ``model``: the model's
    own input normalisation (what it was trained with)."""
    if seed_input == "model":
        yield
        return
    if not hasattr(model, "input_norm"):
        raise ValueError("seed_input='raw' needs a depthsmith DepthModel (it bypasses the model's input_norm)")
    norm = model.input_norm
    model.input_norm = torch.nn.Identity()
    try:
        yield
    finally:
        model.input_norm = norm


@torch.inference_mode()
def _predict(model: torch.nn.Module, x: torch.Tensor, flip_tta: bool, input_size: tuple[int, int] | None) -> torch.Tensor:
    """Model output at the input's size; optionally averaged with the flipped prediction."""
    size = tuple(x.shape[-2:])
    if input_size is not None and tuple(input_size) != size:
        x = F.interpolate(x, size=tuple(input_size), mode="bilinear", align_corners=False)
    y = model(x)
    if flip_tta:
        y = 0.5 * (y + torch.flip(model(torch.flip(x, dims=[-1])), dims=[-1]))
    return upsample_to(y.float(), size)


def evaluate(
    model: Any,
    dataset: Any,
    protocol: str = "nyu-eigen",
    flip_tta: bool = False,
    align: str = "none",
    batch_size: int = 8,
    device: str | torch.device = "auto",
    min_depth: float | None = None,
    max_depth: float | None = None,
    progress: bool = True,
    input_size: tuple[int, int] | None = None,
    num_workers: int = 0,
    keep_examples: int = 0,
    max_images: int | None = None,
    seed_input: str = "model",
    crop_mode: str = "exact",
) -> EvalResult:
    """Evaluate a model (object, folder or Hub id) on a dataset (object or config) under a protocol.

    The network sees each image at its own size (or ``input_size``, or the protocol's: the
    seed resizes to 240 x 320); the prediction is upsampled bilinearly to the ground truth.
    Images of different sizes are batched separately, so any dataset works.
    ``seed_input='raw'`` (protocol 'seed' only) reproduces the seed's evaluation input, RGB x/255
    without the model's normalisation (see ``_input_as``).
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    proto = get_protocol(protocol, min_depth, max_depth)
    check_seed_input(proto, seed_input)
    model, data = _load_model(model), _eval_data(dataset, max_images)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    output = getattr(model, "output", "metric")
    scorer = _Scorer(proto, align, output, keep_examples, crop_mode)
    size = input_size or proto.input_size
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=list)
    eval_size: list[int] | None = list(size) if size else None  # network input size, for the report's GFLOPs
    with tqdm(total=len(data), desc=f"eval {proto.name}", unit="img", disable=not progress) as bar:
        for batch_start, samples in zip(range(0, len(data), batch_size), loader):
            scorer.skipped += [_unreadable_name(data, batch_start + i) for i, s in enumerate(samples) if s is None]
            readable = [s for s in samples if s is not None]
            seen = _score_batch(model, scorer, readable, dev, flip_tta, size, seed_input, keep_examples)
            eval_size = eval_size or seen
            bar.update(len(samples))
    settings = {"source": "model", "model": getattr(model, "name", type(model).__name__), "device": str(dev),
                "batch_size": batch_size, "eval_size": eval_size, "seed_input": seed_input}
    return _result(scorer, settings, flip_tta, size)


def _eval_data(dataset: Any, max_images: int | None) -> Any:
    """The dataset to evaluate: loaded, bad samples dropped (not replaced), the first ``max_images``."""
    from torch.utils.data import Subset

    data = _load_dataset(dataset)
    if hasattr(data, "substitute_skipped"):
        data.substitute_skipped = False  # on_error=skip: a bad sample is dropped and counted, not replaced
    if max_images is not None and max_images < len(data):
        data = Subset(data, range(max_images))
    return data


def _score_batch(model: Any, scorer: _Scorer, samples: list[dict[str, Any]], dev: torch.device, flip_tta: bool,
                 size: tuple[int, int] | None, seed_input: str, keep_examples: int) -> list[int] | None:
    """Predict and score one batch of readable samples; returns the first network input size (H, W) or None."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):  # one forward per image size
        groups.setdefault(tuple(s["image"].shape), []).append(i)
    preds: dict[int, torch.Tensor] = {}
    first_size = None
    for members in groups.values():
        x = torch.stack([samples[i]["image"] for i in members]).to(dev)
        first_size = first_size or [int(x.shape[-2]), int(x.shape[-1])]
        with _input_as(model, seed_input):
            out = scorer.sanitize(_predict(model, x, flip_tta, size)).cpu()
        preds.update(zip(members, out))
    for i, s in enumerate(samples):  # score in dataset order
        depth, mask = s["depth"].numpy(), s["mask"].numpy()
        image = s["image"].numpy() if len(scorer.examples) < keep_examples else None
        pred = upsample_to(preds[i].double(), tuple(depth.shape[-2:]))
        scorer.add(pred.numpy(), depth, mask, s["name"], image)
    return first_size


def check_seed_input(proto: Protocol, seed_input: str) -> None:
    if seed_input not in SEED_INPUTS:
        raise ValueError(f"seed_input must be one of {', '.join(SEED_INPUTS)}, got {seed_input!r}")
    if seed_input != "model" and not proto.raw_input:
        raw = ", ".join(p.name for p in PROTOCOLS.values() if p.raw_input)
        raise ValueError(f"seed_input='raw' reproduces the seed's evaluation input: use it with protocol {raw} only "
                         f"(protocol 'seed' only), not {proto.name!r}")
