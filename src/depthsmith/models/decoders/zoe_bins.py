"""ZoeDepth's metric bins head (Bhat et al. 2023, "ZoeDepth: Zero-shot Transfer by Combining Relative
and Metric Depth"), computed as transformers ``models/zoedepth/modeling_zoedepth.py`` computes it
(itself a port of isl-org/ZoeDepth ``zoedepth/models/layers/``). Module and parameter names are
transformers' (``metric_head.*``), so a checkpoint maps onto them one to one.

* Seed bin regressor: per-pixel MLP on the bottleneck -> ``n_bins`` bin centres (``softplus``:
  unbounded centres in metres; ``normed``: widths normalised to [min_depth, max_depth]).
* Four attractor layers, deepest decoder level first: each predicts attractor points from its
  level's bin embedding (plus the previous embedding, bilinearly resized) and moves every bin centre
  by the mean (or sum) of dx / (1 + 300 dx^2) over the attractors. 300 and 2 are
  ``inv_attractor``'s defaults: transformers and the original call it without ``attractor_alpha`` /
  ``attractor_gamma``, so those config values change nothing, here either.
* Conditional log-binomial: a per-pixel MLP on the relative head's features (+ the relative depth,
  one-head models) and the last bin embedding gives a probability p and a temperature t; the bin
  weights are softmax(log Binomial(k; n_bins - 1, p) / t); depth = sum of weights x bin centres.
* Two heads (``-nyu-kitti``): a 4-layer post-norm transformer over the bottleneck's pixels with a
  zero class token and sinusoidal positions, then an MLP -> one logit per bin configuration
  (``domain_logits``). transformers takes one vote per batch (softmax of the logits summed over
  the batch, ``ZoeDepthMultipleMetricDepthEstimationHeads.forward``); here every image takes its
  own argmax, so an image's depth never depends on the others in its batch. For one image (how the
  processor and pipeline run it) the two are the same. Every head runs and the chosen one is
  selected by tensor ops, so the model has no data-dependent Python branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MetricBinsHead", "Attractor", "ConditionalLogBinomial", "Projector", "SeedBinRegressor"]

_INV_ALPHA, _INV_GAMMA = 300.0, 2  # modeling_zoedepth.inv_attractor defaults (see the module docstring)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _mlp(cin: int, hidden: int, cout: int) -> tuple[nn.Conv2d, nn.Conv2d]:
    return nn.Conv2d(cin, hidden, 1), nn.Conv2d(hidden, cout, 1)


class Projector(nn.Module):
    """``ZoeDepthProjector``: 1x1 conv, ReLU, 1x1 conv."""

    def __init__(self, cin: int, cout: int, hidden: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = _mlp(cin, hidden, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class SeedBinRegressor(nn.Module):
    """``ZoeDepthSeedBinRegressor``: the first bin centres (B x n_bins x h x w)."""

    def __init__(self, cin: int, n_bins: int, hidden: int, min_depth: float, max_depth: float, normed: bool) -> None:
        super().__init__()
        self.conv1, self.conv2 = _mlp(cin, hidden, n_bins)
        self.min_depth, self.max_depth, self.normed = min_depth, max_depth, normed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(F.relu(self.conv1(x)))
        if not self.normed:
            return F.softplus(x)
        widths = F.relu(x) + 1e-3
        widths = (self.max_depth - self.min_depth) * widths / widths.sum(dim=1, keepdim=True)
        edges = torch.cumsum(F.pad(widths, (0, 0, 0, 0, 1, 0), value=self.min_depth), dim=1)
        return 0.5 * (edges[:, :-1] + edges[:, 1:])


class Attractor(nn.Module):
    """``ZoeDepthAttractorLayer`` (normed) / ``ZoeDepthAttractorLayerUnnormed`` (softplus)."""

    def __init__(self, dim: int, n_attractors: int, min_depth: float, max_depth: float, normed: bool,
                 kind: str) -> None:
        super().__init__()
        self.conv1, self.conv2 = _mlp(dim, dim, n_attractors * (2 if normed else 1))
        self.n, self.normed, self.kind = n_attractors, normed, kind
        self.min_depth, self.max_depth = min_depth, max_depth

    def forward(self, x: torch.Tensor, prev_bin: torch.Tensor, prev_embedding: torch.Tensor):
        x = x + _resize(prev_embedding, x.shape[-2:])
        points = self.conv2(F.relu(self.conv1(x)))
        if self.normed:  # the first of each pair only: the original's indexing, kept for its weights
            points = (F.relu(points) + 1e-3).unflatten(1, (self.n, 2))[:, :, 0]
        else:
            points = F.softplus(points)
        centers = _resize(prev_bin, x.shape[-2:])
        delta = torch.zeros_like(centers)
        for i in range(self.n):  # one attractor at a time (memory), as transformers' memory_efficient path
            dx = points[:, i:i + 1] - centers
            delta = delta + dx / (1 + _INV_ALPHA * dx.pow(_INV_GAMMA))
        if self.kind == "mean":
            delta = delta / self.n
        new = centers + delta
        if not self.normed:
            return new, new
        scaled = torch.sort((self.max_depth - self.min_depth) * new + self.min_depth, dim=1).values
        return new, scaled.clamp(self.min_depth, self.max_depth)


class ConditionalLogBinomial(nn.Module):
    """``ZoeDepthConditionalLogBinomialSoftmax``: per-pixel bin weights (B x n_bins x H x W)."""

    def __init__(self, cin: int, condition: int, n_bins: int, bottleneck_factor: int, min_temp: float,
                 max_temp: float) -> None:
        super().__init__()
        hidden = (cin + condition) // bottleneck_factor
        # 2 + 2 channels: the probability and the temperature, each as a normalised pair
        self.mlp = nn.Sequential(nn.Conv2d(cin + condition, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 4, 1),
                                 nn.Softplus())
        self.min_temp, self.max_temp = min_temp, max_temp
        k = torch.arange(n_bins, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("k", k, persistent=False)

    def forward(self, main: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        pt = self.mlp(torch.cat([main, condition], dim=1)) + 1e-4
        p = (pt[:, 0] / (pt[:, 0] + pt[:, 1])).unsqueeze(1)
        t = (pt[:, 2] / (pt[:, 2] + pt[:, 3])).unsqueeze(1)
        t = (self.max_temp - self.min_temp) * t + self.min_temp
        k, last = self.k, self.k[:, -1:]  # last = n_bins - 1
        log_q, log_p = torch.log((1 - p).clamp(1e-4, 1.0)), torch.log(p.clamp(1e-4, 1.0))
        y = _log_binom(last, k) + k * log_p + (last - k) * log_q
        return torch.softmax(y / t, dim=1)


def _log_binom(n: torch.Tensor, k: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """log C(n, k) by Stirling, as ``modeling_zoedepth.log_binom``."""
    n, k = n + eps, k + eps
    return n * torch.log(n) - k * torch.log(k) - (n - k) * torch.log(n - k + eps)


class MetricBinsHead(nn.Module):
    """``ZoeDepthMetricDepthEstimationHead``: one bin configuration, conditioned on the relative depth."""

    def __init__(self, bottleneck: int, features: int, relative_features: int, n_bins: int, min_depth: float,
                 max_depth: float, embedding: int = 128, attractors=(16, 8, 4, 1), normed: bool = False,
                 kind: str = "mean", min_temp: float = 0.0212, max_temp: float = 50.0) -> None:
        super().__init__()
        self.normed, self.min_depth, self.max_depth = normed, min_depth, max_depth
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 1)
        self.seed_bin_regressor = SeedBinRegressor(bottleneck, n_bins, 256, min_depth, max_depth, normed)
        self.seed_projector = Projector(bottleneck, embedding, 128)
        self.projectors = nn.ModuleList(Projector(features, embedding, 128) for _ in attractors)
        self.attractors = nn.ModuleList(Attractor(embedding, n, min_depth, max_depth, normed, kind) for n in attractors)
        self.conditional_log_binomial = ConditionalLogBinomial(relative_features + 1, embedding, n_bins, 2,
                                                               min_temp, max_temp)

    def forward(self, last: torch.Tensor, bottleneck: torch.Tensor, levels: list[torch.Tensor],
                relative: torch.Tensor) -> torch.Tensor:
        x = self.conv2(bottleneck)
        centers, embedding = _attract(self, self.seed_bin_regressor, self.attractors, x, levels)
        last = torch.cat([last, _resize(relative, last.shape[-2:])], dim=1)
        weights = self.conditional_log_binomial(last, _resize(embedding, last.shape[-2:]))
        return (weights * _resize(centers, weights.shape[-2:])).sum(dim=1, keepdim=True)


def _attract(head: nn.Module, seed: SeedBinRegressor, attractors: nn.ModuleList, x: torch.Tensor,
             levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed centres moved by the attractors, level by level: (last centres, last bin embedding)."""
    centers = seed(x)
    prev = (centers - seed.min_depth) / (seed.max_depth - seed.min_depth) if seed.normed else centers
    prev_embedding = head.seed_projector(x)
    for projector, attractor, level in zip(head.projectors, attractors, levels):
        embedding = projector(level)
        prev, centers = attractor(embedding, prev, prev_embedding)
        prev_embedding = embedding
    return centers, prev_embedding
