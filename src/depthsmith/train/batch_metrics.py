"""Cheap per-batch depth metrics in torch, for logging during training.

The full evaluation protocol (crops, per-dataset averaging, alignment options) lives in
``depthsmith.metrics``; here the point is a number per step without leaving the device:
RMSE, AbsRel and delta1 per image over valid pixels, then averaged over the batch, and SSIM
of depth / max_depth (data range 1) over windows lying entirely on valid pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import fit_scale_shift
from ..ssim import ssim

__all__ = ["batch_metrics", "align_scale_shift"]


def align_scale_shift(pred: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """Per-image least-squares scale and shift of ``pred`` onto ``gt`` (relative-depth models).

    A relative model has no unit, so its RMSE in metres means something only after alignment,
    the usual practice for relative depth (MiDaS). The fit is ``losses.fit_scale_shift``'s; a constant
    prediction keeps scale 1.
    """
    scale, shift = fit_scale_shift(pred, gt, valid, degenerate_scale=1.0)
    return pred * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)


@torch.no_grad()
def batch_metrics(pred: Tensor, gt: Tensor, mask: Tensor, min_depth: float, max_depth: float,
                  with_ssim: bool = True) -> dict[str, Tensor]:
    """rmse, abs_rel, d1 (and ssim) of B x 1 x H x W depth maps in metres, averaged over images.

    Valid pixels: mask AND min_depth < gt <= max_depth (finite). Predictions are clamped to
    [min_depth, max_depth] as in the evaluation protocol. Images without a valid pixel are left
    out of the average.
    """
    pred, gt = pred.float(), gt.float()
    valid = mask.bool() & torch.isfinite(gt) & (gt > min_depth) & (gt <= max_depth)
    gt_safe = torch.where(valid, gt, torch.ones_like(gt))
    pred = torch.nan_to_num(pred, nan=min_depth, posinf=max_depth, neginf=min_depth).clamp(min_depth, max_depth)
    pred = torch.where(valid, pred, torch.ones_like(pred))
    count = valid.sum(dim=(1, 2, 3)).float()
    has = count > 0
    count = count.clamp_min(1.0)

    def per_image(values: Tensor) -> Tensor:
        return torch.where(valid, values, torch.zeros_like(values)).sum(dim=(1, 2, 3)) / count

    err = pred - gt_safe
    out = {
        "rmse": per_image(err * err).sqrt(),
        "abs_rel": per_image(err.abs() / gt_safe),
        "d1": per_image((torch.maximum(pred / gt_safe, gt_safe / pred) < 1.25).float()),
    }
    out = {k: v[has].mean() if has.any() else v.new_tensor(float("nan")) for k, v in out.items()}
    if with_ssim and min(gt.shape[-2:]) >= 11:
        out["ssim"] = ssim(pred / max_depth, gt_safe / max_depth, mask=valid)
    return out
