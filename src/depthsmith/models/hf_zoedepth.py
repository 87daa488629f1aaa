"""transformers ``ZoeDepthForDepthEstimation`` checkpoints (``Intel/zoedepth-nyu``, ``-kitti``,
``-nyu-kitti``) as depthsmith models.

``load_hf_zoedepth(folder)`` reads ``config.json`` and the safetensors weights itself, as
models/hf_depth.py and models/hf_dpt.py do: no transformers class is built, no remote code runs,
every tensor is renamed, shape-checked and loaded strictly, and the error names the file and the
first checkpoint key that does not fit.

What is reproduced (transformers ``models/zoedepth/modeling_zoedepth.py``):
* Backbone and neck: ZoeDepth's are DPT-BEiT's (``BeitBackbone``, ``ZoeDepthNeck`` = ``DPTNeck``),
  so their config keys are read and checked by models/hf_dpt.py (timm BEiT blocks with the relative
  position bias resampled to each input size, the class-token readout, even token grids).
* Relative head and metric bins head: the ``zoedepth`` decoder (models/decoders/zoedepth.py,
  zoe_bins.py, zoe_domains.py). Output kind ``metric_direct``: the head computes metres itself;
  ``max_depth`` is the largest bin configuration's (10 m NYU, 80 m KITTI).
* Two bin configurations (``-nyu-kitti``): the domain classifier picks one per image (transformers
  takes one vote per batch; the same for one image; see zoe_bins.py).
* Pre- and post-processing (``ZoeDepthImageProcessor``): models/zoe_frame.py.

Refused, naming the config key: a ``bottleneck_features`` other than ``fusion_hidden_size`` (the
head's bottleneck is the neck's deepest level), ``bin_centers_type`` other than softplus / normed,
and for several bin configurations anything but two named ones with a 128-wide, at least 4-layer
patch transformer (transformers' classifier is ``Linear(128, 128)`` -> 2 and runs four layers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .hf_depth import _read_json, _read_weights
from .hf_dpt import _model_kwargs as dpt_model_kwargs
from .hf_dpt_keys import convert_state_dict as convert_dpt_keys
from .hub import read_license, resolve_folder
from .weights import WeightFileError
from .zoe_frame import PROCESSOR_DEFAULTS

__all__ = ["load_hf_zoedepth", "ZoeDepthConfigError"]


class ZoeDepthConfigError(InputError):
    """A ZoeDepth config.json key whose value depthsmith cannot reproduce."""


# ZoeDepthConfig's defaults (configuration_zoedepth.py), for keys a config.json leaves out or writes as null.
_DEFAULTS = {"readout_type": "project", "reassemble_factors": [4, 2, 1, 0.5], "neck_hidden_sizes": [96, 192, 384, 768],
             "fusion_hidden_size": 256, "head_in_index": -1, "use_batch_norm_in_fusion_residual": False,
             "num_relative_features": 32, "add_projection": False, "bottleneck_features": 256,
             "num_attractors": [16, 8, 4, 1], "bin_embedding_dim": 128, "attractor_kind": "mean", "min_temp": 0.0212,
             "max_temp": 50.0, "bin_centers_type": "softplus", "hidden_act": "gelu",
             "bin_configurations": [{"n_bins": 64, "min_depth": 0.001, "max_depth": 10.0}]}
# ZoeDepthConfig.sub_configs_defaults: the BEiT-L/16 384 a config without backbone_config gets.
_BACKBONE = {"model_type": "beit", "image_size": 384, "num_hidden_layers": 24, "hidden_size": 1024,
             "intermediate_size": 4096, "num_attention_heads": 16, "use_relative_position_bias": True,
             "reshape_hidden_states": False, "out_features": ["stage6", "stage12", "stage18", "stage24"]}
_NECK_KEYS = ("readout_type", "reassemble_factors", "neck_hidden_sizes", "fusion_hidden_size", "head_in_index",
              "use_batch_norm_in_fusion_residual", "use_bias_in_fusion_residual", "add_projection", "hidden_act")


def _refuse(where: Path, key: str, value: Any, why: str) -> None:
    raise ZoeDepthConfigError(f"{where}: {key}={value!r} cannot be converted: {why} (ZoeDepthForDepthEstimation).")


def _bins(config: dict[str, Any], where: Path) -> list[dict[str, Any]]:
    bins = config["bin_configurations"]
    if not isinstance(bins, list) or not bins:
        _refuse(where, "bin_configurations", bins, "a list of {n_bins, min_depth, max_depth} is needed")
    out = []
    for i, b in enumerate(bins):
        try:
            item = {"n_bins": int(b["n_bins"]), "min_depth": float(b["min_depth"]), "max_depth": float(b["max_depth"])}
        except (KeyError, TypeError, ValueError):
            _refuse(where, f"bin_configurations[{i}]", b, "n_bins, min_depth and max_depth are needed")
        if not 0 < item["min_depth"] < item["max_depth"] or item["n_bins"] < 2:
            _refuse(where, f"bin_configurations[{i}]", b, "0 < min_depth < max_depth and n_bins >= 2 are needed")
        if len(bins) > 1:
            item["name"] = b.get("name")
        out.append(item)
    if len(out) > 1:
        names = [b["name"] for b in out]
        if len(out) != 2 or None in names or len(set(names)) != 2:
            _refuse(where, "bin_configurations", bins, "several heads need exactly two, each with its own name "
                    "(the domain classifier has two outputs)")
        if config.get("patch_transformer_hidden_size") != 128 or (config.get("num_patch_transformer_layers") or 0) < 4:
            _refuse(where, "patch_transformer_hidden_size / num_patch_transformer_layers",
                    (config.get("patch_transformer_hidden_size"), config.get("num_patch_transformer_layers")),
                    "the domain classifier takes 128 features and the patch transformer runs four layers")
    return out


def model_kwargs(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """DepthModel arguments reproducing a ZoeDepthForDepthEstimation config."""
    where = folder / "config.json"
    config = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    backbone = config.get("backbone_config") or dict(_BACKBONE)
    dpt_config = {**{k: config[k] for k in _NECK_KEYS if k in config}, "backbone_config": backbone}
    kwargs = dpt_model_kwargs(dpt_config, folder)  # the BEiT and neck keys, checked as for DPT-BEiT
    if int(config["bottleneck_features"]) != int(config["fusion_hidden_size"]):
        _refuse(where, "bottleneck_features", config["bottleneck_features"],
                f"the metric head's bottleneck is the neck's deepest level "
                f"(fusion_hidden_size={config['fusion_hidden_size']})")
    if config["bin_centers_type"] not in ("softplus", "normed"):
        _refuse(where, "bin_centers_type", config["bin_centers_type"], "ZoeDepth's are softplus or normed")
    if config["attractor_kind"] not in ("mean", "sum"):
        _refuse(where, "attractor_kind", config["attractor_kind"], "ZoeDepth's attractors take the mean or the sum")
    if len(config["num_attractors"]) != 4:
        _refuse(where, "num_attractors", config["num_attractors"], "one count per decoder level (4) is needed")
    bins = _bins(config, where)
    decoder = {k: v for k, v in kwargs["decoder_kwargs"].items() if k not in ("head_features", "cnn_taps")}
    decoder.update(relative_features=int(config["num_relative_features"]), bins=bins,
                   embedding=int(config["bin_embedding_dim"]), attractors=[int(n) for n in config["num_attractors"]],
                   normed=config["bin_centers_type"] == "normed", kind=config["attractor_kind"],
                   min_temp=float(config["min_temp"]), max_temp=float(config["max_temp"]))
    if len(bins) > 1:
        decoder["transformer"] = [int(config["patch_transformer_hidden_size"]),
                                  int(config["patch_transformer_intermediate_size"]),
                                  int(config["patch_transformer_num_attention_heads"]),
                                  int(config["num_patch_transformer_layers"])]
    frame = frame_kwargs(folder)
    decoder["frame"] = {k: v for k, v in frame.items() if k not in ("mean", "std")}
    encoder_kwargs = {**kwargs["encoder_kwargs"], "frame": frame}  # normalises too: input_norm none (zoe_frame.py)
    return dict(encoder=kwargs["encoder"], encoder_kwargs=encoder_kwargs, decoder="zoedepth", decoder_kwargs=decoder,
                input_norm="none", output="metric_direct", min_depth=min(b["min_depth"] for b in bins),
                max_depth=max(b["max_depth"] for b in bins))


_BINOMIAL = re.compile(r"metric_head\.conditional_log_binomial\.(?:(\w+)\.)?log_binomial_transform\.(k_idx|k_minus_1)")


def _check_binomial(key: str, value: torch.Tensor, source: str) -> None:
    """``k_idx`` (0 .. n - 1) and ``k_minus_1`` (n - 1): constants the model rebuilds (zoe_bins.py)."""
    flat = value.flatten()
    ok = (torch.equal(flat.long(), torch.arange(flat.numel())) if key.endswith("k_idx")
          else flat.numel() == 1 and int(flat[0]) >= 1)
    if not ok:
        raise WeightFileError(f"{source}: checkpoint key {key!r} does not hold ZoeDepth's constant "
                              f"({'0 .. n_bins - 1' if key.endswith('k_idx') else 'n_bins - 1'}).")


def convert_state_dict(hf: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                       source: str) -> dict[str, torch.Tensor]:
    """Backbone and neck keys as DPT's (models/hf_dpt_keys.py); ``relative_head.*`` -> the dpt head's
    names, ``metric_head.*`` -> ``decoder.metric.*`` (the same names below). Every tensor shape-checked."""
    ours: dict[str, tuple[str, torch.Tensor]] = {}
    rest = {}
    for key, value in hf.items():
        if _BINOMIAL.fullmatch(key):  # LogBinomialSoftmax's constants, if a checkpoint stored them: checked
            _check_binomial(key, value, source)
        elif key.startswith("metric_head."):
            ours["decoder.metric." + key[len("metric_head."):]] = (key, value)
        elif key.startswith("relative_head."):
            ours["decoder.head." + key[len("relative_head."):]] = (key, value)
        else:
            rest[key] = value
    head = ("decoder.metric.", "decoder.head.")
    out = convert_dpt_keys(rest, {k: v for k, v in target.items() if not k.startswith(head)}, source)
    for name, (key, value) in ours.items():
        if name not in target:
            raise WeightFileError(f"{source}: checkpoint key {key!r} has no place in the depthsmith model.")
        if tuple(value.shape) != tuple(target[name].shape):
            raise WeightFileError(f"{source}: checkpoint key {key!r} has shape {tuple(value.shape)}, but {name!r} of "
                                  f"the model built from its config.json has {tuple(target[name].shape)}.")
        out[name] = value
    missing = [k for k in target if k.startswith(head) and k not in out]
    if missing:
        raise WeightFileError(f"{source}: the checkpoint has no tensor for {missing[0]!r} of the depthsmith model.")
    return out


def _processor(folder: Path) -> dict[str, Any]:
    path = folder / "preprocessor_config.json"
    return {**PROCESSOR_DEFAULTS, **(_read_json(path) if path.is_file() else {})}


def frame_kwargs(folder: Path) -> dict[str, Any]:
    """The ``frame`` option of a checkpoint folder's processor (preprocessor_config.json, else the defaults)."""
    proc = _processor(folder)
    size = proc.get("size") or {}
    size = {"height": size, "width": size} if isinstance(size, int) else size
    normalize = proc.get("do_normalize", True)
    return {"pad": bool(proc["do_pad"]), "keep_aspect_ratio": bool(proc["keep_aspect_ratio"]),
            "size": [int(size["height"]), int(size["width"])] if proc["do_resize"] else None,
            "multiple": float(proc["ensure_multiple_of"] or 1),
            "mean": [float(v) for v in proc["image_mean"]] if normalize else None,
            "std": [float(v) for v in proc["image_std"]] if normalize else None}


