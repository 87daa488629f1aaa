"""In-training batch metrics against the evaluation code (depthsmith.metrics) and hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthsmith.metrics import compute_metrics, ssim_score
from depthsmith.train.batch_metrics import align_scale_shift, batch_metrics


def test_batch_metrics_match_the_evaluation_metrics_per_image_mean():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 1, 24, 32, generator=g) * 8 + 0.5
    pred = gt * (1 + 0.3 * torch.randn(3, 1, 24, 32, generator=g)).clamp(0.2, 3)
    mask = torch.rand(3, 1, 24, 32, generator=g) > 0.2
    mask[:, :, :12, :16] = True  # an 11x11 all-valid window for SSIM
    ours = batch_metrics(pred, gt, mask, min_depth=1e-3, max_depth=10.0)
    ref = [compute_metrics(pred[i, 0], gt[i, 0], 1e-3, 10.0, mask=mask[i, 0]) for i in range(3)]
    for key in ("rmse", "abs_rel", "d1"):
        assert float(ours[key]) == pytest.approx(np.mean([r[key] for r in ref]), rel=1e-5)
    # SSIM of depth / max_depth over windows lying on valid pixels, as ssim_score does per image
    # (equal window counts per image, so the batch mean is the mean of the per-image values).
    ref_ssim = np.mean([ssim_score(pred[i, 0].clamp(1e-3, 10), gt[i, 0], 10.0, mask=mask[i, 0]) for i in range(3)])
    assert float(ours["ssim"]) == pytest.approx(ref_ssim, abs=0.02)


def test_perfect_prediction_and_hand_values():
    gt = torch.full((1, 1, 16, 16), 2.0)
    mask = torch.ones_like(gt, dtype=torch.bool)
    perfect = batch_metrics(gt.clone(), gt, mask, 1e-3, 10.0)
    assert float(perfect["rmse"]) == 0 and float(perfect["d1"]) == 1 and float(perfect["ssim"]) == pytest.approx(1)
    off = batch_metrics(gt * 1.5, gt, mask, 1e-3, 10.0)  # 3 m for 2 m everywhere
    assert float(off["rmse"]) == pytest.approx(1.0) and float(off["abs_rel"]) == pytest.approx(0.5)
    assert float(off["d1"]) == 0.0


def test_scale_shift_alignment_recovers_a_relative_map():
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(2, 1, 8, 8, generator=g) * 5 + 1
    relative = (gt - 0.7) / 3.1
    valid = torch.ones_like(gt, dtype=torch.bool)
    assert torch.allclose(align_scale_shift(relative, gt, valid), gt, atol=1e-4)
