"""Depth losses with an explicit valid mask.

Conventions for every loss here:
- `pred` and `target` are B x 1 x H x W; `mask` is an optional bool tensor of the same
  shape, True = valid. Non-finite target pixels are always treated as invalid, too.
- Invalid pixels never contribute: values are selected with `torch.where`, never
  multiplied by the mask, because NaN * 0 = NaN would leak into the loss and gradients.
- Means are over the valid elements of the whole batch. No valid element -> 0, still
  attached to the graph (zero gradients, no NaN), so a training step does not crash.
- Losses work on *normalised* depth: pred and target already divided by the dataset's
  max depth (values in [0, 1]), which is what SSIM's data_range=1 assumes. There are no
  hidden scale factors: rescale outside. `silog_loss` is scale-free (log ratio), so it
  gives the same value in metres or normalised units.

Lightning usage of the composite loss:
    total, terms = self.loss(pred, target, mask)
    self.log_dict({f"train/loss_{k}": v for k, v in terms.items()})
    return total
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from depthsmith.ssim import ssim_map, valid_window_mask
from .errors import InputError

__all__ = [
    "fit_scale_shift",
    "l1_loss",
    "mse_loss",
    "gradient_edge_loss",
    "ssim_loss",
    "silog_loss",
    "ssi_loss",
    "ssi_gradient_loss",
    "TERM_NAMES",
    "INVARIANT_TERMS",
    "CompositeLoss",
    "LOSS_PRESETS",
    "build_loss",
]

SSIM_FORMS = ("half", "full")


def _valid(target: Tensor, mask: Tensor | None) -> Tensor:
    """Valid-pixel mask: the caller's mask AND a finite target."""
    valid = torch.isfinite(target)
    if mask is not None:
        if mask.shape != target.shape:
            raise InputError(f"mask shape {tuple(mask.shape)} != target shape {tuple(target.shape)}")
        valid = valid & mask.bool()
    return valid


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of `values` where `valid`; 0 (with a gradient path) when nothing is valid."""
    selected = torch.where(valid, values, torch.zeros_like(values))
    return selected.sum() / valid.sum().clamp_min(1).to(values.dtype)


def _clean(x: Tensor, valid: Tensor) -> Tensor:
    """Replace invalid entries by 0 so that NaN/inf never enter an arithmetic op."""
    return torch.where(valid, x, torch.zeros_like(x))


def l1_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over valid pixels."""
    valid = _valid(target, mask)
    return _masked_mean((_clean(pred, valid) - _clean(target, valid)).abs(), valid)


