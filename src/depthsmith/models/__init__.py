"""Model construction: ``create_model``, ``list_models``, ``load_model``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import timm

from .decoders import list_decoders
from .encoders import WEIGHT_CHOICES
from .model import DepthModel
from .presets import PRESET_NOTES, PRESETS
from .vit import is_plain_vit
from .weights import WeightFileError

__all__ = ["DepthModel", "create_model", "list_models", "load_model", "list_decoders", "WeightFileError"]


def list_models() -> list[str]:
    """Names of the presets. Any timm encoder name works with ``create_model`` too."""
    return sorted(PRESETS)


def create_model(
    name: str,
    decoder: str | None = None,
    encoder_weights: str | None = None,
    **overrides: Any,
) -> DepthModel:
    """Build a preset (``create_model("enc-dec-irv2")``) or any timm encoder with any
    decoder (``create_model("convnext_tiny", decoder="residual_unet")``).

    ``encoder_weights``: 'imagenet' (timm pretrained; needs the internet or the HF
    cache), None (random init, the default as in timm) or a local .safetensors/.pth
    path. ``None``-valued overrides are dropped so CLI defaults never override a
    preset's own values.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if decoder is not None:
        overrides["decoder"] = decoder
    if name in PRESETS:
        cfg = copy.deepcopy(PRESETS[name])
        for key in ("encoder_kwargs", "decoder_kwargs"):  # merge, do not replace
            if key in overrides:
                cfg[key] = {**cfg.get(key, {}), **overrides.pop(key)}
        cfg.update(overrides)
        cfg.setdefault("name", name)
    elif timm.is_model(name):
        # A plain ViT gives one-stride token grids: DPT is the decoder made for them.
        cfg = {"encoder": name, "decoder": "dpt" if is_plain_vit(name) else "unet", **overrides}
    else:
        raise ValueError(
            f"Unknown model {name!r}. Presets: {', '.join(list_models())}. "
            f"Or give any timm encoder name (timm.list_models()) with decoder= one of "
            f"{', '.join(list_decoders())}."
        )
    return DepthModel(encoder_weights=encoder_weights, **cfg)


def load_model(path_or_hub_id: str | Path, map_location: str = "cpu", **hub_kwargs: Any) -> DepthModel:
    """Rebuild a model written by ``save_pretrained`` (a local folder or a Hub repo id), or convert
    a transformers Depth Anything checkpoint (folder or Hub id; see ``models/hf_depth.py``).

    Weights come from safetensors only and every tensor must match (strict): nothing is
    unpickled, and the encoder's ImageNet weights are not fetched again.
    """
    from .hf_depth import hf_depth_folder, load_hf_depth

    hf = hf_depth_folder(path_or_hub_id, **hub_kwargs)  # a transformers checkpoint: converted
    if hf is not None:
        return load_hf_depth(hf, map_location=map_location, source=str(path_or_hub_id))
    path = Path(path_or_hub_id)
    if path.exists():
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{path} is not a saved depthsmith model: it needs config.json and model.safetensors "
                "(written by model.save_pretrained or depthsmith train)."
            )
        json.loads((path / "config.json").read_text())  # fail early, naming the file, on bad JSON
    return DepthModel.from_pretrained(
        str(path_or_hub_id), encoder_weights=None, strict=True, map_location=map_location, **hub_kwargs
    )
