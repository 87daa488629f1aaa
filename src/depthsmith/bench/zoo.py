"""Zoo-shaped models with random weights, for benchmarking the shapes people run without their weights.

Each is a transformers model built from its config (the published checkpoint's shape), saved with
``save_pretrained`` and read back by ``depthsmith.load_model`` through the real converter
(``models/hf_depth.py``, ``models/hf_depth_pro.py``), so the benchmarked module is exactly what a
downloaded checkpoint becomes. Random weights are not trained ones: the last convolution of the head
is rescaled so the output varies across the image (with transformers' init it is nearly constant, on
which any precision looks exact), which keeps the accuracy column meaningful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["ZOO_SHAPES", "zoo_shape_folder"]

# name -> (what it is shaped like, working size)
ZOO_SHAPES = {
    "da-v2-small": ("depth-anything/Depth-Anything-V2-Small-hf: DINOv2 ViT-S/14 (384 wide, 12 layers, 6 heads) "
                    "+ DPT head (neck 48/96/192/384, fusion 64)", 518),
    "depth-pro": ("apple/DepthPro-hf: three DINOv2 ViT-L/16 at 384 (patch, image and fov encoders; "
                  "952M parameters), fusion 256, 1536 x 1536", 1536),
}


def _da_v2_small() -> tuple[Any, Any]:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    # Depth-Anything-V2-Small-hf's config.json (backbone dinov2-small, taps after blocks 3/6/9/12).
    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14,
                            image_size=518, out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
                            apply_layernorm=True, layerscale_value=1.0)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
                                 depth_estimation_type="relative")
    processor = DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                  do_pad=False, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return DepthAnythingForDepthEstimation(config).eval(), processor


def _depth_pro() -> tuple[Any, Any]:
    from transformers import DepthProConfig, DepthProForDepthEstimation, DepthProImageProcessor

    # apple/DepthPro-hf's config.json: DepthProConfig's other defaults with three ViT-L sub-models
    # (the bare defaults are ViT-B sized) and the fov model on (it scales the metric depth).
    vitl = dict(model_type="dinov2", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16,
                image_size=384, layerscale_value=1.0)
    config = DepthProConfig(use_fov_model=True, image_model_config=vitl, patch_model_config=vitl,
                            fov_model_config=vitl)
    return DepthProForDepthEstimation(config).eval(), DepthProImageProcessor()


@torch.no_grad()
def _spread_output(hf: Any, size: int, last_conv: Any) -> None:
    """Rescale the head's last convolution so the output spans about a decade across a random image."""
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = hf(pixel_values=x).predicted_depth
    spread = out.std().clamp_min(1e-12)
    last_conv.weight.mul_(0.5 / spread)
    last_conv.bias.fill_(1.0)


def zoo_shape_folder(name: str, root: str | Path) -> Path:
    """``root/name``: a transformers checkpoint folder of zoo shape ``name`` with random weights (seed 0),
    written once (a folder that has its config.json is reused)."""
    from ..errors import InputError

    if name not in ZOO_SHAPES:
        raise InputError(f"unknown zoo shape {name!r}; choose from {', '.join(ZOO_SHAPES)}")
    folder = Path(root) / name
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    hf, processor = _da_v2_small() if name == "da-v2-small" else _depth_pro()
    if name == "da-v2-small":
        _spread_output(hf, 518, hf.head.conv3)
    # Depth Pro: 1536 x 1536 through three ViT-L is minutes in fp32 on a small CPU; its head's last
    # convolution gets a positive bias so the inverse depth stays away from the clamp instead.
    else:
        with torch.no_grad():
            [m for m in hf.head.layers if isinstance(m, torch.nn.Conv2d)][-1].bias.fill_(1.0)
    tmp = folder.with_name(f".{name}.tmp")
    hf.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(folder)
    return folder
