"""Structural similarity (SSIM) in PyTorch, differentiable, with an optional valid mask.

The definition is the one of `tf.image.ssim` (used by the seed paper's code) and of
`skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`:

- 11x11 Gaussian window (sigma 1.5), applied as a 'valid' convolution (no padding), so
  the map is (H - 10) x (W - 10). skimage filters with reflect padding and then crops
  (win - 1) // 2 pixels on every side before averaging: the same interior values.
- population covariance (divide by the window weight sum, 1, not by N - 1).
- C1 = (k1 * data_range)^2, C2 = (k2 * data_range)^2.

Computation happens in float32 (float64 stays float64): bf16/fp16 inputs lose too much
precision in the variance terms E[x^2] - E[x]^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from .errors import InputError

__all__ = ["gaussian_window", "ssim_map", "valid_window_mask", "ssim"]


def gaussian_window(window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Normalised 1-D Gaussian window (float64), centred on the middle tap."""
    if window_size < 1 or window_size % 2 == 0:
        raise InputError(f"window_size must be a positive odd integer, got {window_size}")
    coords = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2
    window = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return window / window.sum()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # float64 in -> float64; everything else (bf16, fp16, float32) -> float32.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _filter_valid(x: Tensor, window: Tensor) -> Tensor:
    """Depthwise separable Gaussian filter, 'valid' (no padding): B x C x H-k+1 x W-k+1."""
    channels, k = x.shape[1], window.numel()
    vertical = window.view(1, 1, k, 1).expand(channels, 1, k, 1)
    horizontal = window.view(1, 1, 1, k).expand(channels, 1, 1, k)
    x = F.conv2d(x, vertical, groups=channels)
    return F.conv2d(x, horizontal, groups=channels)


def ssim_map(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-window SSIM of two B x C x H x W tensors, shape B x C x (H-k+1) x (W-k+1).

    Differentiable with respect to both inputs. Returns float32 (float64 for float64 input).
    """
    if x.shape != y.shape or x.dim() != 4:
        raise InputError(f"x and y must both be B x C x H x W, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window_size:
        raise InputError(f"image sides {tuple(x.shape[-2:])} are smaller than the window ({window_size})")
    dtype = _compute_dtype(x.dtype)
    x, y = x.to(dtype), y.to(dtype)
    window = gaussian_window(window_size, sigma).to(device=x.device, dtype=dtype)

    mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
    # Population (co)variances: E[xy] - E[x]E[y] with the normalised window as weights.
    var_x = _filter_valid(x * x, window) - mu_x * mu_x
    var_y = _filter_valid(y * y, window) - mu_y * mu_y
    cov_xy = _filter_valid(x * y, window) - mu_x * mu_y

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def valid_window_mask(mask: Tensor, window_size: int = 11) -> Tensor:
    """Erode a B x 1 x H x W bool mask by the window: True where the WHOLE window is valid.

    Output has the shape of `ssim_map` (valid convolution). A min-pool of the mask is a
    max-pool of its complement, which is exact (no floating-point comparison).
    """
    invalid = (~mask.bool()).to(torch.float32)
    return F.max_pool2d(invalid, kernel_size=window_size, stride=1) == 0


def ssim(
    x: Tensor,
    y: Tensor,
    mask: Tensor | None = None,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    reduction: str = "mean",
) -> Tensor:
    """Mean SSIM of B x C x H x W tensors.

    mask: optional B x 1 x H x W bool (True = valid). The map is averaged only over
    windows lying entirely inside the valid region: a window that touches an invalid pixel
    mixes its value (a 0 hole, a NaN) into the local means and variances, so its SSIM says
    nothing about the valid content. Invalid pixels are replaced by 0 before filtering
    (torch.where) so NaN/inf there reach neither the value nor the gradient.

    reduction: 'mean' -> scalar, the average over all valid windows and channels of the
    batch (without a mask this is the mean of the per-image values, as every image has the
    same number of windows); 'none' -> per-image values, shape B. Images (or a batch)
    with no valid window give NaN: SSIM is undefined there; losses handle that case.
    """
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if mask is not None:
        mask = mask.bool()
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
            raise InputError(f"mask must be B x 1 x H x W, got {tuple(mask.shape)}")
        x = torch.where(mask, x, torch.zeros_like(x))
        y = torch.where(mask, y, torch.zeros_like(y))
    values = ssim_map(x, y, data_range, window_size, sigma, k1, k2)
    if mask is None:
        windows = torch.ones_like(values, dtype=torch.bool)
    else:
        windows = valid_window_mask(mask, window_size).expand_as(values)
    values = torch.where(windows, values, torch.zeros_like(values))
    dims = (1, 2, 3) if reduction == "none" else (0, 1, 2, 3)
    # 0 / 0 -> NaN on purpose for "no valid window".
    return values.sum(dim=dims) / windows.sum(dim=dims).to(values.dtype)
