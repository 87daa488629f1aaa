"""Transformers Depth Pro checkpoints (``DepthProForDepthEstimation``, apple/DepthPro-hf) as depthsmith models.

Read as ``hf_depth.py`` reads Depth Anything: ``config.json``, ``preprocessor_config.json`` and the
safetensors weights, by depthsmith; no transformers class is instantiated and no remote code runs.
The model is a ``DepthModel``: the patch ViT is the timm encoder (taps at ``intermediate_hook_ids``
and the last block), the ``depth_pro`` decoder holds the image and fov ViTs, the fusion decoder and
the head (models/decoders/depth_pro.py says why). Every tensor is renamed, shape-checked and loaded
strictly; the first one that does not fit is named with its file.

* Input: the processor's ``image_mean`` / ``image_std`` (``DepthProImageProcessor`` defaults 0.5 / 0.5)
  go to ``InputNorm``; its ``size`` (1536 x 1536) is the working size the decoder resizes to.
* Output: ``metric_direct``: the decoder returns metres as ``post_process_depth_estimation`` computes
  them at the input size; ``max_depth`` / ``min_depth`` are that function's clamp (1e4 m, 1e-4 m).
* Card: licence (README front matter), ``converted_from``, output kind and ``working_size``.

Read but not loaded (transformers builds them and never runs them): each Dinov2 ``mask_token``, the
first fusion layer's ``residual_layer1``, and the ``fov_model`` tensors when ``use_fov_model`` is false.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .hf_depth import _DINOV2_NAMES, DINOV2_QKV, DINOV2_RULES, _read_json, _read_weights
from .hub import read_license
from .weights import WeightFileError, check_fit
from ..errors import InputError

__all__ = ["load_hf_depth_pro", "depth_pro_kwargs", "convert_depth_pro_state"]

_CLAMP = (1e-4, 1e4)  # post_process_depth_estimation: 1 / clamp(inverse depth, 1e-4, 1e4)


def _vit_spec(sub: dict[str, Any], where: str, role: str) -> dict[str, Any]:
    """timm ViT options of a Dinov2 sub-config, refusing what timm's ViT would compute differently."""
    if sub.get("model_type") != "dinov2":
        raise InputError(f"{where}: {role} model_type {sub.get('model_type')!r} is not supported (dinov2 only).")
    if sub.get("use_swiglu_ffn") or sub.get("hidden_act", "gelu") != "gelu" or sub.get("num_register_tokens"):
        raise InputError(f"{where}: {role} must be a plain DINOv2 (GELU MLP, no SwiGLU, no register tokens).")
    if abs(float(sub.get("layer_norm_eps", 1e-6)) - 1e-6) > 1e-12:
        raise InputError(f"{where}: {role} layer_norm_eps {sub.get('layer_norm_eps')} != 1e-6 (timm's ViT).")
    return {"embed_dim": int(sub.get("hidden_size", 768)), "depth": int(sub.get("num_hidden_layers", 12)),
            "num_heads": int(sub.get("num_attention_heads", 12)), "mlp_ratio": float(sub.get("mlp_ratio", 4)),
            "patch_size": int(sub.get("patch_size", 16)), "img_size": int(sub.get("image_size", 384)),
            "qkv_bias": bool(sub.get("qkv_bias", True)), "init_values": float(sub.get("layerscale_value", 1.0))}