def mse_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over valid pixels."""
    valid = _valid(target, mask)
    return _masked_mean((_clean(pred, valid) - _clean(target, valid)) ** 2, valid)


def gradient_edge_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """mean |dy_pred - dy_true| + mean |dx_pred - dx_true|, forward differences.

    A difference counts only if both of its pixels are valid; each direction is averaged
    over its own valid differences. (The seed Keras code uses `tf.image.image_gradients`,
    which zero-pads the last row/column and so averages over H*W including those zeros;
    here the mean is over real differences only.)
    """
    valid = _valid(target, mask)
    target = _clean(target, valid)
    pred = _clean(pred, valid)
    dy_valid = valid[..., 1:, :] & valid[..., :-1, :]
    dx_valid = valid[..., :, 1:] & valid[..., :, :-1]
    dy_error = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    dx_error = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    return _masked_mean(dy_error.abs(), dy_valid) + _masked_mean(dx_error.abs(), dx_valid)


def ssim_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    form: str = "half",
    **ssim_kwargs: float,
) -> Tensor:
    """SSIM dissimilarity with data_range 1 (normalised depth).

    form='half': (1 - SSIM) / 2, in [0, 1] (seed paper / DenseDepth code).
    form='full': 1 - SSIM (ConvNeXt report).
    With a mask, only windows lying entirely on valid pixels count (see `ssim.ssim`).
    `ssim_kwargs` go to `ssim_map` (window_size, sigma, k1, k2, data_range).
    """
    if form not in SSIM_FORMS:
        raise InputError(f"form must be one of {SSIM_FORMS}, got {form!r}")
    valid = _valid(target, mask)
    values = ssim_map(_clean(pred, valid), _clean(target, valid), **ssim_kwargs)
    window_size = int(ssim_kwargs.get("window_size", 11))
    windows = valid_window_mask(valid, window_size).expand_as(values)
    dissimilarity = 1.0 - values
    if form == "half":
        dissimilarity = dissimilarity / 2.0
    return _masked_mean(dissimilarity, windows)


def silog_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    lambd: float = 0.5,
    eps: float = 1e-6,
) -> Tensor:
    """Scale-invariant log loss (Depth-Anything-V2 `SiLogLoss`).

    sqrt(mean(e^2) - lambd * mean(e)^2), e = ln target - ln pred over valid pixels, the means over
    the valid pixels of the whole batch. ZoeDepth's `SILogLoss(beta=0.15)` (isl-org/ZoeDepth
    zoedepth/trainers/loss.py) is 10 * sqrt(var(e) + 0.15 * mean(e)^2) = 10 x this with lambd = 0.85,
    up to its variance being torch.var's unbiased one (n / (n - 1) x ours: O(1 / n) apart).
    Pixels with target <= 0 are invalid (log undefined); pred is clamped to eps. The value
    depends only on ratios, so metres and normalised depth give the same loss.
    """
    valid = _valid(target, mask)
    valid = valid & (_clean(target, valid) > 0)
    ones = torch.ones_like(target)
    # Invalid pixels get log(1) = 0 on both sides, so they add nothing, not even in grads.
    log_target = torch.log(torch.where(valid, target, ones))
    log_pred = torch.log(torch.where(valid, pred, ones).clamp_min(eps))
    e = log_target - log_pred
    variance = _masked_mean(e**2, valid) - lambd * _masked_mean(e, valid) ** 2
    # sqrt'(0) is infinite: take the root only where positive, so a perfect prediction
    # or an empty mask gives exactly 0 with a zero (finite) gradient.
    positive = variance > 0
    root = torch.sqrt(torch.where(positive, variance, torch.ones_like(variance)))
    return torch.where(positive, root, torch.zeros_like(variance))


def fit_scale_shift(pred: Tensor, target: Tensor, valid: Tensor, degenerate_scale: float = 0.0) -> tuple[Tensor, Tensor]:
    """Per-image least-squares (scale, shift), each of shape B, with ``scale * pred + shift ~ target``
    over the ``valid`` pixels: the closed-form 2 x 2 normal equations (MiDaS's published
    ``compute_scale_and_shift``), differentiable. An image whose prediction is constant over its valid
    pixels has no unique fit; it gets ``degenerate_scale`` (0 for a loss: no gradient through a
    meaningless slope; 1 to leave a prediction as it is) and the shift that matches the means.
    """
    w = valid.to(pred.dtype)
    p, t = _clean(pred, valid), _clean(target, valid)
    n = w.sum(dim=(1, 2, 3)).clamp_min(1.0)
    sx, sy = (w * p).sum(dim=(1, 2, 3)), (w * t).sum(dim=(1, 2, 3))
    sxx, sxy = (w * p * p).sum(dim=(1, 2, 3)), (w * p * t).sum(dim=(1, 2, 3))
    det = n * sxx - sx * sx
    ok = det > 1e-12 * n * n  # relative to the pixel count: det grows as n**2 x the prediction's variance
    fallback = torch.full_like(det, float(degenerate_scale))
    scale = torch.where(ok, (n * sxy - sx * sy) / torch.where(ok, det, torch.ones_like(det)), fallback)
    return scale, (sy - scale * sx) / n


def _ssi_residual(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(aligned pred - normalised target, valid) for the scale-and-shift-invariant terms.

    MiDaS (Ranftl et al. 2020, "Towards Robust Monocular Depth Estimation", eq. 4 and 6): the target
    is shifted by its per-image median and divided by its mean absolute deviation from it, so its
    units do not matter; the prediction is then put on it by the closed-form least-squares scale
    and shift of each image (the 2 x 2 normal equations, as MiDaS's published ``compute_scale_and_shift``).
    Gradients flow through the scale and shift. A constant prediction (no unique fit) gets scale 0.
    """
    valid = _valid(target, mask)
    b = target.shape[0]
    w = valid.to(pred.dtype)
    n = w.sum(dim=(1, 2, 3)).clamp_min(1.0)
    t = _clean(target, valid)
    # Median over each image's valid pixels: invalid ones set to +inf sort last.
    flat = torch.where(valid, t, torch.full_like(t, float("inf"))).reshape(b, -1)
    counts = valid.reshape(b, -1).sum(dim=1)
    ordered = flat.sort(dim=1).values
    lo, hi = ((counts - 1).clamp_min(0) // 2).view(-1, 1), (counts // 2).clamp_max(flat.shape[1] - 1).view(-1, 1)
    median = (0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi))).view(-1, 1, 1, 1)  # the mean of the middle two
    median = torch.where(counts.view(-1, 1, 1, 1) > 0, median, torch.zeros_like(median))
    centred = _clean(t - median, valid)
    spread = (centred.abs().sum(dim=(1, 2, 3)) / n).clamp_min(1e-12).view(-1, 1, 1, 1)
    t = centred / spread
    p = _clean(pred, valid)
    scale, shift = fit_scale_shift(p, t, valid, degenerate_scale=0.0)
    aligned = p * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
    return _clean(aligned - t, valid), valid


