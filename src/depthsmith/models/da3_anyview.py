"""Depth Anything 3's any-view models DA3-Small / DA3-Base (Apache-2.0), converted for single-image depth.

The published layout is the monocular models' (models/da3.py): ``config.json`` with ``model_name``
(``da3-small``, ``da3-base``: the package's configs/da3-small.yaml, da3-base.yaml) and
``model.safetensors``, the state dict of ``depth_anything_3.api.DepthAnything3``. ``load_da3`` reads
both and hands those two names here; no code of the package runs.

What one image (one view, no camera given) runs of the any-view network
(``DepthAnything3Net.forward``, depth_anything_3/model/da3.py, PyPI ``depth-anything-3`` 0.1.1):

* the backbone, a DINOv2 with RoPE, QK-norm and camera tokens from block 4 on (models/da3_vit.py):
  ``model.backbone.pretrained.*``, its ``camera_token`` included;
* the depth branch of the ``DualDPT`` head (decoders/dual_dpt.py): ``model.head.*`` except the ray
  branch (``*_aux``), whose rays only serve the camera estimate;
* the depth is ``exp`` of the first output channel (``activation="exp"``), returned as it is: the API
  resizes the image (``process_res=504``, ``upper_bound_resize``) and post-processes nothing for one
  view without extrinsics (api.py ``_align_to_input_extrinsics_intrinsics`` returns early). DualDPT
  has no sky head, so no sky fill. Output kind ``exp_depth``: depth up to scale.

Not converted, because single-image depth does not use them: the camera decoder ``model.cam_dec.*``
(pose from the camera token), the camera encoder ``model.cam_enc.*`` (only with given extrinsics), the
ray branch, and the depth confidence's meaning (its conv is kept, its output dropped). Their keys are
recognised and skipped; any other key is named as not fitting.

Sizes from the tensors: width of ``cls_token`` (384: ViT-S, 768: ViT-B), the head's widths. The taps
and the any-view block indices come from the config of ``model_name`` (both: out_layers [5, 7, 9, 11],
alt_start = qknorm_start = rope_start = 4; rope_freq: DinoVisionTransformer's default 100). DA3-Large
(ViT-L, start 8) and DA3-Giant (SwiGLU) are not converted: they have not been checked here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .da2_pth import _TIMM, _VARIANTS
from .da3_common import _B, _H, WORKING_SIZE, DA3CheckpointError, _shape, dinov2_dpt_kwargs, rename_checked
from .da3_common import _source_name as _da3_name
from .hub import read_license

__all__ = ["ANY_VIEW_MODELS", "anyview_model_kwargs", "convert_anyview_state_dict"]

# model_name -> (ViT variant, taps, any_view block indices): configs/da3-small.yaml, da3-base.yaml.
_CONFIG = {"out_layers": [5, 7, 9, 11], "any_view": {"alt_start": 4, "qknorm_start": 4, "rope_start": 4,
                                                      "rope_freq": 100.0}}
ANY_VIEW_MODELS = {"da3-small": ("vits", _CONFIG), "da3-base": ("vitb", _CONFIG)}
_LICENSE = {"da3-small": "apache-2.0", "da3-base": "apache-2.0"}  # DA3 README "Model Cards"
POS_RATIO = 0.1  # DualDPT._add_pos_embed(ratio=0.1)
# What single-image depth does not use (see the module doc): skipped, never loaded.
_UNUSED = re.compile(r"model\.(cam_dec|cam_enc)\.|model\.head\.scratch\.(refinenet\d_aux|output_conv[12]_aux)\.")


def anyview_model_kwargs(state: dict[str, torch.Tensor], config: dict[str, Any], folder: Path, source: str) -> dict:
    """DepthModel arguments (card included) for a DA3-Small / DA3-Base state dict and its config.json."""
    name = str(config["model_name"])
    variant, cfg = ANY_VIEW_MODELS[name]
    weights = folder / "model.safetensors"
    width = _shape(state, _B + "cls_token", weights)[-1]
    if _VARIANTS.get(width, ("",))[0] != variant:
        raise DA3CheckpointError(f"{weights}: '{_B}cls_token' has width {width}, but config.json's {name!r} is a "
                                 f"{variant} ({', '.join(f'{v[0]}: {w}' for w, v in _VARIANTS.items())}).")
    _shape(state, _B + "camera_token", weights)  # an any-view checkpoint has one; a monocular one does not
    taps = cfg["out_layers"]
    encoder_kwargs, decoder_kwargs = dinov2_dpt_kwargs(state, weights, width, _VARIANTS[width][1], taps)
    encoder_kwargs["any_view"] = dict(cfg["any_view"])
    decoder_kwargs = {"pos_ratio": POS_RATIO, **decoder_kwargs}
    card = {"base_model": source, "license": read_license(folder) or _LICENSE[name], "output": "exp_depth",
            "converted_from": f"Depth Anything 3 {name} ({variant}, one view: relative depth from the DualDPT "
                              "depth branch; camera decoder, ray branch and confidence not converted)"}
    return dict(encoder=_TIMM[variant], decoder="dual_dpt", encoder_kwargs=encoder_kwargs,
                decoder_kwargs=decoder_kwargs, output="exp_depth", name=Path(source).name or source, card=card,
                working_size=dict(WORKING_SIZE))


def _source_name(name: str) -> str:
    """The DA3 key of a depthsmith parameter name."""
    if name == "encoder.net.camera_token":
        return _B + "camera_token"
    if name.startswith("decoder.norm."):
        return _H + name.removeprefix("decoder.")
    return _da3_name(name)  # the DINOv2 + DPT names (models/da3.py, da2_pth.py); q_norm / k_norm are timm's


def convert_anyview_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                               weights: Path) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor that single-image depth uses; skip the camera decoder, camera
    encoder and ray branch; name the first key that fits neither."""
    return rename_checked(state, target, weights, _source_name, "a DA3 any-view model holds a DINOv2 with camera "
                          "tokens, a DualDPT head and the camera encoder / decoder", skip=_UNUSED)