def _processor(folder: Path, tile: int, ratio: float) -> tuple[int, dict[str, Any]]:
    """Working size and input statistics from preprocessor_config.json (the processor's defaults without one)."""
    path = folder / "preprocessor_config.json"
    proc = _read_json(path) if path.is_file() else {}
    size = proc.get("size") or {"height": round(tile / ratio), "width": round(tile / ratio)}
    if size.get("height") != size.get("width") or not proc.get("do_resize", True):
        raise InputError(f"{path}: Depth Pro runs at a fixed square size; got size {size}, "
                         f"do_resize {proc.get('do_resize', True)}.")
    if proc.get("resample", 2) != 2 or abs(float(proc.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-12:
        raise InputError(f"{path}: resample {proc.get('resample')} / rescale_factor {proc.get('rescale_factor')} "
                         "differ from bilinear (2) / 1/255, which depthsmith reproduces.")
    mean, std = (proc.get("image_mean", [0.5] * 3), proc.get("image_std", [0.5] * 3)) if proc.get(
        "do_normalize", True) else ([0.0] * 3, [1.0] * 3)
    return int(size["height"]), {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def depth_pro_kwargs(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """DepthModel arguments reproducing a DepthProForDepthEstimation config (+ its processor)."""
    where = folder / "config.json"
    if config.get("use_batch_norm_in_fusion_residual"):
        raise InputError(f"{where}: use_batch_norm_in_fusion_residual is not supported (Depth Pro has none).")
    subs = {r: config.get(f"{r}_model_config") or {} for r in ("patch", "image", "fov")}
    patch = _vit_spec(subs["patch"], where, "patch_model_config")
    image = _vit_spec(subs["image"], where, "image_model_config")
    use_fov = bool(config.get("use_fov_model", False))
    hooks = [int(h) for h in config.get("intermediate_hook_ids", (11, 5))]
    if not hooks or max(hooks) >= patch["depth"] - 1 or min(hooks) < 0 or len(set(hooks)) != len(hooks):
        raise InputError(f"{where}: intermediate_hook_ids {hooks} must be distinct blocks before the last "
                         f"({patch['depth'] - 1}) of patch_model_config.")
    tile = int(config.get("patch_size", 384))
    if not patch["img_size"] == image["img_size"] == tile:
        raise InputError(f"{where}: patch and image ViT image_size must equal patch_size {tile}.")
    ratios = [float(r) for r in config.get("scaled_images_ratios", (0.25, 0.5, 1))]
    working, stats = _processor(folder, tile, ratios[0])
    decoder_kwargs = {
        "image_vit": image, "fov_vit": _vit_spec(subs["fov"], where, "fov_model_config") if use_fov else None,
        "hooks": hooks, "hook_features": [int(c) for c in config.get("intermediate_feature_dims", (256, 256))],
        "ratios": ratios, "overlaps": [float(o) for o in config.get("scaled_images_overlap_ratios", (0.0, 0.5, 0.25))],
        "scale_features": [int(c) for c in config.get("scaled_images_feature_dims", (1024, 1024, 512))],
        "features": int(config.get("fusion_hidden_size", 256)), "merge_padding": int(config.get("merge_padding_value", 3)),
        "fov_head_layers": int(config.get("num_fov_head_layers", 2)),
        "residual_bias": bool(config.get("use_bias_in_fusion_residual", True)), "working_size": working,
    }
    encoder_kwargs = {"out_indices": [*sorted(hooks), patch["depth"] - 1], "norm": "last",
                      "pretrained_cfg_overlay": stats, **patch}
    return dict(encoder=_DINOV2_NAMES.get(patch["embed_dim"], "vit_large_patch14_dinov2"), decoder="depth_pro",
                encoder_kwargs=encoder_kwargs, decoder_kwargs=decoder_kwargs, output="metric_direct",
                min_depth=_CLAMP[0], max_depth=_CLAMP[1])


_VITS = {"depth_pro.encoder.patch_encoder.model.": "encoder.net.vit.",
         "depth_pro.encoder.image_encoder.model.": "decoder.image_vit.",
         "fov_model.fov_encoder.model.": "decoder.fov_vit."}
_VIT_RULES = DINOV2_RULES  # Dinov2Model name -> timm name, as Depth Anything's backbone
_QKV = re.compile(DINOV2_QKV)
_NECK = "depth_pro.neck."
_RULES = [
    (_NECK + r"feature_upsample\.image_block\.layers\.0\.(weight|bias)", r"decoder.upsample_image.\1"),
    (_NECK + r"feature_upsample\.scaled_images\.(\d+)\.layers\.(\d+)\.weight", r"decoder.upsample_scales.\1.\2.weight"),
    (_NECK + r"feature_upsample\.intermediate\.(\d+)\.layers\.(\d+)\.weight", r"decoder.upsample_hooks.\1.\2.weight"),
    (_NECK + r"fuse_image_with_low_res\.(weight|bias)", r"decoder.fuse_image.\1"),
    (_NECK + r"feature_projection\.projections\.(\d+)\.weight", r"decoder.project.\1.weight"),
    (r"fusion_stage\.intermediate\.(\d+)\.residual_layer([12])\.convolution([12])\.(weight|bias)",
     r"decoder.fusion.\1.res\2.conv\3.\4"),
    (r"fusion_stage\.intermediate\.(\d+)\.(deconv)\.weight", r"decoder.fusion.\1.\2.weight"),
    (r"fusion_stage\.intermediate\.(\d+)\.projection\.(weight|bias)", r"decoder.fusion.\1.project.\2"),
    (r"fusion_stage\.final\.residual_layer([12])\.convolution([12])\.(weight|bias)", r"decoder.fusion_final.res\1.conv\2.\3"),
    (r"fusion_stage\.final\.projection\.(weight|bias)", r"decoder.fusion_final.project.\1"),
    (r"head\.layers\.(\d)\.(weight|bias)", r"decoder.head.\1.\2"),
    (r"fov_model\.fov_encoder\.neck\.(weight|bias)", r"decoder.fov_neck.\1"),
    (r"fov_model\.conv\.(weight|bias)", r"decoder.fov_conv.\1"),
    (r"fov_model\.head\.layers\.(\d)\.(weight|bias)", r"decoder.fov_head.\1.\2"),
]
_UNUSED = re.compile(r".*\.embeddings\.mask_token|fusion_stage\.intermediate\.0\.residual_layer1\.")


def _rename(key: str) -> str | None:
    for prefix, ours in _VITS.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for pattern, repl in _VIT_RULES:
                if re.fullmatch(pattern, rest):
                    return ours + re.sub(pattern, repl, rest)
            return None
    for pattern, repl in _RULES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def convert_depth_pro_state(hf: dict[str, torch.Tensor], target: dict[str, torch.Tensor], files: dict[str, Path],
                            use_fov: bool) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor; ``files`` names each checkpoint key's file for the errors."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        if _UNUSED.match(key) or (not use_fov and key.startswith("fov_model.")):
            continue
        prefix = next((p for p in _VITS if key.startswith(p)), None)
        match = _QKV.fullmatch(key[len(prefix):]) if prefix else None
        if match:
            qkv.setdefault((prefix, match.group(1), match.group(3)), {})[match.group(2)[0]] = value
            continue
        name = _rename(key)
        if name is None:
            raise WeightFileError(f"{files[key]}: checkpoint key {key!r} has no place in the depthsmith Depth Pro model.")
        out[name], origin[name] = value, key
    for (prefix, layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightFileError(f"{files[prefix]}: {prefix}encoder.layer.{layer} has {sorted(parts)} of the q/k/v "
                                  f"{kind}s, needs all three.")
        name = f"{_VITS[prefix]}blocks.{layer}.attn.qkv.{kind}"
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        origin[name] = f"{prefix}encoder.layer.{layer}.attention.q/k/v {kind}"
    check_fit(out, target, lambda name: files.get(name, files[""]), origin)
    return out


def _weight_files(folder: Path, keys: list[str]) -> dict[str, Path]:
    """Each key's safetensors file (the index's weight_map for sharded checkpoints); '' and each
    ViT prefix: the file to name when the culprit is a missing tensor or a q/k/v group."""
    index = folder / "model.safetensors.index.json"
    weight_map = _read_json(index).get("weight_map", {}) if index.is_file() else {}
    default = index if index.is_file() else folder / "model.safetensors"
    files = {k: folder / weight_map[k] if k in weight_map else default for k in keys}
    return {"": default, **{p: default for p in _VITS}, **files}


def load_hf_depth_pro(folder: Path, source: str | None = None, map_location: str = "cpu"):
    """A DepthModel with the weights of a transformers Depth Pro checkpoint folder (``source``: what
    the card names as the base model, default the folder)."""
    from .model import DepthModel

    folder, source = Path(folder), source or str(folder)
    config = _read_json(folder / "config.json")
    kwargs = depth_pro_kwargs(config, folder)
    dec = kwargs["decoder_kwargs"]
    card = {"base_model": source, "license": read_license(folder), "output": "metric_direct",
            "converted_from": f"transformers {(config.get('architectures') or ['DepthProForDepthEstimation'])[0]}",
            "working_size": {"height": dec["working_size"], "width": dec["working_size"]}}
    if dec["fov_vit"] is None:
        card["note"] = "no field-of-view model: depth assumes a focal length equal to the image width"
    model = DepthModel(name=Path(source).name or source, card=card, **kwargs)
    hf = _read_weights(folder)
    state = convert_depth_pro_state(hf, model.state_dict(), _weight_files(folder, list(hf)), dec["fov_vit"] is not None)
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