def ssi_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scale-and-shift-invariant MSE (MiDaS eq. 2-4, L_ssimse): half the mean squared residual of the
    prediction, least-squares aligned per image, against the median/MAD-normalised target.

    Invariant to any positive or negative scale and any shift of ``pred`` (and of ``target``), so
    it is for unitless output kinds; it compares in the space the target is in, which the kind's
    training target chooses (``relative``: min-max depth; ``disparity``: inverse depth), i.e. the
    space the kind is affine in (``OutputKind.affine_space``, models/heads.py).
    """
    residual, valid = _ssi_residual(pred, target, mask)
    return 0.5 * _masked_mean(residual**2, valid)


def ssi_gradient_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, scales: int = 4) -> Tensor:
    """MiDaS's multi-scale gradient matching term (eq. 11) on the aligned residual R of ``ssi_loss``:
    sum over ``scales`` scales (every 2**k-th pixel) of sum(|dx R| + |dy R|) over differences whose
    two pixels are valid, divided by that scale's valid pixel count. It makes the prediction's
    discontinuities sharp and where the target's are."""
    residual, valid = _ssi_residual(pred, target, mask)
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r, v = residual[..., ::step, ::step], valid[..., ::step, ::step]
        dx = torch.where(v[..., :, 1:] & v[..., :, :-1], (r[..., :, 1:] - r[..., :, :-1]).abs(), torch.zeros_like(r[..., :, 1:]))
        dy = torch.where(v[..., 1:, :] & v[..., :-1, :], (r[..., 1:, :] - r[..., :-1, :]).abs(), torch.zeros_like(r[..., 1:, :]))
        total = total + (dx.sum() + dy.sum()) / v.sum().clamp_min(1).to(r.dtype)
    return total


# Terms taking (pred, target, mask); "ssim" also needs the form, so it is handled apart.
_SIMPLE_TERMS = {"l1": l1_loss, "mse": mse_loss, "edge": gradient_edge_loss, "silog": silog_loss,
                 "ssi": ssi_loss, "ssi_grad": ssi_gradient_loss}
TERM_NAMES = ("l1", "mse", "edge", "ssim", "silog", "ssi", "ssi_grad")
# Terms blind to the prediction's scale and shift: a metric output trained on them alone learns no metres.
INVARIANT_TERMS = ("ssi", "ssi_grad")