def working_size(folder: Path) -> dict[str, Any]:
    """The processor's resize, for the model card (the model applies it itself: see the module docstring)."""
    frame = frame_kwargs(folder)
    size = frame["size"] or [None, None]
    return {"height": size[0], "width": size[1], "keep_aspect_ratio": frame["keep_aspect_ratio"],
            "ensure_multiple_of": frame["multiple"], "reflect_pad": frame["pad"], "applied_in_model": True}


def load_hf_zoedepth(path_or_hub_id: str | Path, map_location: str = "cpu", source: str | None = None,
                     **hub_kwargs: Any):
    """A DepthModel with the weights of a transformers ZoeDepth checkpoint (folder or Hub id)."""
    from .model import DepthModel

    folder = resolve_folder(path_or_hub_id, **hub_kwargs)
    config = _read_json(folder / "config.json")
    kwargs = model_kwargs(config, folder)
    source = source or str(path_or_hub_id)
    bins = kwargs["decoder_kwargs"]["bins"]
    heads = ", ".join(f"{b.get('name', 'metric')} {b['max_depth']:g} m" for b in bins)
    card = {"base_model": source, "license": read_license(folder), "output": "metric_direct",
            "converted_from": f"transformers {(config.get('architectures') or ['ZoeDepthForDepthEstimation'])[0]} "
                              f"(BEiT + DPT neck + metric bins head: {heads})",
            "working_size": working_size(folder)}
    model = DepthModel(name=Path(source).name or source, card=card, **kwargs)
    weights = str(folder / "model.safetensors")
    model.load_state_dict(convert_state_dict(_read_weights(folder), model.state_dict(), weights), strict=True)
    return model.to(map_location).eval()
