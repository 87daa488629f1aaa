"""Published Hugging Face depth checkpoints (Depth Anything V1/V2) as depthsmith models.

``load_hf_depth(folder_or_hub_id)`` reads ``config.json`` and the safetensors weights itself; no
transformers class is instantiated and no remote code is ever executed (``auto_map`` and
``trust_remote_code`` play no part). The architecture is rebuilt as a timm DINOv2 encoder +
the ``dpt`` decoder, and every tensor is mapped by name, shape-checked, and loaded strictly:
the error names the first key that does not fit.

What is reproduced, and how:
* Backbone: HF ``Dinov2Backbone`` with ``apply_layernorm`` -> timm ViT with the final norm on the
  taps; HF stage k is the output of block k-1, so ``out_indices`` shift by one. Separate q/k/v
  projections are concatenated into timm's fused ``qkv``. Both the transformers 4 names
  (``attention.attention.query``, ``attention.output.dense``) and the 5 names (``q_proj``,
  ``o_proj``) are read.
* Output kind: ``depth_estimation_type: relative`` -> ``output='disparity'`` (ReLU head; HF
  multiplies by ``max_depth``, which is folded into the last conv since relu(a l) = a relu(l));
  ``metric`` -> ``output='metric'`` with the config's ``max_depth`` (sigmoid x max_depth, as HF).
* Input normalisation: the processor's ``image_mean`` / ``image_std`` (preprocessor_config.json)
  become the encoder's timm ``pretrained_cfg`` mean/std, which ``InputNorm`` applies to RGB in
  [0, 1]; that is the processor's ``rescale_factor`` 1/255 followed by its normalisation. The
  processor's resize to a multiple of 14 is not reproduced: depthsmith pads to the multiple
  inside the model instead (see models/vit.py), so any size runs without resampling the image.
* Working size: the processor's ``size`` / ``keep_aspect_ratio`` / ``ensure_multiple_of`` become the
  model's ``working_size`` (``depthsmith.resize``), which predict and eval resize to (518 x 518, aspect
  kept, a multiple of 14 for every published Depth Anything).
* Licence: the ``license:`` of the checkpoint's README.md front matter goes into the model card.

Keys read but deliberately not loaded (each is unused by the HF forward as well): the DINOv2
``mask_token`` (masked-image pretraining only), the deepest fusion block's ``residual_layer1``
(there is no shallower-level input to it; DPT builds it and never calls it), and the blocks after
the deepest tap (the encoder is truncated there).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .hub import hub_error, read_license, resolve_folder
from .loading import ModelConfigError
from .weights import WeightFileError, check_fit

__all__ = ["UnsupportedCheckpointError", "hf_depth_folder", "is_hf_depth_config", "load_hf_depth", "read_license", "resolve_folder", "HF_MODEL_TYPES"]

HF_MODEL_TYPES = ("depth_anything",)
_DINOV2_NAMES = {384: "vit_small_patch14_dinov2", 768: "vit_base_patch14_dinov2",
                 1024: "vit_large_patch14_dinov2", 1536: "vit_giant_patch14_dinov2"}


class UnsupportedCheckpointError(InputError):
    """A transformers checkpoint whose ``model_type`` no depthsmith converter takes (the zoo's
    ``converter_present`` tells these apart from convertible folders that are broken)."""


def is_hf_depth_config(config: dict[str, Any]) -> bool:
    """A transformers config (``model_type``) rather than a depthsmith one (``encoder``/``decoder``)."""
    return "model_type" in config and "encoder" not in config


def hf_depth_folder(path_or_hub_id: str | Path, **hub_kwargs: Any) -> Path | None:
    """The folder of a transformers checkpoint, or None for anything else (a depthsmith model)."""
    path = Path(path_or_hub_id)
    if not path.exists():
        if str(path_or_hub_id).count("/") != 1:
            return None
        from huggingface_hub import hf_hub_download

        allowed = {k: v for k, v in hub_kwargs.items() if k in ("revision", "cache_dir", "local_files_only", "token")}
        try:  # only config.json first: a depthsmith repo is left to from_pretrained
            path = Path(hf_hub_download(str(path_or_hub_id), "config.json", **allowed)).parent
        except Exception as err:  # named once here (a second download would retry the same failure)
            raise hub_error(str(path_or_hub_id), err) from err
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):  # missing, not JSON, not even text (UnicodeDecodeError)
        return None  # load_model's own checks name the missing or broken file
    if not (isinstance(config, dict) and is_hf_depth_config(config)):
        return None
    return resolve_folder(path_or_hub_id, **hub_kwargs) if not Path(path_or_hub_id).exists() else path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON, or not text at all (UnicodeDecodeError)
        raise WeightFileError(f"Cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise WeightFileError(f"{path}: holds a JSON {type(data).__name__}; expected an object {{key: value}}.")
    return data


def _shard_names(index: Path) -> list[str]:
    """The shard files an index's ``weight_map`` ({tensor: file}) names, or an error naming the index."""
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise WeightFileError(f"{index}: key 'weight_map' is missing or not an object {{tensor name: shard file}}; "
                              "expected the index written by transformers' save_pretrained.")
    return sorted(set(weight_map.values()))


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    files = _shard_names(index) if index.is_file() else ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (folder / name).is_file() and index.is_file():
            raise WeightFileError(f"{folder / name}: missing, but {index} names it in its weight_map; download "
                                  "every shard the index lists.")
        if not (folder / name).is_file():
            raise WeightFileError(
                f"{folder} has no {name}: only safetensors weights are read (pytorch_model.bin is never unpickled)."
            )
        try:
            state.update(load_file(str(folder / name)))
        except Exception as err:  # safetensors raises its own error type for truncated or corrupt files
            raise WeightFileError(f"{folder / name}: cannot read safetensors weights ({type(err).__name__}: {err}).") from err
    return state


