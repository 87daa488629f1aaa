"""transformers ``DPTForDepthEstimation`` checkpoints (DPT / MiDaS 3.0 and 3.1: ``Intel/dpt-large``,
``Intel/dpt-hybrid-midas``, ``Intel/dpt-beit-large-512``, ``-base-384``) as depthsmith models.

``load_hf_dpt(folder)`` reads ``config.json`` and the safetensors weights itself, as ``hf_depth``
does for Depth Anything: no transformers class is built, no remote code runs, and every tensor is
renamed, shape-checked and loaded strictly (the error names the first key that does not fit;
the renaming is models/hf_dpt_keys.py).

What is reproduced (transformers ``models/dpt/modeling_dpt.py``):
* Backbone: ``DPTViTEmbeddings`` + ``DPTViTEncoder`` -> a timm ViT with a class token. The taps
  are the outputs of blocks ``backbone_out_indices`` before any final LayerNorm (``dpt.layernorm``
  only feeds the pooler, which depth estimation does not build). LayerNorm eps from the config
  (1e-12), position embedding resized bilinearly, without antialiasing (``_resize_pos_embed``).
* Readout (``readout_type`` ignore / add / project): done in the encoder, see models/vit.py.
* Neck and head: the ``dpt`` decoder (same reassemble, 3x3 convs, RefineNet fusion and head
  conv3x3 -> x2 -> conv3x3 -> ReLU -> conv1x1), with ``fusion_batch_norm`` for
  ``use_batch_norm_in_fusion_residual`` and ``head_projection`` for ``add_projection``. DPT
  doubles every fusion level, so the encoder zero-pads to an even token grid (``pad_multiple``
  = 2 x patch; the processor resizes to a multiple of 32 instead), and the crop drops the padding.
* Output: the head's final ReLU is ``output='disparity'`` (relative inverse depth).
* Input: the processor's mean / std (default 0.5, ``IMAGENET_STANDARD``) on RGB in [0, 1]; its
  working size (384, ``keep_aspect_ratio``, ``ensure_multiple_of``) goes into the card.

* Hybrid (``is_hybrid``, ``Intel/dpt-hybrid-midas``): transformers' BiT R50 stem is timm's
  ``vit_base_r50_s16_384`` ResNetV2 (weight-standardised "same" convs, GroupNorm); its stage 1 and
  2 outputs are the first two levels as they are (``cnn_taps`` in the encoder and the decoder).
* BEiT (``backbone_config.model_type: beit``, ``Intel/dpt-beit-*``): timm ``beit_*`` blocks with
  transformers' any-size relative position bias (models/beit.py); taps at BeitBackbone stages
  ``out_indices`` (stage k = block k - 1), LayerNorm eps and layer scale from ``backbone_config``.

Not converted, refused by config key: other backbones (Swin, ...), a BiT other than the R50, a BEiT
with absolute or shared position embeddings, and any head or reassemble layout other than DPT's.
Keys read but deliberately not loaded: ``dpt.layernorm`` / the BEiT ``layernorm`` (pooler only),
BEiT's ``mask_token`` (pretraining only), the deepest fusion block's ``residual_layer1`` (never
called), and blocks after the deepest tap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from .hf_depth import _read_json, _read_weights
from .hf_dpt_keys import convert_state_dict
from .hub import read_license, resolve_folder

__all__ = ["load_hf_dpt", "DPTConfigError"]

_VIT_NAMES = {(768, 16): "vit_base_patch16_384", (1024, 16): "vit_large_patch16_384"}
_BEIT_NAMES = {768: "beit_base_patch16_384", 1024: "beit_large_patch16_512"}
_PROCESSOR_DEFAULTS = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 384, "width": 384},
                       "keep_aspect_ratio": False, "ensure_multiple_of": 1}


class DPTConfigError(InputError):
    """A DPT config.json key whose value depthsmith cannot reproduce."""


# A key a config.json leaves out (or writes as null) has its transformers default: DPTConfig,
# BitConfig and BeitConfig (configuration_dpt.py, configuration_bit.py, configuration_beit.py).
_DPT_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                 "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 384, "patch_size": 16, "num_channels": 3,
                 "qkv_bias": True, "backbone_out_indices": [2, 5, 8, 11], "readout_type": "project",
                 "reassemble_factors": [4, 2, 1, 0.5], "neck_hidden_sizes": [96, 192, 384, 768],
                 "fusion_hidden_size": 256, "head_in_index": -1, "add_projection": False,
                 "backbone_featmap_shape": [1, 1024, 24, 24], "neck_ignore_stages": [0, 1]}
_BIT_DEFAULTS = {"layer_type": "preactivation", "global_padding": None, "depths": [3, 4, 6, 3],
                 "hidden_sizes": [256, 512, 1024, 2048], "embedding_size": 64, "num_groups": 32, "width_factor": 1,
                 "hidden_act": "relu", "embedding_dynamic_padding": False, "out_features": None}
_BEIT_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                  "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3,
                  "use_absolute_position_embeddings": False, "use_relative_position_bias": False,
                  "use_shared_relative_position_bias": False, "layer_scale_init_value": 0.1,
                  "reshape_hidden_states": True, "add_fpn": False}


def _with_defaults(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **{k: v for k, v in values.items() if v is not None}}


def _refuse(where: Path, key: str, value: Any, why: str) -> None:
    raise DPTConfigError(f"{where}: {key}={value!r} cannot be converted: {why} (DPTForDepthEstimation).")


# DPT-Hybrid's BiT (transformers BitConfig as DPTConfig builds it) must be timm's R50 of
# vit_base_r50_s16_384: ResNetV2 (3, 4, 9), non-pre-activation, "same" padding, GroupNorm(32).
_BIT = {"model_type": "bit", "layer_type": "bottleneck", "global_padding": "same", "depths": [3, 4, 9],
        "hidden_sizes": [256, 512, 1024], "embedding_size": 64, "num_groups": 32, "width_factor": 1,
        "hidden_act": "relu", "embedding_dynamic_padding": True, "out_features": ["stage1", "stage2", "stage3"]}


def _check_hybrid(config: dict[str, Any], where: Path) -> None:
    bit = _with_defaults(config.get("backbone_config") or {}, _BIT_DEFAULTS)
    for key, expected in _BIT.items():
        value = bit.get(key)
        value = value.lower() if isinstance(value, str) else value
        value = value[:3] if key == "hidden_sizes" and isinstance(value, list) else value
        if value != expected:
            _refuse(where, f"backbone_config.{key}", bit.get(key), f"timm's vit_base_r50_s16_384 has {expected!r}")
    checks = [("reassemble_factors", [float(f) for f in config["reassemble_factors"][2:]], [1.0, 0.5]),
              ("neck_hidden_sizes", list(config["neck_hidden_sizes"])[:2], [256, 512]),
              ("neck_ignore_stages", list(config["neck_ignore_stages"]), [0, 1]),
              ("patch_size", config["patch_size"], 16),
              ("readout_type", config["readout_type"], "project"),
              ("backbone_featmap_shape", list(config["backbone_featmap_shape"])[1:2], [1024])]
    for key, value, expected in checks:
        if value != expected:
            _refuse(where, key, config.get(key), f"DPT-Hybrid on the R50 stem needs {expected!r} there")


# DPT-BEiT's backbone (transformers BeitConfig) as timm's beit_*: per-block relative position bias only.
_BEIT = {"use_relative_position_bias": True, "use_absolute_position_embeddings": False,
         "use_shared_relative_position_bias": False, "reshape_hidden_states": False, "add_fpn": False,
         "hidden_act": "gelu", "num_channels": 3}


def _check_beit(config: dict[str, Any], where: Path) -> list[int]:
    """The BEiT block indices of the four taps (BeitBackbone stage k is the output of block k - 1)."""
    beit = config["backbone_config"]
    for key, expected in _BEIT.items():
        if beit.get(key) != expected:
            _refuse(where, f"backbone_config.{key}", beit.get(key), f"the timm BEiT encoder has {expected!r}")
    stages = beit.get("out_indices") or [int(str(s).replace("stage", "")) for s in beit.get("out_features") or ()]
    if len(stages) != 4 or min(stages) < 1:
        _refuse(where, "backbone_config.out_indices", stages, "four stages after the embeddings are needed")
    return [int(s) - 1 for s in stages]


def _backbone(config: dict[str, Any], where: Path) -> tuple[str, dict[str, Any], list[int]]:
    """Which backbone (vit / hybrid / beit), the config that describes its transformer, its block taps."""
    backbone = config.get("backbone_config")
    if config.get("is_hybrid"):
        _check_hybrid(config, where)
        return "hybrid", config, [int(i) for i in config["backbone_out_indices"]][2:]  # + 2 ResNet taps
    if backbone is not None or config.get("backbone") is not None:
        kind = (backbone or {}).get("model_type", config.get("backbone"))
        if kind != "beit":
            _refuse(where, "backbone_config.model_type", kind, "DPT's own ViT, the ViT-hybrid (is_hybrid) and BEiT "
                    "backbones are supported; Swin and others are not")
        beit = _with_defaults(backbone, _BEIT_DEFAULTS)
        return "beit", beit, _check_beit({**config, "backbone_config": beit}, where)
    return "vit", config, [int(i) for i in config["backbone_out_indices"]]


def _check_layout(config: dict[str, Any], where: Path, kind: str, taps: list[int]) -> None:
    factors = [float(f) for f in config["reassemble_factors"]]
    if kind != "hybrid" and factors != [4.0, 2.0, 1.0, 0.5]:
        _refuse(where, "reassemble_factors", factors, "the dpt decoder implements [4, 2, 1, 0.5] for a plain ViT")
    checks = [("head_in_index", config["head_in_index"], -1), ("hidden_act", config["hidden_act"], "gelu"),
              ("num_channels", config["num_channels"], 3)]
    for key, value, expected in checks:
        if value != expected:
            _refuse(where, key, value, f"the dpt decoder implements {expected!r} only")
    if len(taps) != (2 if kind == "hybrid" else 4) or len(config["neck_hidden_sizes"]) != 4:
        _refuse(where, "backbone_out_indices", config.get("backbone_out_indices"), "four taps are needed")
    if config["readout_type"] not in ("ignore", "add", "project"):
        _refuse(where, "readout_type", config.get("readout_type"), "choose ignore, add or project")


def _processor(folder: Path) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    return {**_PROCESSOR_DEFAULTS, **(_read_json(path) if path.is_file() else {})}


def _model_kwargs(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """DepthModel arguments reproducing a DPTForDepthEstimation config (plain ViT, hybrid or BEiT)."""
    where = folder / "config.json"
    config = _with_defaults(config, _DPT_DEFAULTS)
    kind, vit, taps = _backbone(config, where)
    _check_layout(config, where, kind, taps)
    hidden, patch, inner = int(vit["hidden_size"]), int(vit["patch_size"]), int(vit["intermediate_size"])
    if inner % hidden:
        _refuse(where, "intermediate_size", inner, f"timm's ViT needs a whole multiple of hidden_size {hidden}")
    proc = _processor(folder)
    mean, std = (proc["image_mean"], proc["image_std"]) if proc.get("do_normalize", True) else ([0.0] * 3, [1.0] * 3)
    hybrid = kind == "hybrid"
    encoder_kwargs = {
        "out_indices": taps, "norm": False, **({"cnn_taps": 2} if hybrid else {"patch_size": patch}),
        "readout": config["readout_type"], "pos_embed_interpolation": "bilinear",
        "pos_embed_antialias": False, "layer_norm_eps": float(vit["layer_norm_eps"]),
        "pad_multiple": 2 * patch, "embed_dim": hidden, "depth": int(vit["num_hidden_layers"]),
        "num_heads": int(vit["num_attention_heads"]), "mlp_ratio": inner / hidden,
        "img_size": int(vit["image_size"]), "qkv_bias": bool(vit.get("qkv_bias", True)),
        "pretrained_cfg_overlay": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
    }
    if kind == "beit":  # layer scale: transformers' lambda_1/2 exist only for layer_scale_init_value > 0
        scale = float(vit["layer_scale_init_value"])
        encoder_kwargs.update(qkv_bias=True, init_values=scale if scale > 0 else None)
    batch_norm = bool(config.get("use_batch_norm_in_fusion_residual") or False)
    bias = config.get("use_bias_in_fusion_residual")
    decoder_kwargs = {
        "features": int(config["fusion_hidden_size"]), "head_features": 32,
        "out_channels": [int(c) for c in config["neck_hidden_sizes"]][2 if hybrid else 0:],
        "fusion_batch_norm": batch_norm, "fusion_bias": None if bias is None else bool(bias),
        "head_projection": bool(config["add_projection"]), **({"cnn_taps": 2} if hybrid else {}),
    }
    name = {"hybrid": "vit_base_r50_s16_384", "beit": _BEIT_NAMES.get(hidden, "beit_base_patch16_384")}.get(
        kind, _VIT_NAMES.get((hidden, patch), "vit_base_patch16_384"))
    return dict(encoder=name, decoder="dpt",
                encoder_kwargs=encoder_kwargs, decoder_kwargs=decoder_kwargs, output="disparity")


def working_size(folder: Path) -> dict[str, Any]:
    """The processor's resize (``DPTImageProcessor``): the size the checkpoint was made for."""
    proc = _processor(folder)
    size = proc.get("size") or {}
    size = {"height": size, "width": size} if isinstance(size, int) else size  # older processors: one side
    return {"height": int(size.get("height", 384)), "width": int(size.get("width", 384)),
            "keep_aspect_ratio": bool(proc.get("keep_aspect_ratio")), "ensure_multiple_of": int(proc.get("ensure_multiple_of") or 1)}


def load_hf_dpt(path_or_hub_id: str | Path, map_location: str = "cpu", source: str | None = None, **hub_kwargs: Any):
    """A DepthModel with the weights of a transformers DPT checkpoint (folder or Hub id)."""
    from .hf_depth import processor_working_size
    from .model import DepthModel

    folder = resolve_folder(path_or_hub_id, **hub_kwargs)
    config = _read_json(folder / "config.json")
    kwargs = _model_kwargs(config, folder)
    source = source or str(path_or_hub_id)
    card = {"base_model": source, "license": read_license(folder), "output_kind": "relative inverse depth (disparity)",
            "converted_from": f"transformers {(config.get('architectures') or ['DPTForDepthEstimation'])[0]}",
            "working_size": working_size(folder)}
    # The processor's resize is what predict and eval resize to (DepthModel.working_size, depthsmith.resize).
    model = DepthModel(name=Path(source).name or source, card=card,
                       working_size=processor_working_size(_processor(folder)), **kwargs)
    weights = folder / "model.safetensors"
    model.load_state_dict(convert_state_dict(_read_weights(folder), model.state_dict(), str(weights)), strict=True)
    return model.to(map_location).eval()
