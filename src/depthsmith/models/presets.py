"""Named presets: the seed documents' models, and the peers they compare with.

Each preset is a ``Preset`` record: a plain dict of ``DepthModel`` arguments (no hidden state) and
its one-line note; any argument can be overridden through ``create_model(name, **overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry import Registry

__all__ = ["PRESETS", "Preset"]

# The paper's truncated Inception-ResNet-v2 (the seed paper's Table 2 and notebook; README
# "Seed fidelity"): skip taps at strides
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

@dataclass(frozen=True)
class Preset:
    """One named model: its ``DepthModel`` arguments and the line ``depthsmith models`` prints."""

    config: dict[str, Any]
    note: str


PRESETS: Registry[Preset] = Registry("preset")


def _preset(name: str, note: str, **config: Any) -> None:
    PRESETS.add(name, Preset(config, note))


_preset("enc-dec-irv2", "Paper's Enc-Dec-IRv2, truncated Inception-ResNet-v2 + U-Net decoder, the seed's tap padding "
        "(31.15M in Table 2)",
        encoder="inception_resnet_v2", decoder="unet", encoder_kwargs={"taps": IRV2_TAPS, "include_input": True},
        decoder_kwargs=SEED_DECODER, input_norm="minmax")
_preset("enc-dec-densenet201", "Paper Table 2 comparison (truncation not published; cut at stride 16)",
        encoder="densenet201", decoder="unet", encoder_kwargs=_STRIDE16, decoder_kwargs=SEED_DECODER,
        input_norm="minmax")
_preset("enc-dec-resnet152", "Paper Table 2 comparison (truncation not published; cut at stride 16)",
        encoder="resnet152", decoder="unet", encoder_kwargs=_STRIDE16, decoder_kwargs=SEED_DECODER,
        input_norm="minmax")
# timm's vgg19 features start at stride 1; index 4 is the last conv block (stride 16).
_preset("enc-dec-vgg19", "Paper Table 2 comparison (truncation not published; cut at stride 16)",
        encoder="vgg19", decoder="unet", encoder_kwargs={"out_indices": [0, 1, 2, 3, 4]},
        decoder_kwargs=SEED_DECODER, input_norm="minmax")
_preset("densedepth-densenet169", "DenseDepth (Alhashim & Wonka 2018), 42.6M, inverse-depth targets",
        encoder="densenet169", decoder="densedepth", encoder_kwargs={"taps": DENSEDEPTH_TAPS},
        decoder_kwargs={"width": 1.0}, output="inverse", min_depth=0.1)
_preset("convnext-residual-unet", "Report's final model: ConvNeXt-Tiny + residual U-Net decoder",
        encoder="convnext_tiny", decoder="residual_unet")
_preset("resnet50-residual-unet", "Report's ablation: ResNet50 + residual U-Net decoder",
        encoder="resnet50", decoder="residual_unet")
_preset("resnet50-transposed", "Report's baseline: ResNet50 + 4 transposed convs",
        encoder="resnet50", decoder="transposed", encoder_kwargs={"out_indices": [4]})

# Depth-Anything-V2 (Yang et al. 2024), its `model_configs` of run.py / metric_depth/train.py: DINOv2
# ViT-S/B/L patch 14 with DPT features 64/128/256 and the intermediate layers of
# depth_anything_v2/dpt.py (`intermediate_layer_idx`). Architecture only: encoder_weights='imagenet'
# gives timm's DINOv2 weights (lvd142m); the Depth Anything weights come from load_model(<HF id>).
# Metric output (sigmoid x max_depth) as their metric_depth models; the relative checkpoints load
# as output='disparity'.
_DA_V2 = {"small": ("vit_small_patch14_dinov2", 64, [48, 96, 192, 384], [2, 5, 8, 11], "ViT-S/14 + DPT (24.8M)"),
          "base": ("vit_base_patch14_dinov2", 128, [96, 192, 384, 768], [2, 5, 8, 11], "ViT-B/14 + DPT (97.5M)"),
          "large": ("vit_large_patch14_dinov2", 256, [256, 512, 1024, 1024], [4, 11, 17, 23],
                    "ViT-L/14 + DPT (335.3M)")}
for _size, (_vit, _features, _out, _layers, _what) in _DA_V2.items():
    _preset(f"depth-anything-v2-{_size}", f"Depth-Anything-V2-{_size.capitalize()} architecture: DINOv2 {_what}",
            encoder=_vit, decoder="dpt", encoder_kwargs={"out_indices": _layers},
            decoder_kwargs={"features": _features, "out_channels": _out}, output="metric", max_depth=20.0)
