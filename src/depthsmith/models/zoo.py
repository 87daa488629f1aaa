"""The pretrained model zoo: every published checkpoint depthsmith knows, and whether it loads here.

One ``ZooEntry`` per checkpoint (a Hub id or a file name). What each field holds and where it comes from:

* ``family``, ``output`` (depthsmith output kind, ``models/heads.py``), ``licence`` (the model card's
  ``license:``; the converters copy it into the converted model's card);
* ``params``: published parameter counts in millions (Depth Anything's READMEs, this README's preset
  table; ZoeDepth's 345 from ``results/*.csv``), blank where none is on record here;
* ``working_size``: the published processor's / inference code's input size (``depthsmith.resize``);
  the converter reads the real one from the checkpoint's processor config when it loads;
* ``published``: protocol -> (method, backbone) of a row of ``results/<protocol>.csv``, so every
  number shown comes with that row's source (only ZoeDepth has such rows today);
* ``loader``: how ``load_model`` takes it, checked at run time (``converter_present``): a transformers
  ``model_type`` the loader accepts, or a converter module for a file format;
* ``unsupported``: for families left out, why.

``converter_present`` asks the loader itself, so a converter merged later shows up without an edit
here. ``weights_cached`` looks in the Hugging Face cache only (never the network).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..registry import Registry

__all__ = ["ZooEntry", "ZOO", "converter_present", "weights_cached", "DEFAULT_MODEL"]

# The default of ``depthsmith predict`` without --model: small, Apache-2.0 (as transformers'
# pipeline("depth-estimation") has a default model).
DEFAULT_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"

_DA_HF = {"height": 518, "width": 518, "keep_aspect": True, "multiple_of": 14}  # their preprocessor_config.json
_DA_PTH = {"short_side": 518, "multiple_of": 14}  # upstream run.py --input-size 518, Resize(lower_bound, x14)
# Why each left-out family is left out (issue 19: do not convert what cannot be checked). Package
# availability as of the PyPI index this project installs from.
_NOT_ON_PYPI = "reference code only on GitHub, not installable from PyPI, so a conversion cannot be verified here"
_UNSUPPORTED = {
    "MoGe-2": _NOT_ON_PYPI + " (microsoft/MoGe)",
    "UniDepth": _NOT_ON_PYPI + " (lpiccinelli-eth/UniDepth)",
    "Metric3D v2": _NOT_ON_PYPI + " (YvanYin/Metric3D)",
    "Video Depth Anything": _NOT_ON_PYPI + " (DepthAnything/Video-Depth-Anything)",
    "Marigold": "a diffusion pipeline (diffusers' MarigoldDepthPipeline: iterative denoising of Stable Diffusion "
                "latents, ensembled), not one forward pass that a depthsmith model or its export can hold",
}


@dataclass(frozen=True)
class ZooEntry:
    id: str  # Hub id, or the file name of an original checkpoint
    family: str
    output: str
    licence: str = ""
    params: float | None = None  # millions, published
    working_size: dict[str, Any] | None = None
    published: dict[str, tuple[str, str]] = field(default_factory=dict)  # protocol -> results row
    loader: tuple[str, str] = ("", "")  # ("model_type", "dpt") or ("module", "depthsmith.models.da2_pth")
    download: str = ""  # where the weights come from (Hub repo, or the file's Hub repo)
    unsupported: str = ""


ZOO: Registry[ZooEntry] = Registry("zoo model")


def _add(entry: ZooEntry) -> None:
    ZOO.add(entry.id, entry)


for _size, _params, _lic in (("Small", 24.8, "apache-2.0"), ("Base", 97.5, "cc-by-nc-4.0"),
                             ("Large", 335.3, "cc-by-nc-4.0")):
    _add(ZooEntry(f"depth-anything/Depth-Anything-V2-{_size}-hf", "Depth Anything V2", "disparity", _lic, _params,
                  _DA_HF, loader=("model_type", "depth_anything")))
for _where, _depth in (("Indoor", 20), ("Outdoor", 80)):
    for _size, _params, _lic in (("Small", 24.8, "apache-2.0"), ("Base", 97.5, "cc-by-nc-4.0"),
                                 ("Large", 335.3, "cc-by-nc-4.0")):
        _add(ZooEntry(f"depth-anything/Depth-Anything-V2-Metric-{_where}-{_size}-hf",
                      f"Depth Anything V2 metric ({_depth} m)", "metric", _lic, _params, _DA_HF,
                      loader=("model_type", "depth_anything")))
for _size, _params in (("small", 24.8), ("base", 97.5), ("large", 335.3)):
    _add(ZooEntry(f"LiheYoung/depth-anything-{_size}-hf", "Depth Anything V1", "disparity", "apache-2.0", _params,
                  _DA_HF, loader=("model_type", "depth_anything")))
# The original .pth files (Depth-Anything-V2 README and metric_depth/README links).
_REPO = {"s": "Small", "b": "Base", "l": "Large"}
for _v, _params, _lic in (("s", 24.8, "apache-2.0"), ("b", 97.5, "cc-by-nc-4.0"), ("l", 335.3, "cc-by-nc-4.0")):
    _add(ZooEntry(f"depth_anything_v2_vit{_v}.pth", "Depth Anything V2 (original .pth)", "disparity", _lic, _params,
                  _DA_PTH, loader=("module", "depthsmith.models.da2_pth"),
                  download=f"depth-anything/Depth-Anything-V2-{_REPO[_v]}"))
for _data, _repo, _depth in (("hypersim", "Hypersim", 20), ("vkitti", "VKITTI", 80)):
    for _v, _params, _lic in (("s", 24.8, "apache-2.0"), ("b", 97.5, "cc-by-nc-4.0"), ("l", 335.3, "cc-by-nc-4.0")):
        _add(ZooEntry(f"depth_anything_v2_metric_{_data}_vit{_v}.pth", f"Depth Anything V2 metric ({_depth} m, .pth)",
                      "metric", _lic, _params, _DA_PTH, loader=("module", "depthsmith.models.da2_pth"),
                      download=f"depth-anything/Depth-Anything-V2-Metric-{_repo}-{_REPO[_v]}"))
for _id, _lic, _side in (("Intel/dpt-large", "apache-2.0", 384), ("Intel/dpt-hybrid-midas", "apache-2.0", 384),
                         ("Intel/dpt-beit-large-512", "mit", 512), ("Intel/dpt-beit-base-384", "mit", 384)):
    _add(ZooEntry(_id, "DPT / MiDaS 3.x", "disparity", _lic, None, {"height": _side, "width": _side},
                  loader=("model_type", "dpt")))
# ZoeDepth's converted model applies its processor's resize itself (models/hf_zoedepth.py), so its
# working_size field stays null; this is the published processor's size, for the table.
_ZOE = {"height": 384, "width": 512, "keep_aspect": True, "multiple_of": 32}
_add(ZooEntry("Intel/zoedepth-nyu", "ZoeDepth", "metric_direct", "mit", 345.0, _ZOE,
              {"nyu-eigen": ("ZoeDepth", "BEiT-L (ZoeD-M12-N)")}, loader=("model_type", "zoedepth")))
_add(ZooEntry("Intel/zoedepth-kitti", "ZoeDepth", "metric_direct", "mit", 345.0, _ZOE,
              {"kitti-garg": ("ZoeDepth", "BEiT-L (ZoeD-M12-K)")}, loader=("model_type", "zoedepth")))
_add(ZooEntry("Intel/zoedepth-nyu-kitti", "ZoeDepth", "metric_direct", "mit", None, _ZOE, loader=("model_type", "zoedepth")))
_add(ZooEntry("apple/DepthPro-hf", "Depth Pro", "metric_direct", "apple-amlr", None, {"height": 1536, "width": 1536},
              loader=("model_type", "depth_pro")))
# Depth Anything 3 (ByteDance-Seed/Depth-Anything-3 README "Model Cards": params, licences; models/da3.py).
# Its package's default input: process_res=504, upper_bound_resize (utils/io/input_processor.py). Neither
# README nor docs/BENCHMARK.md gives NYU / KITTI numbers for the monocular models, so none are shown.
_DA3 = {"long_side": 504, "multiple_of": 14}
_add(ZooEntry("depth-anything/DA3MONO-LARGE", "Depth Anything 3 mono", "exp_depth", "apache-2.0", 350.0, _DA3,
              loader=("module", "depthsmith.models.da3")))
_add(ZooEntry("depth-anything/DA3METRIC-LARGE", "Depth Anything 3 metric (metres = focal x output / 300)",
              "exp_depth", "apache-2.0", 350.0, _DA3, loader=("module", "depthsmith.models.da3")))
# The any-view models: DINOv2 with RoPE and QK-norm from a middle block on, camera tokens, alternating
# per-view / cross-view attention, a DualDPT head fed the concatenation of two token streams (depth + ray,
# with confidence) and a camera decoder (configs/da3-small.yaml and model/dinov2/vision_transformer.py).
# Small and Base are converted for single-image depth (models/da3_anyview.py: one view, the depth branch).
for _id, _params in (("DA3-SMALL", 80.0), ("DA3-BASE", 120.0)):
    _add(ZooEntry(f"depth-anything/{_id}", "Depth Anything 3 any-view (one image)", "exp_depth", "apache-2.0",
                  _params, _DA3, loader=("module", "depthsmith.models.da3_anyview")))
_LARGER = ("any-view model whose size is not converted: DA3-SMALL / DA3-BASE are (models/da3_anyview.py), but "
           "this one's ViT differs (ViT-L: any-view blocks from 8, taps 11-23; ViT-G: SwiGLU MLP) and is not "
           "checked against depth-anything-3")
for _id, _params in (("DA3-LARGE-1.1", 350.0), ("DA3-GIANT-1.1", 1150.0)):
    _add(ZooEntry(f"depth-anything/{_id}", "Depth Anything 3 any-view", "-", "cc-by-nc-4.0", _params,
                  unsupported=_LARGER))
_add(ZooEntry("depth-anything/DA3NESTED-GIANT-LARGE-1.1", "Depth Anything 3 nested", "-", "cc-by-nc-4.0", 1400.0,
              unsupported="an any-view giant model scaled by DA3Metric-Large through least squares on its own "
                          "camera estimate; neither the giant any-view model nor the camera decoder is converted"))
for _family, _why in _UNSUPPORTED.items():
    _add(ZooEntry(_family, _family, "-", unsupported=_why))


def _hf_loader_accepts(model_type: str) -> bool:
    """Does ``load_model`` convert a transformers folder of this ``model_type``? Asked of the loader
    itself: a config.json with only that ``model_type`` goes through ``load_model``, which refuses
    an unknown type by name (``UnsupportedCheckpointError`` or a "cannot be converted" message from
    ``hf_depth``) and fails on anything else (missing keys, no weights) for a type it knows."""
    from . import load_model
    from .hf_depth import UnsupportedCheckpointError

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps({"model_type": model_type}))
        try:
            # On the meta device: a converter that takes the folder builds its default-sized model
            # (a BEiT-L for ZoeDepth) before it misses the weights; that took seconds per entry.
            with torch.device("meta"):
                load_model(folder)
        except UnsupportedCheckpointError:
            return False
        except Exception as err:  # noqa: BLE001 - any other failure means a converter took the folder
            return "cannot be converted" not in str(err)
    return True


def converter_present(entry: ZooEntry) -> bool:
    """True when this installation converts the entry (the loader accepts its model_type, or its
    converter module is there); False for unsupported families and converters not written yet."""
    kind, name = entry.loader
    if entry.unsupported or not kind:
        return False
    if kind == "module":
        return importlib.util.find_spec(name) is not None
    return _hf_loader_accepts(name)


def weights_cached(entry: ZooEntry) -> bool:
    """True when the entry's weights are in the local Hugging Face cache (no network is used)."""
    from huggingface_hub import try_to_load_from_cache

    repo, filename = (entry.download, entry.id) if entry.id.endswith(".pth") else (entry.id, "config.json")
    if not repo:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo, filename), str)
    except Exception:  # noqa: BLE001 - an unreadable cache is an empty one here
        return False
