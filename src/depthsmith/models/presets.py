"""Named presets: the seed documents' models, and the peers they compare with.

Each preset is a plain dict of ``DepthModel`` arguments (no hidden state); any key can
be overridden through ``create_model(name, **overrides)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "PRESET_NOTES"]

# The paper's truncated Inception-ResNet-v2 (field notes section 1): skip taps at strides
# 2, 4, 8 and the bottleneck inside Reduction-B (mixed_7a.branch2[1], 288 ch, stride 16);
# nothing deeper is built. The input image itself is the stride-1 skip.
IRV2_TAPS = ["conv2d_1a", "conv2d_3b", "mixed_6a.branch1.1", "mixed_7a.branch2.1"]

# DenseDepth's Keras taps, in timm's densenet169 names: conv1/relu, pool1, pool2_pool,
# pool3_pool and the final relu (bottleneck, 1664 ch).
DENSEDEPTH_TAPS = ["features.norm0", "features.pool0", "features.transition1.pool",
                   "features.transition2.pool", "features.norm5"]

# Paper Table 2 comparisons: the paper does not publish where it truncated these encoders,
# so we cut them like IRv2 (deepest feature at stride 16, input image as the first skip).
_STRIDE16 = {"out_indices": [0, 1, 2, 3], "include_input": True}

# The seed's Keras decoder, shared by the paper's Enc-Dec models: its zero-padding rule
# (UNetDecoder, align="pad") and Keras' BatchNorm defaults (eps 1e-3, momentum 0.99).
SEED_DECODER = {"filters": [256, 128, 64, 32], "align": "pad", "bn_eps": 1e-3, "bn_momentum": 0.01}

PRESETS: dict[str, dict[str, Any]] = {
    "enc-dec-irv2": dict(
        encoder="inception_resnet_v2", decoder="unet",
        encoder_kwargs={"taps": IRV2_TAPS, "include_input": True},
        decoder_kwargs=SEED_DECODER, input_norm="minmax",
    ),
    "enc-dec-densenet201": dict(
        encoder="densenet201", decoder="unet", encoder_kwargs=_STRIDE16,
        decoder_kwargs=SEED_DECODER, input_norm="minmax",
    ),
    "enc-dec-resnet152": dict(
        encoder="resnet152", decoder="unet", encoder_kwargs=_STRIDE16,
        decoder_kwargs=SEED_DECODER, input_norm="minmax",
    ),
    "enc-dec-vgg19": dict(
        # timm's vgg19 features start at stride 1; index 4 is the last conv block (stride 16).
        encoder="vgg19", decoder="unet", encoder_kwargs={"out_indices": [0, 1, 2, 3, 4]},
        decoder_kwargs=SEED_DECODER, input_norm="minmax",
    ),
    "densedepth-densenet169": dict(
        encoder="densenet169", decoder="densedepth",
        encoder_kwargs={"taps": DENSEDEPTH_TAPS}, decoder_kwargs={"width": 1.0},
        output="inverse", min_depth=0.1,
    ),
    "convnext-residual-unet": dict(encoder="convnext_tiny", decoder="residual_unet"),
    "resnet50-residual-unet": dict(encoder="resnet50", decoder="residual_unet"),
    "resnet50-transposed": dict(encoder="resnet50", decoder="transposed", encoder_kwargs={"out_indices": [4]}),
}

PRESET_NOTES: dict[str, str] = {
    "enc-dec-irv2": ("Paper's Enc-Dec-IRv2, truncated Inception-ResNet-v2 + U-Net decoder, the seed's tap padding "
                     "(31.15M in Table 2)"),
    "enc-dec-densenet201": "Paper Table 2 comparison (truncation not published; cut at stride 16)",
    "enc-dec-resnet152": "Paper Table 2 comparison (truncation not published; cut at stride 16)",
    "enc-dec-vgg19": "Paper Table 2 comparison (truncation not published; cut at stride 16)",
    "densedepth-densenet169": "DenseDepth (Alhashim & Wonka 2018), 42.6M, inverse-depth targets",
    "convnext-residual-unet": "Report's final model: ConvNeXt-Tiny + residual U-Net decoder",
    "resnet50-residual-unet": "Report's ablation: ResNet50 + residual U-Net decoder",
    "resnet50-transposed": "Report's baseline: ResNet50 + 4 transposed convs",
}
