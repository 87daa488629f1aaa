"""transformers ``DPTForDepthEstimation`` checkpoints (DPT / MiDaS 3.0: ``Intel/dpt-large``) as depthsmith models.

``load_hf_dpt(folder)`` reads ``config.json`` and the safetensors weights itself, as ``hf_depth``
does for Depth Anything: no transformers class is built, no remote code runs, and every tensor is
renamed, shape-checked and loaded strictly (the error names the first key that does not fit).

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

Not converted, refused by config key: other backbones (``backbone_config`` without ``is_hybrid``:
BEiT, Swin), a BiT other than the R50, and any head or reassemble layout other than DPT's.
Keys read but deliberately not loaded: ``dpt.layernorm`` (pooler only), the deepest fusion block's
``residual_layer1`` (never called), and blocks after the deepest tap.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .hf_depth import _read_json, _read_weights
from .hub import read_license, resolve_folder
from .weights import WeightFileError

__all__ = ["load_hf_dpt", "DPTConfigError"]

_VIT_NAMES = {(768, 16): "vit_base_patch16_384", (1024, 16): "vit_large_patch16_384"}
_PROCESSOR_DEFAULTS = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 384, "width": 384},
                       "keep_aspect_ratio": False, "ensure_multiple_of": 1}


class DPTConfigError(InputError):
    """A DPT config.json key whose value depthsmith cannot reproduce."""


def _refuse(where: Path, key: str, value: Any, why: str) -> None:
    raise DPTConfigError(f"{where}: {key}={value!r} cannot be converted: {why} (DPTForDepthEstimation).")


# DPT-Hybrid's BiT (transformers BitConfig as DPTConfig builds it) must be timm's R50 of
# vit_base_r50_s16_384: ResNetV2 (3, 4, 9), non-pre-activation, "same" padding, GroupNorm(32).
_BIT = {"model_type": "bit", "layer_type": "bottleneck", "global_padding": "same", "depths": [3, 4, 9],
        "hidden_sizes": [256, 512, 1024], "embedding_size": 64, "num_groups": 32, "width_factor": 1,
        "hidden_act": "relu", "embedding_dynamic_padding": True, "out_features": ["stage1", "stage2", "stage3"]}


def _check_hybrid(config: dict[str, Any], where: Path) -> None:
    bit = config.get("backbone_config") or {}
    for key, expected in _BIT.items():
        value = bit.get(key)
        value = value.lower() if isinstance(value, str) else value
        value = value[:3] if key == "hidden_sizes" and isinstance(value, list) else value
        if value != expected:
            _refuse(where, f"backbone_config.{key}", bit.get(key), f"timm's vit_base_r50_s16_384 has {expected!r}")
    checks = [("reassemble_factors", [float(f) for f in config.get("reassemble_factors", ())[2:]], [1.0, 0.5]),
              ("neck_hidden_sizes", list(config.get("neck_hidden_sizes", ()))[:2], [256, 512]),
              ("neck_ignore_stages", list(config.get("neck_ignore_stages", (0, 1))), [0, 1]),
              ("patch_size", config.get("patch_size", 16), 16),
              ("readout_type", config.get("readout_type", "project"), "project"),
              ("backbone_featmap_shape", list(config.get("backbone_featmap_shape") or [0, 1024])[1:2], [1024])]
    for key, value, expected in checks:
        if value != expected:
            _refuse(where, key, config.get(key), f"DPT-Hybrid on the R50 stem needs {expected!r} there")


def _check_layout(config: dict[str, Any], where: Path) -> None:
    backbone = config.get("backbone_config")
    if config.get("is_hybrid"):
        _check_hybrid(config, where)
    elif backbone is not None or config.get("backbone") is not None:
        kind = (backbone or {}).get("model_type", config.get("backbone"))
        _refuse(where, "backbone_config.model_type", kind, "only DPT's own ViT and ViT-hybrid backbones "
                "(is_hybrid) are supported; BEiT and Swin backbones are not")
    else:
        factors = [float(f) for f in config.get("reassemble_factors", (4, 2, 1, 0.5))]
        if factors != [4.0, 2.0, 1.0, 0.5]:
            _refuse(where, "reassemble_factors", factors, "the dpt decoder implements [4, 2, 1, 0.5] for a plain ViT")
    checks = [("head_in_index", config.get("head_in_index", -1), -1),
              ("hidden_act", config.get("hidden_act", "gelu"), "gelu"), ("num_channels", config.get("num_channels", 3), 3)]
    for key, value, expected in checks:
        if value != expected:
            _refuse(where, key, value, f"the dpt decoder implements {expected!r} only")
    if len(config.get("backbone_out_indices") or ()) != 4 or len(config.get("neck_hidden_sizes") or ()) != 4:
        _refuse(where, "backbone_out_indices", config.get("backbone_out_indices"), "four taps are needed")
    if config.get("readout_type", "project") not in ("ignore", "add", "project"):
        _refuse(where, "readout_type", config.get("readout_type"), "choose ignore, add or project")


def _processor(folder: Path) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    return {**_PROCESSOR_DEFAULTS, **(_read_json(path) if path.is_file() else {})}


def _model_kwargs(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """DepthModel arguments reproducing a DPTForDepthEstimation config (plain ViT or hybrid)."""
    where = folder / "config.json"
    _check_layout(config, where)
    hidden, patch = int(config.get("hidden_size", 768)), int(config.get("patch_size", 16))
    inner = int(config.get("intermediate_size", 3072))
    if inner % hidden:
        _refuse(where, "intermediate_size", inner, f"timm's ViT needs a whole multiple of hidden_size {hidden}")
    proc = _processor(folder)
    mean, std = (proc["image_mean"], proc["image_std"]) if proc.get("do_normalize", True) else ([0.0] * 3, [1.0] * 3)
    hybrid = bool(config.get("is_hybrid"))
    taps = [int(i) for i in config["backbone_out_indices"]][2 if hybrid else 0:]  # hybrid: 2 ResNet taps first
    encoder_kwargs = {
        "out_indices": taps, "norm": False, **({"cnn_taps": 2} if hybrid else {"patch_size": patch}),
        "readout": config.get("readout_type", "project"), "pos_embed_interpolation": "bilinear",
        "pos_embed_antialias": False, "layer_norm_eps": float(config.get("layer_norm_eps", 1e-12)),
        "pad_multiple": 2 * patch, "embed_dim": hidden, "depth": int(config.get("num_hidden_layers", 12)),
        "num_heads": int(config.get("num_attention_heads", 12)), "mlp_ratio": inner / hidden,
        "img_size": int(config.get("image_size", 384)), "qkv_bias": bool(config.get("qkv_bias", True)),
        "pretrained_cfg_overlay": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
    }
    batch_norm = bool(config.get("use_batch_norm_in_fusion_residual") or False)
    bias = config.get("use_bias_in_fusion_residual")
    decoder_kwargs = {
        "features": int(config.get("fusion_hidden_size", 256)), "head_features": 32,
        "out_channels": [int(c) for c in config.get("neck_hidden_sizes", (96, 192, 384, 768))][2 if hybrid else 0:],
        "fusion_batch_norm": batch_norm, "fusion_bias": None if bias is None else bool(bias),
        "head_projection": bool(config.get("add_projection", False)), **({"cnn_taps": 2} if hybrid else {}),
    }
    name = "vit_base_r50_s16_384" if hybrid else _VIT_NAMES.get((hidden, patch), "vit_base_patch16_384")
    return dict(encoder=name, decoder="dpt",
                encoder_kwargs=encoder_kwargs, decoder_kwargs=decoder_kwargs, output="disparity")


def working_size(folder: Path) -> dict[str, Any]:
    """The processor's resize (``DPTImageProcessor``): the size the checkpoint was made for."""
    proc = _processor(folder)
    size = proc.get("size") or {}
    return {"height": int(size.get("height", 384)), "width": int(size.get("width", 384)),
            "keep_aspect_ratio": bool(proc.get("keep_aspect_ratio")), "ensure_multiple_of": int(proc.get("ensure_multiple_of") or 1)}