class CompositeLoss(nn.Module):
    """Weighted sum of the terms above.

    forward(pred, target, mask=None) -> (total, terms), where `terms` maps each term name
    with a non-zero weight to its *unweighted*, detached value (ready for `log_dict`).
    The same dict is kept in `self.last_terms`. `total` = sum(weight * term).
    """

    def __init__(self, weights: Mapping[str, float], ssim_form: str = "half", silog_lambda: float | None = None) -> None:
        super().__init__()
        unknown = sorted(set(weights) - set(TERM_NAMES))
        if unknown:
            raise InputError(f"unknown loss terms {unknown}; valid terms: {list(TERM_NAMES)}")
        if any(w < 0 for w in weights.values()):
            raise InputError(f"loss weights must be >= 0, got {dict(weights)}")
        if ssim_form not in SSIM_FORMS:
            raise InputError(f"ssim_form must be one of {SSIM_FORMS}, got {ssim_form!r}")
        self.weights = {name: float(w) for name, w in weights.items() if w != 0}
        if not self.weights:
            raise InputError("at least one loss weight must be non-zero")
        if silog_lambda is not None and "silog" not in self.weights:
            raise InputError(f"loss.silog_lambda={silog_lambda} is set but the loss has no silog term "
                             f"(weights {self.weights}); add e.g. silog: 1.0")
        self.ssim_form = ssim_form
        self.silog_lambda = _silog_lambda(0.5 if silog_lambda is None else silog_lambda)
        self.last_terms: dict[str, Tensor] = {}

    def term(self, name: str, pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
        if name == "ssim":
            return ssim_loss(pred, target, mask, form=self.ssim_form)
        if name == "silog":
            return silog_loss(pred, target, mask, lambd=self.silog_lambda)
        return _SIMPLE_TERMS[name](pred, target, mask)

    def forward(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        total = pred.new_zeros((), dtype=torch.float32)
        terms: dict[str, Tensor] = {}
        for name, weight in self.weights.items():
            value = self.term(name, pred, target, mask)
            total = total + weight * value
            terms[name] = value.detach()
        self.last_terms = terms
        return total, terms

    def extra_repr(self) -> str:
        return f"weights={self.weights}, ssim_form={self.ssim_form!r}, silog_lambda={self.silog_lambda}"


# Named presets: (weights, ssim_form).
LOSS_PRESETS: dict[str, tuple[dict[str, float], str]] = {
    # Seed notebook's loss (README "Seed fidelity"): 1.0 * (1 - SSIM)/2 + 1.0 * edge + 0.3 * L1.
    "paper": ({"ssim": 1.0, "edge": 1.0, "l1": 0.3}, "half"),
    # ConvNeXt U-Net report (README presets table): MSE + 0.15 * (1 - SSIM) + 0.05 * edge.
    "report": ({"mse": 1.0, "ssim": 0.15, "edge": 0.05}, "full"),
    # MiDaS (Ranftl et al. 2020, eq. 12): scale-and-shift-invariant MSE + 0.5 x gradient matching over
    # 4 scales, for unitless outputs (relative, disparity), whose per-image scale and shift are free.
    "midas": ({"ssi": 1.0, "ssi_grad": 0.5}, "half"),
}


def _silog_lambda(value: object) -> float:
    # lambda <= 1 keeps mean(e^2) - lambda * mean(e)^2 >= (1 - lambda) * mean(e)^2 >= 0: a real root.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"loss.silog_lambda must be a number in [0, 1], got {value!r}")
    return float(value)


def _weight(key: str, value: object) -> float:
    """A term weight from a config, as a float; anything else names the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"loss.{key} must be a number (the term's weight), got {value!r}")
    return float(value)


def build_loss(spec: str | Mapping[str, float | str]) -> CompositeLoss:
    """Build a CompositeLoss from a preset name or a config dict.

    build_loss("paper"), build_loss("report"), or
    build_loss({"l1": 0.5, "ssim": 1.0, "ssim_form": "full"}) (ssim_form defaults to 'half'), or
    build_loss({"silog": 10.0, "silog_lambda": 0.85}) (ZoeDepth's SILog; silog_lambda defaults to 0.5,
    Depth-Anything-V2's).
    """
    if isinstance(spec, str):
        if spec not in LOSS_PRESETS:
            raise InputError(f"unknown loss preset {spec!r}; valid presets: {sorted(LOSS_PRESETS)}")
        weights, form = LOSS_PRESETS[spec]
        return CompositeLoss(weights, ssim_form=form)
    if isinstance(spec, Mapping):
        config = dict(spec)
        form = str(config.pop("ssim_form", "half"))
        silog_lambda = config.pop("silog_lambda", None)
        unknown = sorted(set(config) - set(TERM_NAMES))
        if unknown:  # before the weights, so a typo is named as one rather than as a bad weight
            raise InputError(f"unknown loss terms {unknown}; valid terms: {list(TERM_NAMES)}, "
                             "and the options ssim_form, silog_lambda")
        weights = {k: _weight(k, v) for k, v in config.items()}
        return CompositeLoss(weights, ssim_form=form, silog_lambda=silog_lambda)
    raise TypeError(f"loss spec must be a preset name or a mapping, got {type(spec).__name__}")
