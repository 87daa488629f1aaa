"""ZoeDepth's metric bins head (models/decoders/zoe_bins.py, zoe_domains.py) against transformers' own
head modules at a small config: the same random weights copied in by name, the same inputs."""

from __future__ import annotations

import pytest
import torch

from depthsmith.models.decoders.zoe_bins import MetricBinsHead
from depthsmith.models.decoders.zoe_domains import MultiMetricBinsHead

transformers = pytest.importorskip("transformers")
zoe = pytest.importorskip("transformers.models.zoedepth.modeling_zoedepth")
pytestmark = pytest.mark.usefixtures("one_thread")

FEATURES, RELATIVE, EMBED = 16, 8, 32
BINS = [{"name": "nyu", "n_bins": 12, "min_depth": 1e-3, "max_depth": 10.0},
        {"name": "kitti", "n_bins": 10, "min_depth": 1e-3, "max_depth": 80.0}]


def _config(bins, centers="softplus", kind="mean"):
    return transformers.ZoeDepthConfig(
        bottleneck_features=FEATURES, fusion_hidden_size=FEATURES, num_relative_features=RELATIVE,
        bin_embedding_dim=EMBED, bin_centers_type=centers, attractor_kind=kind, bin_configurations=bins,
        num_patch_transformer_layers=4, patch_transformer_hidden_size=128,  # 128: the classifier's fixed width
        patch_transformer_intermediate_size=32, patch_transformer_num_attention_heads=4)


def _randomise(module, scale=0.3, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return module.eval()


def _inputs(batch=1, grid=(3, 4), seed=1):
    """The head's inputs at a grid: relative-head features at 16x, bottleneck at 1x, levels at 2x..16x
    (deepest first, as the fusion stage returns them), relative depth at 16x."""
    g = torch.Generator().manual_seed(seed)
    h, w = grid
    levels = [torch.randn(batch, FEATURES, h * s, w * s, generator=g) for s in (1, 2, 4, 8)]
    return dict(outconv_activation=torch.randn(batch, RELATIVE, 16 * h, 16 * w, generator=g),
                bottleneck=torch.randn(batch, FEATURES, h, w, generator=g), feature_blocks=levels,
                relative_depth=torch.rand(batch, 16 * h, 16 * w, generator=g) * 3)


def _ours(head, inputs):
    return head(inputs["outconv_activation"], inputs["bottleneck"], inputs["feature_blocks"],
                inputs["relative_depth"][:, None])


def _single(centers, kind):
    config = _config(BINS[:1], centers, kind)
    ref = _randomise(zoe.ZoeDepthMetricDepthEstimationHead(config))
    ours = MetricBinsHead(FEATURES, FEATURES, RELATIVE, 12, 1e-3, 10.0, EMBED, normed=centers == "normed", kind=kind)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours.eval()


@pytest.mark.parametrize("centers,kind", [("softplus", "mean"), ("normed", "mean"), ("softplus", "sum")])
@pytest.mark.parametrize("grid", [(3, 4), (2, 5)])
def test_single_head_matches_transformers(centers, kind, grid):
    ref, ours = _single(centers, kind)
    inputs = _inputs(grid=grid)
    with torch.no_grad():
        expected, _ = ref(**inputs)
        got = _ours(ours, inputs)
    assert got.shape == expected.shape == (1, 1, 16 * grid[0], 16 * grid[1])
    spread = expected.std().item()
    assert spread > 1e-2, "the random head's output hardly varies: the comparison would prove little"
    assert (got - expected).abs().max().item() <= 1e-4 * spread


def test_single_head_negative_control():
    ref, ours = _single("softplus", "mean")
    inputs = _inputs()
    with torch.no_grad():
        ours.attractors[3].conv2.bias[0] += 0.5  # the last attractor: the earlier ones move few centres
        expected, _ = ref(**inputs)
        assert (_ours(ours, inputs) - expected).abs().max().item() > 10 * 1e-4 * expected.std().item()


def _multi(centers="softplus"):
    ref = _randomise(zoe.ZoeDepthMultipleMetricDepthEstimationHeads(_config(BINS, centers)))
    with torch.no_grad():  # the classifier's bias centred on the test inputs' logits: the input decides
        logits = torch.cat([ref.mlp_classifier(ref.patch_transformer(ref.conv2(_inputs(seed=s)["bottleneck"]))[:, 0])
                            for s in range(12)])
        ref.mlp_classifier.linear2.bias -= logits.median(dim=0).values
    ours = MultiMetricBinsHead(FEATURES, FEATURES, RELATIVE, BINS, EMBED, normed=centers == "normed",
                               transformer=(128, 32, 4, 4))
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours.eval()


@pytest.mark.parametrize("centers", ["softplus", "normed"])
def test_two_heads_match_transformers_and_each_domain_is_taken(centers):
    ref, ours = _multi(centers)
    chosen = set()
    for seed in range(12):  # until both bin configurations have been chosen at least once
        inputs = _inputs(seed=seed)
        with torch.no_grad():
            expected, logits = ref(**inputs)
            got = _ours(ours, inputs)
        chosen.add(int(logits.argmax()))
        assert (got - expected).abs().max().item() <= 1e-4 * expected.std().item()
        if len(chosen) == 2:
            break
    assert chosen == {0, 1}, "the random classifier never picked one of the heads: widen the seeds"


def test_two_heads_choose_per_image():
    """A batch of two images that transformers would route to different heads alone: each keeps its
    own head here (transformers would take one vote for the batch)."""
    ref, ours = _multi()
    alone, picks = [], []
    for seed in range(12):
        inputs = _inputs(seed=seed)
        with torch.no_grad():
            depth, logits = ref(**inputs)
        if int(logits.argmax()) not in picks:
            picks.append(int(logits.argmax()))
            alone.append((inputs, depth))
        if len(picks) == 2:
            break
    batch = {k: (torch.cat([alone[0][0][k], alone[1][0][k]]) if k != "feature_blocks" else
                 [torch.cat([a, b]) for a, b in zip(alone[0][0][k], alone[1][0][k])]) for k in alone[0][0]}
    with torch.no_grad():
        got = _ours(ours, batch)
    for i, (_, depth) in enumerate(alone):
        assert (got[i:i + 1] - depth).abs().max().item() <= 1e-4 * depth.std().item()