def _model_kwargs(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """DepthModel arguments reproducing a DepthAnythingForDepthEstimation config."""
    where = folder / "config.json"
    backbone = config.get("backbone_config") or {}
    if backbone.get("model_type") != "dinov2":
        raise InputError(f"{where}: backbone model_type {backbone.get('model_type')!r} is not supported (dinov2 only).")
    if backbone.get("use_swiglu_ffn"):
        raise InputError(f"{where}: SwiGLU DINOv2 (giant) backbones are not supported yet.")
    factors = [float(f) for f in config.get("reassemble_factors", (4, 2, 1, 0.5))]
    if factors != [4.0, 2.0, 1.0, 0.5] or config.get("head_in_index", -1) != -1:
        raise InputError(f"{where}: reassemble_factors {factors} / head_in_index {config.get('head_in_index')} "
                         "differ from Depth Anything's [4, 2, 1, 0.5] / -1, which the dpt decoder implements.")
    hidden = int(backbone.get("hidden_size", 768))
    if int(config.get("reassemble_hidden_size", hidden)) != hidden:
        raise InputError(f"{where}: reassemble_hidden_size != backbone hidden_size ({hidden}).")
    stages = backbone.get("out_indices") or [int(s.replace("stage", "")) for s in backbone.get("out_features", [])]
    if not stages or min(stages) < 1:
        raise InputError(f"{where}: backbone out_indices {stages} must name blocks (stage 1 = block 0).")
    if abs(float(backbone.get("layer_norm_eps", 1e-6)) - 1e-6) > 1e-12:
        raise InputError(f"{where}: layer_norm_eps {backbone.get('layer_norm_eps')} != 1e-6 (timm's ViT).")
    patch = int(backbone.get("patch_size", 14))
    image = int(backbone.get("image_size", 518))
    encoder_kwargs = {
        "out_indices": [int(s) - 1 for s in stages],
        "embed_dim": hidden, "depth": int(backbone.get("num_hidden_layers", 12)),
        "num_heads": int(backbone.get("num_attention_heads", 12)),
        "mlp_ratio": float(backbone.get("mlp_ratio", 4)), "patch_size": patch, "img_size": image,
        "qkv_bias": bool(backbone.get("qkv_bias", True)), "init_values": float(backbone.get("layerscale_value", 1.0)),
    }
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        proc = _read_json(processor)
        if proc.get("do_normalize", True) and "image_mean" in proc:
            if "image_std" not in proc:
                raise ModelConfigError(f"{processor}: has image_mean but no key 'image_std'.")
            encoder_kwargs["pretrained_cfg_overlay"] = {"mean": list(proc["image_mean"]), "std": list(proc["image_std"])}
    # No processor file: the values every published Depth Anything processor holds.
    working = processor_working_size(_read_json(processor) if processor.is_file() else _DA_PROCESSOR)
    kind = config.get("depth_estimation_type", "relative")
    if kind not in ("relative", "metric"):
        raise InputError(f"{where}: depth_estimation_type {kind!r} is neither relative nor metric.")
    out = {"output": "disparity"} if kind == "relative" else {"output": "metric", "max_depth": _max_depth(config, where)}
    return dict(
        encoder=_DINOV2_NAMES.get(hidden, "vit_small_patch14_dinov2"), decoder="dpt", encoder_kwargs=encoder_kwargs,
        decoder_kwargs={"features": int(config.get("fusion_hidden_size", 64)),
                        "out_channels": [int(c) for c in config.get("neck_hidden_sizes", (48, 96, 192, 384))],
                        "head_features": int(config.get("head_hidden_size", 32))},
        working_size=working, **out,
    )


_DA_PROCESSOR = {"size": {"height": 518, "width": 518}, "keep_aspect_ratio": True, "ensure_multiple_of": 14}


def processor_working_size(proc: dict[str, Any]) -> dict[str, Any]:
    """``working_size`` from a transformers image processor config. Depth Anything's processor is
    ``DPTImageProcessor``; a key it leaves out takes that class's default (384 x 384, aspect not
    kept, multiple of 1: transformers ``models/dpt/image_processing_dpt.py``)."""
    size = proc.get("size") or {}
    if isinstance(size, int):
        size = {"height": size, "width": size}
    spec: dict[str, Any] = {"height": int(size.get("height", 384)), "width": int(size.get("width", 384))}
    if proc.get("keep_aspect_ratio", False):
        spec["keep_aspect"] = True
    multiple = int(proc.get("ensure_multiple_of", 1) or 1)
    if multiple > 1:
        spec["multiple_of"] = multiple
    return spec


def _max_depth(config: dict[str, Any], where: Path) -> float:
    """A metric checkpoint's ``max_depth`` (metres): a finite number > 0, or an error naming the file and key."""
    value = config.get("max_depth")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelConfigError(f"{where}: key 'max_depth' is {'missing' if value is None else repr(value)}; a metric "
                               "Depth Anything config needs the largest depth in metres, a number > 0 (e.g. 20 "
                               "indoors, 80 outdoors).")
    return float(value)


# transformers Dinov2Model names (after the model's prefix) -> timm ViT names, for Depth Anything's
# "backbone." and Depth Pro's three ViTs (models/hf_depth_pro.py). q/k/v are handled apart
# (concatenated into timm's fused qkv); transformers 4 and 5 attention names are both read.
DINOV2_RULES = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.(?:o_proj|output\.dense)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
]
DINOV2_QKV = r"encoder\.layer\.(\d+)\.attention\.(?:attention\.)?(q_proj|k_proj|v_proj|query|key|value)\.(weight|bias)"
# The DPT neck, named alike in transformers' DepthAnything and DPT models (models/hf_dpt_keys.py).
DPT_NECK_RULES = [
    (r"neck\.reassemble_stage\.layers\.(\d)\.projection\.(weight|bias)", r"decoder.reassemble.\1.project.\2"),
    (r"neck\.reassemble_stage\.layers\.(\d)\.resize\.(weight|bias)", r"decoder.reassemble.\1.resample.\2"),
    (r"neck\.convs\.(\d)\.weight", r"decoder.layer_rn.\1.weight"),
    (r"neck\.fusion_stage\.layers\.(\d)\.projection\.(weight|bias)", r"decoder.fusion.\1.project.\2"),
    (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer([12])\.convolution([12])\.(weight|bias)",
     r"decoder.fusion.\1.res\2.conv\3.\4"),
]
_V = "encoder.net.vit."
_RULES = [(r"backbone\." + pattern, _V + repl) for pattern, repl in DINOV2_RULES] + DPT_NECK_RULES + [
    (r"head\.(conv[123])\.(weight|bias)", r"decoder.head.\1.\2"),
]
_QKV = re.compile(r"backbone\." + DINOV2_QKV)
_LAYER = re.compile(r"backbone\.encoder\.layer\.(\d+)\.")
_UNUSED = (re.compile(r"backbone\.embeddings\.mask_token"),
           re.compile(r"neck\.fusion_stage\.layers\.0\.residual_layer1\."))


