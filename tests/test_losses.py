"""SSIM and depth losses against independent references (scikit-image, hand-written NumPy)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy.ndimage import minimum_filter
from skimage.metrics import structural_similarity

from depthsmith.losses import (
    LOSS_PRESETS,
    CompositeLoss,
    build_loss,
    gradient_edge_loss,
    l1_loss,
    mse_loss,
    silog_loss,
    ssim_loss,
    ssi_gradient_loss,
    ssi_loss,
)
from depthsmith.ssim import ssim, ssim_map
from helpers import load_depth

PAD = 5  # (11 - 1) // 2: the border skimage crops after filtering


def sk_ssim(a: np.ndarray, b: np.ndarray, full: bool = False):
    """tf.image.ssim-equivalent settings of scikit-image, data range 1."""
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=full
    )


def sk_masked_ssim(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> float:
    """Reference masked SSIM: skimage's map on zero-filled images, averaged over the
    interior windows whose 11x11 support is entirely valid (scipy min filter = erosion)."""
    _, smap = sk_ssim(np.where(valid, a, 0.0), np.where(valid, b, 0.0), full=True)
    eroded = minimum_filter(valid.astype(np.uint8), size=11, mode="constant", cval=0).astype(bool)
    inner = (slice(PAD, -PAD), slice(PAD, -PAD))
    return float(smap[inner][eroded[inner]].mean())


def t4(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)[None, None]


# ---------------------------------------------------------------- SSIM vs scikit-image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_random_matches_skimage(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random((64, 80))
    b = np.clip(a + rng.normal(0, 0.1 * (seed + 1), a.shape), 0, 1)
    assert float(ssim(t4(a), t4(b))) == pytest.approx(sk_ssim(a, b), abs=1e-4)


def test_ssim_unrelated_images_matches_skimage() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((64, 80)), rng.random((64, 80))
    assert float(ssim(t4(a), t4(b))) == pytest.approx(sk_ssim(a, b), abs=1e-4)


def test_ssim_map_is_skimage_interior() -> None:
    rng = np.random.default_rng(4)
    a = rng.random((30, 41))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    _, smap = sk_ssim(a, b, full=True)
    ours = ssim_map(t4(a, torch.float64), t4(b, torch.float64))[0, 0].numpy()
    assert ours.shape == (30 - 10, 41 - 10)
    np.testing.assert_allclose(ours, smap[PAD:-PAD, PAD:-PAD], atol=1e-10)


def test_ssim_multichannel_and_per_image() -> None:
    rng = np.random.default_rng(5)
    a = rng.random((2, 3, 40, 48))
    b = np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1)
    per_image = ssim(torch.tensor(a), torch.tensor(b), reduction="none")
    expected = [structural_similarity(
        a[i], b[i], channel_axis=0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0) for i in range(2)]  # fmt: skip
    np.testing.assert_allclose(per_image.numpy(), expected, atol=1e-10)
    assert float(ssim(torch.tensor(a), torch.tensor(b))) == pytest.approx(np.mean(expected), abs=1e-10)


def test_ssim_bf16_input_computed_in_float32() -> None:
    rng = np.random.default_rng(6)
    a = torch.rand(1, 1, 64, 80, generator=torch.Generator().manual_seed(6)).to(torch.bfloat16)
    b = (a.float() + 0.1 * torch.from_numpy(rng.standard_normal((1, 1, 64, 80))).float()).clamp(0, 1).to(torch.bfloat16)
    value = ssim(a, b)
    assert value.dtype == torch.float32
    # Reference on the very same (bf16-quantised) values.
    assert float(value) == pytest.approx(sk_ssim(a.double()[0, 0].numpy(), b.double()[0, 0].numpy()), abs=1e-4)


def test_ssim_real_depth_pairs_match_skimage() -> None:
    # Two different real NYU frames, normalised by 10 m (holes are 0 and stay in).
    a = load_depth("metric3d_nyu/00000_depth.png") / 10.0
    b = load_depth("metric3d_nyu/00001_depth.png") / 10.0
    assert float(ssim(t4(a), t4(b))) == pytest.approx(sk_ssim(a.astype(np.float64), b.astype(np.float64)), abs=1e-4)


def test_ssim_real_depth_vs_noisy_matches_skimage() -> None:
    a = load_depth("fastdepth_nyu/00000_depth.png").astype(np.float64) / 10.0
    b = np.clip(a + np.random.default_rng(7).normal(0, 0.02, a.shape), 0, 1)
    assert float(ssim(t4(a), t4(b))) == pytest.approx(sk_ssim(a, b), abs=1e-4)


def test_ssim_masked_real_depth_matches_eroded_reference() -> None:
    a = load_depth("metric3d_nyu/00002_depth.png").astype(np.float64) / 10.0
    b = np.clip(a * 1.05 + np.random.default_rng(8).normal(0, 0.01, a.shape), 0, 1)
    valid = a > 0
    assert 0.5 < valid.mean() < 0.9  # real holes, so the mask matters
    expected = sk_masked_ssim(a, b, valid)
    ours = ssim(t4(a), t4(b), mask=t4(valid, torch.bool))
    assert float(ours) == pytest.approx(expected, abs=1e-4)
    # Masked-out content (here NaN) must not change anything.
    a_nan = np.where(valid, a, np.nan)
    assert float(ssim(t4(a_nan), t4(b), mask=t4(valid, torch.bool))) == pytest.approx(float(ours), abs=1e-7)


def test_ssim_gradient_matches_finite_differences() -> None:
    # A few central differences instead of a full gradcheck (fast on a busy 2-core box).
    gen = torch.Generator().manual_seed(9)
    x = torch.rand(1, 1, 16, 17, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.rand(1, 1, 16, 17, dtype=torch.float64, generator=gen)
    ssim(x, y).backward()
    h = 1e-6
    for i, j in [(0, 0), (5, 7), (8, 8), (15, 16)]:
        plus, minus = x.detach().clone(), x.detach().clone()
        plus[0, 0, i, j] += h
        minus[0, 0, i, j] -= h
        numeric = (ssim(plus, y) - ssim(minus, y)).item() / (2 * h)
        assert x.grad[0, 0, i, j].item() == pytest.approx(numeric, abs=1e-7)


# ---------------------------------------------------------------- losses, tiny hand example

# 3 x 4 example; mask False where the target is NaN, inf, or a finite 0-valued hole.
PRED = np.array([[0.10, 0.20, 0.40, 0.30], [0.50, 0.55, 0.70, 0.20], [0.90, 0.80, 0.60, 0.10]])
TARGET = np.array([[0.15, 0.20, 0.30, np.nan], [0.50, 0.65, np.inf, 0.25], [0.00, 0.80, 0.60, 0.30]])
MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 1], [0, 1, 1, 1]], dtype=bool)


def np_edge(p: np.ndarray, t: np.ndarray, m: np.ndarray) -> float:
    """Forward differences, written as explicit loops; a pair counts if both pixels are valid."""
    dy, dx = [], []
    h, w = p.shape
    for i in range(h):
        for j in range(w):
            if i + 1 < h and m[i, j] and m[i + 1, j]:
                dy.append(abs((p[i + 1, j] - p[i, j]) - (t[i + 1, j] - t[i, j])))
            if j + 1 < w and m[i, j] and m[i, j + 1]:
                dx.append(abs((p[i, j + 1] - p[i, j]) - (t[i, j + 1] - t[i, j])))
    return float(np.mean(dy) + np.mean(dx))


def tiny() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = t4(PRED, torch.float64)
    return pred, t4(TARGET, torch.float64), t4(MASK, torch.bool)


def test_l1_mse_hand_example() -> None:
    pred, target, mask = tiny()
    err = (PRED - TARGET)[MASK]
    assert float(l1_loss(pred, target, mask)) == pytest.approx(np.abs(err).mean(), abs=1e-12)
    assert float(mse_loss(pred, target, mask)) == pytest.approx((err**2).mean(), abs=1e-12)
    # Worked out by hand: valid |errors| = .05 0 .1 / 0 .1 .05 / 0 0 .2 -> 0.5 / 9.
    assert float(l1_loss(pred, target, mask)) == pytest.approx(0.5 / 9, abs=1e-12)


def test_edge_hand_example() -> None:
    pred, target, mask = tiny()
    assert float(gradient_edge_loss(pred, target, mask)) == pytest.approx(np_edge(PRED, TARGET, MASK), abs=1e-12)
    # Without a mask on a finite target, every forward difference counts.
    clean = np.nan_to_num(TARGET, nan=0.3, posinf=0.6)
    assert float(gradient_edge_loss(pred, t4(clean, torch.float64))) == pytest.approx(
        np_edge(PRED, clean, np.ones_like(MASK)), abs=1e-12
    )


def test_silog_hand_example() -> None:
    pred, target, mask = tiny()
    e = np.log(TARGET[MASK]) - np.log(PRED[MASK])
    expected = np.sqrt(np.mean(e**2) - 0.5 * np.mean(e) ** 2)
    assert float(silog_loss(pred, target, mask)) == pytest.approx(expected, abs=1e-12)
    # Same in metres: the loss depends only on ratios.
    assert float(silog_loss(pred * 10, target * 10, mask)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("form, factor", [("half", 0.5), ("full", 1.0)])
def test_ssim_loss_forms_vs_skimage(form: str, factor: float) -> None:
    rng = np.random.default_rng(10)
    t = rng.random((24, 28))
    p = np.clip(t + rng.normal(0, 0.1, t.shape), 0, 1)
    expected = factor * (1 - sk_ssim(p, t))
    assert float(ssim_loss(t4(p, torch.float64), t4(t, torch.float64), form=form)) == pytest.approx(expected, abs=1e-10)
    # Masked: windows touching invalid (NaN) target pixels are excluded.
    valid = np.ones_like(t, dtype=bool)
    valid[3:6, 4:9] = False
    expected_masked = factor * (1 - sk_masked_ssim(p, t, valid))
    value = ssim_loss(t4(p, torch.float64), t4(np.where(valid, t, np.nan), torch.float64), t4(valid, torch.bool), form=form)
    assert float(value) == pytest.approx(expected_masked, abs=1e-10)


LOSS_FUNCTIONS = [l1_loss, mse_loss, gradient_edge_loss, silog_loss, ssim_loss, ssi_loss, ssi_gradient_loss]


@pytest.mark.parametrize("loss_fn", LOSS_FUNCTIONS, ids=lambda f: f.__name__)
def test_nan_inf_in_masked_target_gives_finite_loss_and_grads(loss_fn) -> None:
    rng = np.random.default_rng(11)
    target = rng.random((2, 1, 24, 28)) * 0.9 + 0.05
    # A hole, a dead column and scattered pixels: SSIM windows still fit in rows 6-23.
    mask = np.ones(target.shape, dtype=bool)
    mask[0, 0, 2:5, 3:8] = False
    mask[:, :, :, 27] = False
    mask[1, 0, :6] &= rng.random((6, 28)) > 0.3
    target[~mask] = np.where(rng.random((~mask).sum()) > 0.5, np.nan, np.inf)
    pred = torch.tensor(rng.random(target.shape) * 0.9 + 0.05, requires_grad=True)
    loss = loss_fn(pred, torch.tensor(target), torch.tensor(mask))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(pred.grad).all()
    # Gradient only reaches valid pixels.
    assert (pred.grad[~torch.tensor(mask)] == 0).all()


@pytest.mark.parametrize("loss_fn", LOSS_FUNCTIONS, ids=lambda f: f.__name__)
def test_empty_mask_gives_zero_with_gradient_path(loss_fn) -> None:
    pred = torch.rand(1, 1, 16, 16, requires_grad=True)
    target = torch.full((1, 1, 16, 16), float("nan"))
    loss = loss_fn(pred, target, torch.zeros(1, 1, 16, 16, dtype=torch.bool))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


# ---------------------------------------------------------------- composite and presets


def independent_terms(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    ones = np.ones_like(p, dtype=bool)
    return {
        "l1": float(np.abs(p - t).mean()),
        "mse": float(((p - t) ** 2).mean()),
        "edge": np_edge(p, t, ones),
        "ssim_value": float(sk_ssim(p, t)),
    }


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    t = rng.random((32, 36)) * 0.8 + 0.1
    return np.clip(t + rng.normal(0, 0.05, t.shape), 0, 1), t


def test_paper_preset_weights(pair) -> None:
    p, t = pair
    ref = independent_terms(p, t)
    total, terms = build_loss("paper")(t4(p, torch.float64), t4(t, torch.float64))
    expected = 1.0 * (1 - ref["ssim_value"]) / 2 + 1.0 * ref["edge"] + 0.3 * ref["l1"]
    assert float(total) == pytest.approx(expected, abs=1e-8)
    assert set(terms) == {"ssim", "edge", "l1"}
    assert float(terms["l1"]) == pytest.approx(ref["l1"], abs=1e-10)


def test_report_preset_weights(pair) -> None:
    p, t = pair
    ref = independent_terms(p, t)
    total, terms = build_loss("report")(t4(p, torch.float64), t4(t, torch.float64))
    expected = ref["mse"] + 0.15 * (1 - ref["ssim_value"]) + 0.05 * ref["edge"]
    assert float(total) == pytest.approx(expected, abs=1e-8)
    assert set(terms) == {"mse", "ssim", "edge"}


def test_dict_spec(pair) -> None:
    p, t = pair
    ref = independent_terms(p, t)
    loss = build_loss({"l1": 0.5, "ssim": 1.0, "ssim_form": "full"})
    total, _ = loss(t4(p, torch.float64), t4(t, torch.float64))
    assert float(total) == pytest.approx(0.5 * ref["l1"] + (1 - ref["ssim_value"]), abs=1e-8)
    assert loss.last_terms.keys() == {"l1", "ssim"}


def test_preset_table_is_the_documented_one() -> None:
    assert LOSS_PRESETS["paper"] == ({"ssim": 1.0, "edge": 1.0, "l1": 0.3}, "half")
    assert LOSS_PRESETS["report"] == ({"mse": 1.0, "ssim": 0.15, "edge": 0.05}, "full")


def test_unknown_names_raise_with_valid_list() -> None:
    with pytest.raises(ValueError, match="paper"):
        build_loss("papper")
    with pytest.raises(ValueError, match="edge"):
        build_loss({"egde": 1.0})
    with pytest.raises(ValueError, match="half"):
        CompositeLoss({"ssim": 1.0}, ssim_form="quarter")


def test_composite_bf16_prediction_is_finite_and_differentiable() -> None:
    gen = torch.Generator().manual_seed(13)
    pred = torch.rand(2, 1, 24, 32, generator=gen).to(torch.bfloat16).requires_grad_(True)
    target = torch.rand(2, 1, 24, 32, generator=gen)
    total, terms = build_loss("paper")(pred, target, target > 0.05)
    total.backward()
    assert total.dtype == torch.float32 and torch.isfinite(total)
    assert torch.isfinite(pred.grad.float()).all() and pred.grad.abs().sum() > 0
    assert all(not v.requires_grad for v in terms.values())
