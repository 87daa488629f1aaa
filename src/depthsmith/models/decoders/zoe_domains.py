"""ZoeDepth's two-domain head (``Intel/zoedepth-nyu-kitti``): a domain classifier picks, per image,
which bin configuration (NYU indoor, 10 m; KITTI outdoor, 80 m) computes the depth. transformers
``ZoeDepthMultipleMetricDepthEstimationHeads`` / ``ZoeDepthPatchTransformerEncoder``; parameter
names are theirs. How the choice differs from transformers' per-batch vote: zoe_bins.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .zoe_bins import Attractor, ConditionalLogBinomial, Projector, SeedBinRegressor, _attract, _resize

__all__ = ["MultiMetricBinsHead", "PatchTransformer"]


class _Attention(nn.Module):
    """``ZoeDepthMultiheadAttention`` (separate q/k/v, output projection ``out_proj``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731  B x heads x L x d
        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return self.out_proj(out.transpose(1, 2).flatten(2))


class _EncoderLayer(nn.Module):
    """``ZoeDepthTransformerEncoderLayer``: post-norm, ReLU feed-forward, LayerNorm eps 1e-5."""

    def __init__(self, dim: int, inner: int, heads: int) -> None:
        super().__init__()
        self.self_attn = _Attention(dim, heads)
        self.linear1, self.linear2 = nn.Linear(dim, inner), nn.Linear(inner, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class PatchTransformer(nn.Module):
    """1x1 conv embedding of every bottleneck pixel, a zero class token in front, sinusoidal
    positions (sin block then cos block, not interleaved), four layers; the class token out."""

    RUN = 4  # transformers runs ``for i in range(4)`` whatever num_patch_transformer_layers says

    def __init__(self, cin: int, dim: int, inner: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embedding_convPxP = nn.Conv2d(cin, dim, 1)
        self.transformer_encoder = nn.ModuleList(_EncoderLayer(dim, inner, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = F.pad(self.embedding_convPxP(x).flatten(2), (1, 0)).transpose(1, 2)  # B x (1 + hw) x dim
        length, dim = tokens.shape[1], tokens.shape[2]
        position = torch.arange(length, dtype=tokens.dtype, device=tokens.device)[:, None]
        index = torch.arange(0, dim, 2, dtype=tokens.dtype, device=tokens.device)[None]
        angle = position * torch.exp(index * (-math.log(10000.0) / dim))
        tokens = tokens + torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
        for layer in self.transformer_encoder[: self.RUN]:
            tokens = layer(tokens)
        return tokens[:, 0]


class _Classifier(nn.Module):
    """``ZoeDepthMLPClassifier``: Linear, ReLU, Linear -> one logit per domain."""

    def __init__(self, dim: int, domains: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, dim), nn.Linear(dim, domains)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(x)))


class MultiMetricBinsHead(nn.Module):
    """One seed regressor, attractor stack and log-binomial per bin configuration (``bins``: dicts
    with ``name``, ``n_bins``, ``min_depth``, ``max_depth``, in the config's order: the classifier's
    logit i is configuration i); the seed projector and the level projectors are shared."""

    def __init__(self, bottleneck: int, features: int, relative_features: int, bins: list[dict], embedding: int = 128,
                 attractors=(16, 8, 4, 1), normed: bool = False, kind: str = "mean", min_temp: float = 0.0212,
                 max_temp: float = 50.0, transformer: tuple[int, int, int, int] = (128, 1024, 4, 4)) -> None:
        super().__init__()
        dim, inner, heads, layers = transformer
        self.names = [str(b["name"]) for b in bins]
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 1)
        self.patch_transformer = PatchTransformer(bottleneck, dim, inner, heads, layers)
        self.mlp_classifier = _Classifier(dim, len(bins))
        self.seed_bin_regressors = nn.ModuleDict({
            b["name"]: SeedBinRegressor(bottleneck, b["n_bins"], embedding // 2, b["min_depth"], b["max_depth"], normed)
            for b in bins})
        self.seed_projector = Projector(bottleneck, embedding, embedding // 2)
        self.projectors = nn.ModuleList(Projector(features, embedding, embedding // 2) for _ in attractors)
        # transformers passes num_attractors[i] as n_bins and leaves n_attractors at 16 (the original's
        # positional arguments): 16 attractors in every layer of these heads.
        self.attractors = nn.ModuleDict({
            b["name"]: nn.ModuleList(Attractor(embedding, 16, b["min_depth"], b["max_depth"], normed, kind)
                                     for _ in attractors) for b in bins})
        self.conditional_log_binomial = nn.ModuleDict({
            b["name"]: ConditionalLogBinomial(relative_features, embedding, b["n_bins"], 4, min_temp, max_temp)
            for b in bins})

    def domain_logits(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.mlp_classifier(self.patch_transformer(self.conv2(bottleneck)))

    def forward(self, last: torch.Tensor, bottleneck: torch.Tensor, levels: list[torch.Tensor],
                relative: torch.Tensor) -> torch.Tensor:
        x = self.conv2(bottleneck)
        choice = self.mlp_classifier(self.patch_transformer(x)).argmax(dim=1)  # per image, see zoe_bins.py
        out = torch.zeros_like(last[:, :1])
        for i, name in enumerate(self.names):
            centers, embedding = _attract(self, self.seed_bin_regressors[name], self.attractors[name], x, levels)
            centers = _resize(centers, last.shape[-2:])
            weights = self.conditional_log_binomial[name](last, _resize(embedding, last.shape[-2:]))
            depth = (weights * centers).sum(dim=1, keepdim=True)
            out = torch.where((choice == i).view(-1, 1, 1, 1), depth, out)
        return out
