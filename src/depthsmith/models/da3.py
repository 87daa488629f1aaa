"""Depth Anything 3's monocular models (DA3Mono-Large, DA3Metric-Large) as depthsmith models.

``load_da3(folder_or_hub_id)`` reads the published layout: ``config.json`` holding ``model_name``
(the init argument of ``depth_anything_3.api.DepthAnything3``, a ``PyTorchModelHubMixin``) and
``model.safetensors`` holding that class's state dict (``model.backbone.pretrained.*``: its DINOv2;
``model.head.*``: its ``DPT``). No code of the package runs. Every tensor is shape-checked; the first
that does not fit is named with the file.

What is decided from where (reference: PyPI ``depth-anything-3`` 0.1.1):
* Which model: ``model_name``, the name of the package's config (``configs/da3mono-large.yaml``,
  ``configs/da3metric-large.yaml``). Both are a plain DINOv2 (no RoPE, QK-norm or camera token:
  ``alt_start``, ``qknorm_start``, ``rope_start`` = -1, ``cat_token`` False) and a ``DPT`` head
  with a sky head and an exp activation, so they are the Depth Anything V2 layout
  (models/da2_pth.py, whose key table is reused) plus the ``dpt_sky`` decoder. The any-view models
  ``da3-small`` and ``da3-base`` go to models/da3_anyview.py; the others (``da3-large``, ``da3-giant``,
  ``da3nested-*``) are refused by name: see ``_ANY_VIEW``.
* Sizes: from the tensors (width of ``cls_token``, widths of the head's convs); the taps are the
  config's ``out_layers`` ([4, 11, 17, 23] for ViT-L, as Depth Anything V2's; other widths, which DA3
  does not publish, take DA-V2's).
* Output kind: ``exp_depth`` (models/heads.py): depth up to scale. DA3Metric's output is
  focal-normalised: metres = focal x output / 300, the focal in pixels of the network input, averaged
  over fx and fy (``apply_metric_scaling`` in depth_anything_3/utils/alignment.py; README FAQ). The
  package itself returns the raw output when no intrinsics are known; so does this model, and
  ``metric_depth`` applies the focal.
* Position embedding: upstream's DINOv2 resamples with ``interpolate_offset=0.1``
  (depth_anything_3/model/dinov2/vision_transformer.py), ``pos_embed_offset`` in models/vit.py.
* Input: ImageNet mean / std (``InputProcessor.NORMALIZE``), timm's DINOv2 default.
* Working size: the package's default ``process_res=504`` with ``upper_bound_resize`` (the long side
  to 504, each side to the nearest multiple of 14; utils/io/input_processor.py).
* Licence: the ``license:`` of the folder's README.md (the model card); without a card, the DA3
  README's table for the published names (Mono-Large, Metric-Large: Apache-2.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, MissingInputError
from .da2_pth import _VARIANTS, _TIMM
from .hub import hub_error, read_license, resolve_folder
from .loading import ModelConfigError
from .da3_common import _B, WORKING_SIZE, DA3CheckpointError, _shape, _source_name, dinov2_dpt_kwargs, rename_checked

__all__ = ["is_da3_config", "da3_folder", "load_da3", "da3_model_kwargs", "metric_depth", "METRIC_FOCAL_SCALE"]

# depth_anything_3/utils/alignment.py apply_metric_scaling(scale_factor=300.0); README FAQ.
METRIC_FOCAL_SCALE = 300.0
# DepthAnything3Net._process_mono_sky_estimation: compute_sky_mask(threshold=0.3), torch.quantile(..., 0.99)
SKY = {"sky_threshold": 0.3, "sky_quantile": 0.99}
_KINDS = {"da3mono": "mono", "da3metric": "metric"}
_LICENSE = {"da3mono-large": "apache-2.0", "da3metric-large": "apache-2.0"}  # DA3 README "Model Cards"
_ANY_VIEW = ("of the any-view models only da3-small and da3-base are converted (models/da3_anyview.py); the "
             "larger ones (ViT-L from block 8, ViT-G with SwiGLU) and the nested model are not checked here")


def is_da3_config(config: Any) -> bool:
    """The config.json of ``depth_anything_3.api.DepthAnything3.save_pretrained``: a ``model_name``
    naming a DA3 config, and neither a transformers ``model_type`` nor a depthsmith ``encoder``."""
    return (isinstance(config, dict) and str(config.get("model_name", "")).startswith("da3")
            and "model_type" not in config and "encoder" not in config)


def da3_folder(path_or_hub_id: str | Path, **hub_kwargs: Any) -> Path | None:
    """The folder of a DA3 checkpoint (a local folder, a file in one, or a Hub id), or None."""
    path = Path(path_or_hub_id).expanduser()
    if not path.exists():
        if str(path_or_hub_id).count("/") != 1:
            return None
        from huggingface_hub import hf_hub_download

        allowed = {k: v for k, v in hub_kwargs.items() if k in ("revision", "cache_dir", "local_files_only", "token")}
        try:
            config_file = Path(hf_hub_download(str(path_or_hub_id), "config.json", **allowed))
        except Exception as err:  # noqa: BLE001 - named once here, as hf_depth_folder does
            raise hub_error(str(path_or_hub_id), err) from err
        return resolve_folder(path_or_hub_id, **hub_kwargs) if is_da3_config(_config(config_file)) else None
    folder = path.parent if path.is_file() and path.suffix == ".safetensors" else path
    return folder if is_da3_config(_config(folder / "config.json")) else None


def _config(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing or not JSON: not a DA3 folder; load_model's checks name it
        return None




def da3_model_kwargs(state: dict[str, torch.Tensor], config: dict[str, Any], folder: Path, source: str) -> dict:
    """DepthModel arguments (card included) for a DA3 monocular state dict and its config.json."""
    name = str(config["model_name"])
    kind = next((k for prefix, k in _KINDS.items() if name.startswith(prefix)), None)
    if kind is None:
        raise DA3CheckpointError(f"{folder / 'config.json'}: model_name {name!r} is a Depth Anything 3 any-view or "
                                 f"nested model; {_ANY_VIEW}. Supported: da3mono-large, da3metric-large, "
                                 "da3-small, da3-base.")
    weights = folder / "model.safetensors"
    width = _shape(state, _B + "cls_token", weights)[-1]
    if width not in _VARIANTS:
        raise DA3CheckpointError(f"{weights}: '{_B}cls_token' has width {width}; supported: "
                                 f"{', '.join(f'{w} ({v[0]})' for w, v in _VARIANTS.items())}.")
    variant, heads, taps = _VARIANTS[width]
    if _B + "camera_token" in state or _B + "blocks.0.attn.q_norm.weight" in state:
        raise DA3CheckpointError(f"{weights}: holds camera tokens or QK-norm, which only the any-view models "
                                 f"have, though config.json says {name!r}.")
    encoder_kwargs, decoder_kwargs = dinov2_dpt_kwargs(state, weights, width, heads, taps)
    encoder_kwargs["final_norm_eps"] = 1e-5  # upstream's final norm is a plain nn.LayerNorm (vit.py docstring)
    decoder_kwargs.update(SKY)
    what = ("metric, focal-normalised: metres = focal x output / 300" if kind == "metric"
            else "relative depth")
    card = {"base_model": source, "license": read_license(folder) or _LICENSE.get(name, ""), "output": "exp_depth",
            "converted_from": f"Depth Anything 3 {name} ({variant}, {what})"}
    if kind == "metric":
        card["focal_normalised"] = ("metres = focal x output / 300, the focal in pixels of the network input "
                                    "(mean of fx and fy); without intrinsics the output stays unitless")
    return dict(encoder=_TIMM[variant], decoder="dpt_sky", encoder_kwargs=encoder_kwargs,
                decoder_kwargs=decoder_kwargs, output="exp_depth", name=Path(source).name or source, card=card,
                working_size=dict(WORKING_SIZE))


def convert_da3_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                           weights: Path) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor; the message names the first key that does not fit."""
    return rename_checked(state, target, weights, _source_name,
                          "a DA3 monocular model holds a DINOv2 and a DPT head with a sky head")