# HF name -> depthsmith name. q/k/v are handled apart (concatenated into qkv).
_V = "encoder.net.vit."
_RULES = [
    (r"dpt\.embeddings\.cls_token", _V + "cls_token"),
    (r"dpt\.embeddings\.position_embeddings", _V + "pos_embed"),
    (r"dpt\.embeddings\.patch_embeddings\.projection\.(weight|bias)", _V + r"patch_embed.proj.\1"),
    (r"dpt\.encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)", _V + r"blocks.\1.norm1.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)", _V + r"blocks.\1.norm2.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", _V + r"blocks.\1.attn.proj.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", _V + r"blocks.\1.mlp.fc1.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", _V + r"blocks.\1.mlp.fc2.\2"),
    (r"neck\.reassemble_stage\.readout_projects\.(\d)\.0\.(weight|bias)", r"encoder.net.readout.\1.0.\2"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.projection\.(weight|bias)", r"decoder.reassemble.\1.project.\2"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.resize\.(weight|bias)", r"decoder.reassemble.\1.resample.\2"),
    (r"neck\.convs\.(\d)\.weight", r"decoder.layer_rn.\1.weight"),
    (r"neck\.fusion_stage\.layers\.(\d)\.projection\.(weight|bias)", r"decoder.fusion.\1.project.\2"),
    (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer([12])\.convolution([12])\.(weight|bias)",
     r"decoder.fusion.\1.res\2.conv\3.\4"),
    (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer([12])\.batch_norm([12])\."
     r"(weight|bias|running_mean|running_var|num_batches_tracked)", r"decoder.fusion.\1.res\2.bn\3.\4"),
    (r"head\.projection\.(weight|bias)", r"decoder.head.projection.\1"),
    (r"head\.head\.0\.(weight|bias)", r"decoder.head.conv1.\1"),
    (r"head\.head\.2\.(weight|bias)", r"decoder.head.conv2.\1"),
    (r"head\.head\.4\.(weight|bias)", r"decoder.head.conv3.\1"),
]
_B = _V + "patch_embed.backbone."
_RULES += [  # DPT-Hybrid: transformers BitBackbone -> timm ResNetV2, and the 1 x 1 projection to tokens
    (r"dpt\.embeddings\.backbone\.bit\.embedder\.convolution\.weight", _B + "stem.conv.weight"),
    (r"dpt\.embeddings\.backbone\.bit\.embedder\.norm\.(weight|bias)", _B + r"stem.norm.\1"),
    (r"dpt\.embeddings\.backbone\.bit\.encoder\.stages\.(\d)\.layers\.(\d+)\.(conv[123]|norm[123]|downsample\.conv"
     r"|downsample\.norm)\.(weight|bias)", _B + r"stages.\1.blocks.\2.\3.\4"),
    (r"dpt\.embeddings\.projection\.(weight|bias)", _V + r"patch_embed.proj.\1"),
]
_QKV = re.compile(r"dpt\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)")
_LAYER = re.compile(r"dpt\.encoder\.layer\.(\d+)\.")
_UNUSED = (re.compile(r"dpt\.layernorm\."), re.compile(r"neck\.fusion_stage\.layers\.0\.residual_layer1\."))


