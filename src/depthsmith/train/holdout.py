"""Held-out evaluation after training, against the best constant-depth predictor.

"Did it learn anything?" needs a baseline that knows the data's depth distribution but not
the image: a single depth value predicted everywhere. Two such constants are reported,
each the best possible one *on the held-out set itself* (an oracle, so the baseline is as
strong as a constant can be):

- ``constant_abs_rel``: the constant minimising AbsRel (mean over images of mean |c - g| / g).
  That sum of weighted absolute deviations is minimised exactly by the weighted median of
  all ground-truth pixels with weight 1 / (n_image * g).
- ``constant_d1``: the constant maximising delta1, found on a fine log-spaced grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data import build_dataset
from ..metrics import MetricAccumulator
from .data import collate_skip_none

__all__ = ["evaluate_holdout", "best_constant_abs_rel", "best_constant_d1"]


def best_constant_abs_rel(gts: list[np.ndarray]) -> float:
    """Exact minimiser of mean_images(mean_pixels(|c - g| / g)): a weighted median."""
    values = np.concatenate(gts)
    weights = np.concatenate([np.full(g.size, 1.0 / g.size) / g for g in gts])
    order = np.argsort(values)
    values, cum = values[order], np.cumsum(weights[order])
    return float(values[np.searchsorted(cum, 0.5 * cum[-1])])


def best_constant_d1(gts: list[np.ndarray], grid: int = 4000) -> float:
    """The constant with the highest delta1 (mean over images), on a log grid over the depth range."""
    values = np.concatenate(gts)
    weights = np.concatenate([np.full(g.size, 1.0 / g.size) for g in gts])
    order = np.argsort(values)
    values, cum = values[order], np.concatenate([[0.0], np.cumsum(weights[order])])
    candidates = np.geomspace(values[0], values[-1], grid)
    # delta1 holds where c / 1.25 < g < 1.25 c (strict): weight of the sorted values in that open interval.
    upper = cum[np.searchsorted(values, 1.25 * candidates, side="left")]
    lower = cum[np.searchsorted(values, candidates / 1.25, side="right")]
    return float(candidates[int(np.argmax(upper - lower))])


@torch.no_grad()
def evaluate_holdout(
    model: torch.nn.Module,
    dataset_cfg: Mapping[str, Any],
    batch_size: int = 16,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    autocast: bool = False,
) -> dict[str, Any]:
    """Metrics of ``model`` and of the two best constants on a held-out dataset config.

    Relative-depth models are aligned per image (least-squares scale and shift); the
    constants are never aligned (an aligned constant would just be the per-image mean).
    """
    max_depth = float(max_depth or model.max_depth)
    relative = getattr(model, "output", "metric") == "relative"
    dataset = build_dataset(dict(dataset_cfg))
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_none)
    model.eval()
    device = next(model.parameters()).device
    ours = MetricAccumulator(min_depth=min_depth, max_depth=max_depth, align="lstsq" if relative else "none")
    gts, maps = [], []  # valid pixels per image; (gt, mask) per image
    for batch in loader:
        if batch is None:
            continue
        image = batch["image"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pred = model(image).float()
        gt = batch["depth"]
        if pred.shape[-2:] != gt.shape[-2:]:
            pred = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        ours.update_batch(pred.cpu(), gt, mask=batch["mask"], names=list(batch["name"]))
        for g, m in zip(gt[:, 0].numpy().astype(np.float64), batch["mask"][:, 0].numpy()):
            valid = m & np.isfinite(g) & (g > min_depth) & (g < max_depth)
            gts.append(g[valid])
            maps.append((g, m))
    result: dict[str, Any] = {"n_images": len(ours), "min_depth": min_depth, "max_depth": max_depth,
                              "model": ours.compute()}
    for key, value in (("constant_abs_rel", best_constant_abs_rel(gts)), ("constant_d1", best_constant_d1(gts))):
        acc = MetricAccumulator(min_depth=min_depth, max_depth=max_depth)
        for g, m in maps:
            acc.update(np.full_like(g, value), g, mask=m)
        result[key] = {"value": value, **acc.compute()}
    return result


def format_holdout(result: Mapping[str, Any]) -> str:
    """A small table: AbsRel, RMSE and delta1 of the model and of both constants."""
    rows = [("model", result["model"]),
            (f"constant {result['constant_abs_rel']['value']:.3f} m (min AbsRel)", result["constant_abs_rel"]),
            (f"constant {result['constant_d1']['value']:.3f} m (max delta1)", result["constant_d1"])]
    lines = [f"held-out evaluation ({result['n_images']} images)",
             f"  {'predictor':36s} {'AbsRel':>8s} {'RMSE':>8s} {'delta1':>8s}"]
    for name, m in rows:
        lines.append(f"  {name:36s} {m['abs_rel']:8.3f} {m['rmse']:8.3f} {m['d1']:8.3f}")
    return "\n".join(lines)