def convert_state_dict(hf: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor; the message names the first key that does not fit."""
    depth = 1 + max((int(k.split(".")[4]) for k in target if k.startswith(_V + "blocks.")), default=-1)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in hf.items():
        layer = _LAYER.match(key)
        if any(p.match(key) for p in _UNUSED) or (layer and int(layer.group(1)) >= depth):
            continue
        match = _QKV.match(key)
        if match:
            qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)[0]] = value
            continue
        for pattern, repl in _RULES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise WeightFileError(f"{source}: checkpoint key {unknown[0]!r} has no place in the depthsmith model "
                              f"({len(unknown)} such keys).")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightFileError(f"{source}: layer {layer} has {sorted(parts)} of the q/k/v {kind}s, needs all three.")
        out[f"{_V}blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    check_fit(out, target, lambda name: source)
    return out


@contextmanager
def _named(where: Path) -> Iterator[None]:
    try:
        yield
    except InputError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
        text = f"key {err} is missing" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise ModelConfigError(text if str(where) in text else f"{where}: {text}") from err


def load_hf_depth(path_or_hub_id: str | Path, map_location: str = "cpu", source: str | None = None, **hub_kwargs: Any):
    """A DepthModel with the weights of a transformers depth checkpoint (folder or Hub id).

    ``source``: what the card names as the base model (default: ``path_or_hub_id``)."""
    from .model import DepthModel

    folder = resolve_folder(path_or_hub_id, **hub_kwargs)
    config = _read_json(folder / "config.json")
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise UnsupportedCheckpointError(
            f"{folder / 'config.json'}: model_type {model_type!r} cannot be converted; supported: "
            f"{', '.join(HF_MODEL_TYPES)} (DepthAnythingForDepthEstimation, V1 and V2, relative and metric) here, "
            "dpt (DPTForDepthEstimation) in models/hf_dpt.py, zoedepth in models/hf_zoedepth.py, "
            "depth_pro (DepthProForDepthEstimation) in models/hf_depth_pro.py."
        )
    source = source or str(path_or_hub_id)
    with _named(folder / "config.json"):  # a wrong type or an impossible value: the file and the problem
        kwargs = _model_kwargs(config, folder)
        card = {"base_model": source, "license": read_license(folder),
                "converted_from": f"transformers {config.get('architectures', ['DepthAnythingForDepthEstimation'])[0]}"}
        model = DepthModel(name=Path(source).name or source, card=card, **kwargs)
    state = convert_state_dict(_read_weights(folder), model.state_dict(), source)
    with _named(folder / "config.json"):
        scale = float(config.get("max_depth") or 1.0)
    if kwargs["output"] == "disparity" and scale != 1.0:  # HF: relu(conv3) * max_depth
        for name in ("weight", "bias"):
            state[f"decoder.head.conv3.{name}"] = state[f"decoder.head.conv3.{name}"] * scale
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