def load_da3(path_or_hub_id: str | Path, map_location: str = "cpu", source: str | None = None, **hub_kwargs: Any):
    """A DepthModel with the weights of a Depth Anything 3 monocular checkpoint (folder, a file in it, or
    Hub id)."""
    from safetensors.torch import load_file

    from .da3_anyview import ANY_VIEW_MODELS, anyview_model_kwargs, convert_anyview_state_dict
    from .model import DepthModel

    folder = da3_folder(path_or_hub_id, **hub_kwargs)
    if folder is None:
        raise MissingInputError(f"{path_or_hub_id}: not a Depth Anything 3 checkpoint (config.json with a "
                                "model_name such as 'da3mono-large', and model.safetensors).")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise MissingInputError(f"{folder} has no model.safetensors, which a Depth Anything 3 checkpoint holds.")
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for truncated or corrupt files
        raise DA3CheckpointError(f"{weights}: cannot read safetensors weights ({type(err).__name__}: {err}).") from err
    config = _config(folder / "config.json")
    kwargs, convert = da3_model_kwargs, convert_da3_state_dict
    if config["model_name"] in ANY_VIEW_MODELS:  # DA3-Small / Base: their own ViT and head (da3_anyview.py)
        kwargs, convert = anyview_model_kwargs, convert_anyview_state_dict
    try:
        model = DepthModel(**kwargs(state, config, folder, source or str(path_or_hub_id)))
    except (TypeError, ValueError) as err:
        if isinstance(err, InputError):
            raise
        raise ModelConfigError(f"{folder / 'config.json'}: does not describe a buildable model ({err}).") from err
    model.load_state_dict(convert(state, model.state_dict(), weights), strict=True)
    return model.to(map_location).eval()


def metric_depth(output: torch.Tensor, focal: float | torch.Tensor) -> torch.Tensor:
    """DA3Metric's output in metres: ``focal`` (pixels of the network input, the mean of fx and fy) x
    output / 300, as ``apply_metric_scaling`` (depth_anything_3/utils/alignment.py)."""
    return output * (torch.as_tensor(focal, dtype=output.dtype) / METRIC_FOCAL_SCALE)
