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

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from ..data import build_dataset
from ..evaluate.core import evaluate_predictions
from ..metrics import METRIC_KEYS, valid_mask
from ..models.heads import output_kind
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
def _predictions(model: torch.nn.Module, dataset_cfg: Mapping[str, Any], batch_size: int,
                 autocast: bool) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[str]]:
    """Per image: the model's prediction at the ground truth's size, the ground truth, its mask, its name."""
    loader = DataLoader(build_dataset(dict(dataset_cfg)), batch_size=batch_size, collate_fn=collate_skip_none)
    model.eval()
    device = next(model.parameters()).device
    preds, gts, masks, names = [], [], [], []
    for batch in loader:
        if batch is None:
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pred = model(batch["image"].to(device)).float()
        gt = batch["depth"]
        if pred.shape[-2:] != gt.shape[-2:]:
            pred = F.interpolate(pred, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        preds += list(pred.cpu()[:, 0])
        gts += list(gt[:, 0])
        masks += list(batch["mask"][:, 0])
        names += list(batch["name"])
    return preds, gts, masks, names


def evaluate_holdout(
    model: torch.nn.Module,
    dataset_cfg: Mapping[str, Any],
    batch_size: int = 16,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    autocast: bool = False,
) -> dict[str, Any]:
    """Metrics of ``model`` and of the two best constants on a held-out dataset config.

    Scored by ``evaluate_predictions`` under protocol 'none' (no crop, min_depth < gt <
    max_depth, the dataset's mask). Relative-depth models are aligned per image
    (least-squares scale and shift); the constants are never aligned (an aligned constant
    would just be the per-image mean).
    """
    max_depth = float(max_depth or model.max_depth)
    kind = output_kind(getattr(model, "output", "metric"))
    preds, gts, masks, names = _predictions(model, dataset_cfg, batch_size, autocast)

    def score(predictions: Iterable[Any], align: str = "none", output: str = "metric") -> dict[str, float]:
        metrics = evaluate_predictions(predictions, gts, "none", masks=masks, names=names, align=align, output=output,
                                       min_depth=min_depth, max_depth=max_depth).metrics
        return {k: metrics[k] for k in (*METRIC_KEYS, "n_images", "n_valid")}  # the keys summary.json has always had

    ours = score(preds, kind.default_align, kind.name)
    # The valid ground-truth pixels of each image, which the best constants are fitted to.
    valid = []
    for g, m in zip(gts, masks):
        g = g.double().numpy()
        valid.append(g[valid_mask(g, min_depth, max_depth, mask=m)])
    result: dict[str, Any] = {"n_images": ours["n_images"], "min_depth": min_depth, "max_depth": max_depth,
                              "model": ours}
    for key, value in (("constant_abs_rel", best_constant_abs_rel(valid)), ("constant_d1", best_constant_d1(valid))):
        result[key] = {"value": value, **score(torch.full_like(g, value, dtype=torch.float64) for g in gts)}
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