def convert_state_dict(hf: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor; the message names the first key that does not fit."""
    depth = 1 + max((int(k.split(".")[4]) for k in target if k.startswith(_V + "blocks.")), default=-1)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        layer = _LAYER.match(key)
        if any(p.match(key) for p in _UNUSED) or (layer and int(layer.group(1)) >= depth):
            continue
        match = _QKV.fullmatch(key)
        if match:
            qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)[0]] = value
            continue
        for pattern, repl in _RULES:
            if re.fullmatch(pattern, key):
                name = re.sub(pattern, repl, key)
                out[name], origin[name] = value, key
                break
        else:
            raise WeightFileError(f"{source}: checkpoint key {key!r} has no place in the depthsmith model.")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightFileError(f"{source}: layer {layer} has {sorted(parts)} of the q/k/v {kind}s, needs all three.")
        name = f"{_V}blocks.{layer}.attn.qkv.{kind}"
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        origin[name] = f"dpt.encoder.layer.{layer}.attention.attention.query/key/value.{kind}"
    for key, ref in target.items():
        if key not in out:
            raise WeightFileError(f"{source}: the checkpoint has no tensor for {key!r} of the depthsmith model.")
        if tuple(out[key].shape) != tuple(ref.shape):
            raise WeightFileError(f"{source}: checkpoint key {origin[key]!r} has shape {tuple(out[key].shape)}, but "
                                  f"{key!r} of the model built from its config.json has {tuple(ref.shape)}.")
    extra = sorted(set(out) - set(target))
    if extra:
        raise WeightFileError(f"{source}: checkpoint key {origin[extra[0]]!r} has no place in the model.")
    return out


def load_hf_dpt(path_or_hub_id: str | Path, map_location: str = "cpu", source: str | None = None, **hub_kwargs: Any):
    """A DepthModel with the weights of a transformers DPT checkpoint (folder or Hub id)."""
    from .model import DepthModel

    folder = resolve_folder(path_or_hub_id, **hub_kwargs)
    config = _read_json(folder / "config.json")
    kwargs = _model_kwargs(config, folder)
    source = source or str(path_or_hub_id)
    card = {"base_model": source, "license": read_license(folder), "output_kind": "relative inverse depth (disparity)",
            "converted_from": f"transformers {(config.get('architectures') or ['DPTForDepthEstimation'])[0]}",
            "working_size": working_size(folder)}
    model = DepthModel(name=Path(source).name or source, card=card, **kwargs)
    weights = folder / "model.safetensors"
    model.load_state_dict(convert_state_dict(_read_weights(folder), model.state_dict(), str(weights)), strict=True)
    return model.to(map_location).eval()
