"""The scale-and-shift-invariant loss (MiDaS, losses.ssi_loss / ssi_gradient_loss, preset `midas`):
values against an independent numpy computation (median / mean-absolute-deviation normalisation and a
numpy.linalg.lstsq fit), invariance to an affine change of the prediction, and a negative control."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthsmith.losses import LOSS_PRESETS, build_loss, ssi_gradient_loss, ssi_loss
from depthsmith.models.heads import output_kind
from depthsmith.train.module import check_loss_fits_kind


def np_residual(p: np.ndarray, t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One image: the median/MAD-normalised target minus the lstsq-aligned prediction, 0 off `valid`."""
    tv = t[valid]
    med = np.median(tv)
    tn = (tv - med) / np.mean(np.abs(tv - med))
    design = np.stack([p[valid], np.ones(tv.size)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, tn, rcond=None)
    out = np.zeros_like(p)
    out[valid] = scale * p[valid] + shift - tn
    return out


def np_ssi(p: np.ndarray, t: np.ndarray, valid: np.ndarray) -> float:
    """Batch-based mean: all images' squared residuals over all their valid pixels, halved."""
    sq = sum(float((np_residual(p[i], t[i], valid[i]) ** 2).sum()) for i in range(len(p)))
    return 0.5 * sq / valid.sum()


def np_gradient(p: np.ndarray, t: np.ndarray, valid: np.ndarray, scales: int = 4) -> float:
    r = np.stack([np_residual(p[i], t[i], valid[i]) for i in range(len(p))])
    total = 0.0
    for k in range(scales):
        s = 2**k
        rs, vs = r[:, ::s, ::s], valid[:, ::s, ::s]
        acc = 0.0
        for b in range(rs.shape[0]):
            for y in range(rs.shape[1]):
                for x in range(rs.shape[2]):
                    if x + 1 < rs.shape[2] and vs[b, y, x] and vs[b, y, x + 1]:
                        acc += abs(rs[b, y, x + 1] - rs[b, y, x])
                    if y + 1 < rs.shape[1] and vs[b, y, x] and vs[b, y + 1, x]:
                        acc += abs(rs[b, y + 1, x] - rs[b, y, x])
        total += acc / vs.sum()
    return total


def t4(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64).unsqueeze(1)


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    t = rng.random((2, 9, 11)) * 5 + 0.5
    p = 0.3 * t + rng.normal(0, 0.4, t.shape)  # related to the target, not an affine copy
    valid = rng.random(t.shape) > 0.2
    valid[1, 0, :4] = False  # the two images have different valid counts (even and odd medians)
    return p, t, valid


def test_ssi_matches_numpy_lstsq_on_a_tiny_tensor() -> None:
    p = np.array([[[0.1, 0.4, 0.2], [0.9, 0.5, 0.3]]])
    t = np.array([[[2.0, 3.0, 2.5], [6.0, 4.0, np.nan]]])  # NaN: invalid
    valid = np.isfinite(t)
    expected = np_ssi(p, np.nan_to_num(t), valid)
    assert expected > 0.01  # a real residual, not a trivial zero
    got = ssi_loss(t4(p), t4(t))
    assert float(got) == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_ssi_and_gradient_terms_match_numpy_with_a_mask(batch) -> None:
    p, t, valid = batch
    mask = torch.tensor(valid).unsqueeze(1)
    assert float(ssi_loss(t4(p), t4(t), mask)) == pytest.approx(np_ssi(p, t, valid), rel=1e-10)
    assert float(ssi_gradient_loss(t4(p), t4(t), mask)) == pytest.approx(np_gradient(p, t, valid), rel=1e-10)


@pytest.mark.parametrize("scale, shift", [(3.0, 0.0), (0.02, 7.0), (-2.5, 1.0)])
def test_invariant_to_scale_and_shift_of_the_prediction(batch, scale: float, shift: float) -> None:
    p, t, valid = batch
    mask = torch.tensor(valid).unsqueeze(1)
    for fn in (ssi_loss, ssi_gradient_loss):
        base = float(fn(t4(p), t4(t), mask))
        assert float(fn(t4(scale * p + shift), t4(t), mask)) == pytest.approx(base, rel=1e-9)
        # and to the target's units and offset (the normalisation)
        assert float(fn(t4(p), t4(4.0 * t + 2.0), mask)) == pytest.approx(base, rel=1e-9)


def test_not_invariant_to_a_non_affine_change(batch) -> None:
    """Negative control: a monotonic but curved change of the prediction changes the loss, and an
    affine copy of the target scores zero where the target itself squared does not."""
    p, t, valid = batch
    mask = torch.tensor(valid).unsqueeze(1)
    base = float(ssi_loss(t4(p), t4(t), mask))
    curved = float(ssi_loss(t4(np.exp(2.0 * p)), t4(t), mask))
    assert abs(curved - base) > 0.05 * base
    assert float(ssi_loss(t4(0.5 * t - 3.0), t4(t), mask)) < 1e-20
    assert float(ssi_loss(t4(t**2), t4(t), mask)) > 1e-4


def test_gradients_are_finite_and_stay_on_valid_pixels(batch) -> None:
    p, t, valid = batch
    t = t.copy()
    t[~valid] = np.nan
    pred = t4(p).requires_grad_(True)
    total, terms = build_loss("midas")(pred, t4(t))
    total.backward()
    assert set(terms) == {"ssi", "ssi_grad"} and torch.isfinite(pred.grad).all()
    assert (pred.grad[~torch.tensor(valid).unsqueeze(1)] == 0).all() and pred.grad.abs().sum() > 0


def test_a_constant_prediction_gives_a_finite_loss() -> None:
    t = torch.rand(1, 1, 6, 7, dtype=torch.float64) + 0.5
    pred = torch.full_like(t, 0.3, requires_grad=True)
    loss = ssi_loss(pred, t)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(pred.grad).all()


def test_midas_preset_and_which_kinds_it_trains() -> None:
    assert LOSS_PRESETS["midas"] == ({"ssi": 1.0, "ssi_grad": 0.5}, "half")
    midas, paper = set(LOSS_PRESETS["midas"][0]), set(LOSS_PRESETS["paper"][0])
    check_loss_fits_kind(output_kind("disparity"), midas)
    check_loss_fits_kind(output_kind("relative"), midas)
    check_loss_fits_kind(output_kind("relative"), paper)
    with pytest.raises(ValueError, match="'metric'.*no metres"):
        check_loss_fits_kind(output_kind("metric"), midas)
    with pytest.raises(ValueError, match="'disparity'.*loss: midas"):
        check_loss_fits_kind(output_kind("disparity"), paper | {"ssi"})


def test_training_metrics_of_a_disparity_model_are_aligned_in_disparity() -> None:
    """A disparity output that is exactly 3 / depth + 0.2 (an affine map of the true disparity) scores
    RMSE ~0 during training: the per-image fit is in disparity, the kind's affine space (aligned in depth,
    1 / x is not affine in x, and the RMSE would not be 0)."""
    from depthsmith.train.config import resolve_config
    from depthsmith.train.module import DepthTrainModule

    cfg = resolve_config("quickstart", ["model.output=disparity", "loss=midas", "model.encoder_weights=null",
                                        "data.num_workers=0"])
    module = DepthTrainModule(cfg)
    depth = torch.rand(2, 1, 16, 20, dtype=torch.float32, generator=torch.Generator().manual_seed(0)) * 5 + 0.5
    batch = {"depth": depth, "mask": torch.ones_like(depth, dtype=torch.bool)}
    metrics = module._depth_metrics(3.0 / depth + 0.2, batch, with_ssim=False)
    assert float(metrics["rmse"]) < 1e-3 and float(metrics["abs_rel"]) < 1e-4
    curved = module._depth_metrics(torch.exp(-depth), batch, with_ssim=False)  # not affine in disparity
    assert float(curved["rmse"]) > 0.05
