"""The original Depth Anything V2 checkpoints (``.pth``) as depthsmith models.

``load_da2_pth(path)`` reads a ``depth_anything_v2_vit{s,b,l}.pth`` (relative) or a
``depth_anything_v2_metric_{hypersim,vkitti}_vit{s,b,l}.pth`` (metric_depth/) file with
``torch.load(weights_only=True)`` (models/weights.py: nothing but tensors is unpickled), and maps
the key layout of Depth-Anything-V2's ``DepthAnythingV2`` (``pretrained.*``: its DINOv2;
``depth_head.*``: its ``DPTHead``) onto a timm DINOv2 + the ``dpt`` decoder, as models/hf_depth.py
does for the transformers layout. Every tensor is shape-checked; the first that does not fit is
named with the file.

What is decided from where:
* Variant: the embedding width of ``pretrained.cls_token`` (384 / 768 / 1024 = vits / vitb / vitl);
  a ``vits``/``vitb``/``vitl`` in the file name must agree. Taps, head count and widths follow
  upstream ``depth_anything_v2/dpt.py`` (``intermediate_layer_idx``) and the tensors' shapes.
* Output kind: not in the weights (relative and metric files hold the same keys). Upstream's
  relative head ends in ReLU (affine-invariant disparity) -> ``output='disparity'``; metric_depth's
  ends in sigmoid x max_depth (upstream ``metric_depth/depth_anything_v2/dpt.py``) -> ``'metric'``.
  From the file name: ``hypersim`` (20 m) or ``vkitti`` (80 m) means metric, as metric_depth's
  README trains them; a name starting ``depth_anything_v2_vit`` means relative. ``output=`` and
  ``max_depth=`` override; without either and without such a name the file is refused.
* Position embedding: upstream's DINOv2 resamples with ``interpolate_offset=0.1``
  (``depth_anything_v2/dinov2.py``), which models/vit.py reproduces with ``pos_embed_offset``.
* Licence (upstream README "LICENSE"): Small Apache-2.0, Base/Large CC-BY-NC-4.0.
* Working size: upstream runs at ``input_size=518`` (short side, a multiple of 14: ``Resize(...,
  keep_aspect_ratio=True, ensure_multiple_of=14, resize_method='lower_bound')`` in ``image2tensor``):
  the model's ``working_size`` field, which predict and eval resize to.

Read but not loaded (upstream builds them and never runs them in ``forward``): DINOv2's
``mask_token`` and the deepest fusion block's ``resConfUnit1``; both are shape-checked too.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import InputError, MissingInputError
from .weights import WeightFileError, read_state_dict

__all__ = ["load_da2_pth", "DA2CheckpointError", "da2_model_kwargs"]

WORKING_SIZE = {"short_side": 518, "multiple_of": 14}
# upstream dpt.py ``intermediate_layer_idx``; heads: DINOv2's vit_small / base / large (head width 64).
_VARIANTS = {384: ("vits", 6, [2, 5, 8, 11]), 768: ("vitb", 12, [2, 5, 8, 11]), 1024: ("vitl", 16, [4, 11, 17, 23])}
_TIMM = {"vits": "vit_small_patch14_dinov2", "vitb": "vit_base_patch14_dinov2", "vitl": "vit_large_patch14_dinov2"}
_LICENSE = {"vits": "apache-2.0", "vitb": "cc-by-nc-4.0", "vitl": "cc-by-nc-4.0"}
_METRIC_DATA = {"hypersim": 20.0, "vkitti": 80.0}  # metric_depth/README.md: --max-depth 20 (indoor), 80 (outdoor)


class DA2CheckpointError(WeightFileError):
    """A .pth file that is not a Depth Anything V2 checkpoint, or whose output kind cannot be decided."""


def _variant(state: dict[str, torch.Tensor], path: Path) -> tuple[str, int, list[int]]:
    cls = state.get("pretrained.cls_token")
    if cls is None or not any(k.startswith("depth_head.") for k in state):
        raise DA2CheckpointError(
            f"{path}: not a Depth Anything V2 checkpoint (no 'pretrained.cls_token' and 'depth_head.*' keys; "
            f"first key {next(iter(state), None)!r}). load_model reads the original DA-V2 .pth files; encoder "
            "weights go to create_model(..., encoder_weights=path).")
    width = int(cls.shape[-1])
    if width not in _VARIANTS:
        raise DA2CheckpointError(f"{path}: 'pretrained.cls_token' has width {width}; supported: "
                                 f"{', '.join(f'{w} ({v[0]})' for w, v in _VARIANTS.items())} (vitg's SwiGLU is not).")
    name, heads, taps = _VARIANTS[width]
    named = re.findall(r"vit[sblg]", path.name.lower())
    if named and named[-1] != name:
        raise DA2CheckpointError(f"{path}: the file name says {named[-1]} but 'pretrained.cls_token' has width "
                                 f"{width}, which is {name}.")
    return name, heads, taps


def _output(path: Path, output: str | None, max_depth: float | None) -> dict:
    """``output`` / ``max_depth`` for DepthModel, from the overrides or else the file name."""
    stem = path.name.lower()
    data = [d for d in _METRIC_DATA if d in stem]
    if output is None:
        if data or "metric" in stem:
            output = "metric"
        elif stem.startswith("depth_anything_v2_vit"):
            output = "disparity"
        else:
            raise DA2CheckpointError(
                f"{path}: cannot tell a relative from a metric checkpoint by its name (the weights are the same "
                "layout); name it as upstream does (depth_anything_v2_vits.pth, depth_anything_v2_metric_hypersim_"
                "vits.pth) or pass output='disparity' (relative) or output='metric' with max_depth=.")
    if output == "disparity":
        if max_depth is not None:
            raise InputError(f"{path}: max_depth={max_depth} is for metric checkpoints; output='disparity' has none.")
        return {"output": "disparity"}
    if output != "metric":
        raise InputError(f"{path}: output={output!r} is not valid for a Depth Anything V2 checkpoint; "
                         "choose 'disparity' (relative, ReLU head) or 'metric' (sigmoid x max_depth).")
    if max_depth is None:
        if len(data) != 1:
            raise DA2CheckpointError(f"{path}: a metric checkpoint, but its name does not say hypersim (20 m) or "
                                     "vkitti (80 m); pass max_depth= (metres).")
        max_depth = _METRIC_DATA[data[0]]
    if isinstance(max_depth, bool) or not isinstance(max_depth, (int, float)) or not 0 < max_depth < float("inf"):
        raise InputError(f"{path}: max_depth={max_depth!r} is not valid: give the metres of the sigmoid's top (> 0).")
    return {"output": "metric", "max_depth": float(max_depth)}


def _shape(state: dict[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise DA2CheckpointError(f"{path}: no tensor {key!r}, which every Depth Anything V2 checkpoint holds.")
    return tuple(state[key].shape)


def da2_model_kwargs(state: dict[str, torch.Tensor], path: Path, output: str | None = None,
                     max_depth: float | None = None) -> dict:
    """DepthModel arguments (card included) for an upstream ``DepthAnythingV2`` state dict read from
    ``path``: sizes from its shapes, output kind from ``output`` / ``max_depth`` or the file name."""
    variant, heads, taps = _variant(state, path)
    width = int(state["pretrained.cls_token"].shape[-1])
    fc1 = _shape(state, "pretrained.blocks.0.mlp.fc1.weight", path)
    patch = _shape(state, "pretrained.patch_embed.proj.weight", path)[-1]
    tokens = _shape(state, "pretrained.pos_embed", path)[1] - 1
    grid = round(tokens ** 0.5)
    if grid * grid != tokens:
        raise DA2CheckpointError(f"{path}: 'pretrained.pos_embed' holds {tokens} patch positions, not a square grid.")
    out_channels = [_shape(state, f"depth_head.projects.{i}.weight", path)[0] for i in range(4)]
    features = _shape(state, "depth_head.scratch.layer1_rn.weight", path)[0]
    head = _shape(state, "depth_head.scratch.output_conv2.0.weight", path)[0]
    encoder_kwargs = {"out_indices": taps, "img_size": grid * patch, "patch_size": patch, "embed_dim": width,
                      "num_heads": heads, "mlp_ratio": fc1[0] / width, "init_values": 1.0, "pos_embed_offset": 0.1,
                      "depth": taps[-1] + 1}
    out = _output(path, output, max_depth)
    kind = "relative" if out["output"] == "disparity" else f"metric, max_depth {out['max_depth']:g} m"
    card = {"base_model": str(path), "license": _LICENSE[variant], "output": out["output"],
            "converted_from": f"Depth-Anything-V2 DepthAnythingV2 checkpoint {path.name} ({variant}, {kind})"}
    return dict(encoder=_TIMM[variant], decoder="dpt", encoder_kwargs=encoder_kwargs,
                decoder_kwargs={"features": features, "out_channels": out_channels, "head_features": head},
                name=path.stem, card=card, working_size=dict(WORKING_SIZE), **out)


# depthsmith name -> upstream name (upstream dpt.py / util/blocks.py). The DINOv2 names are timm's already;
# upstream's layerK_rn (K = 1..4, shallow to deep) is layer_rn.K-1; its refinenetK runs deepest first: fusion.4-K.
_V = "encoder.net.vit."
_DECODER = [
    (r"reassemble\.(\d)\.project\.", lambda m: f"projects.{m[1]}."),
    (r"reassemble\.(\d)\.resample\.", lambda m: f"resize_layers.{m[1]}."),
    (r"layer_rn\.(\d)\.", lambda m: f"scratch.layer{int(m[1]) + 1}_rn."),
    (r"fusion\.(\d)\.project\.", lambda m: f"scratch.refinenet{4 - int(m[1])}.out_conv."),
    (r"fusion\.(\d)\.res([12])\.(conv[12])\.", lambda m: f"scratch.refinenet{4 - int(m[1])}.resConfUnit{m[2]}.{m[3]}."),
    (r"head\.conv1\.", lambda m: "scratch.output_conv1."),
    (r"head\.conv2\.", lambda m: "scratch.output_conv2.0."),
    (r"head\.conv3\.", lambda m: "scratch.output_conv2.2."),
]


def _source_name(name: str) -> str:
    """The upstream key of a depthsmith parameter name."""
    if name.startswith(_V):
        return "pretrained." + name[len(_V):]
    rest = name.removeprefix("decoder.")
    for pattern, repl in _DECODER:
        match = re.match(pattern, rest)
        if match:
            return "depth_head." + repl(match) + rest[match.end():]
    raise AssertionError(f"no upstream name for {name!r}")  # the dpt decoder grew a parameter: add its rule


def convert_da2_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                           path: Path) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor of ``state``; the message names the first key that does not fit."""
    width = int(state["pretrained.cls_token"].shape[-1])
    features = int(state["depth_head.scratch.layer1_rn.weight"].shape[0])
    unused = {"pretrained.mask_token": (1, width)}  # never run (see the module docstring), still checked
    for conv in ("conv1", "conv2"):
        unit = f"depth_head.scratch.refinenet4.resConfUnit1.{conv}"
        unused.update({f"{unit}.weight": (features, features, 3, 3), f"{unit}.bias": (features,)})
    expected = {_source_name(name): name for name in target}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in unused:
            if tuple(value.shape) != unused[key]:
                raise DA2CheckpointError(f"{path}: {key!r} has shape {tuple(value.shape)}, expected {unused[key]}.")
            continue
        if key not in expected:
            raise DA2CheckpointError(f"{path}: key {key!r} has no place in the depthsmith model of this checkpoint "
                                     "(upstream DepthAnythingV2 with use_bn=False, use_clstoken=False).")
        need = tuple(target[expected[key]].shape)
        if tuple(value.shape) != need:
            raise DA2CheckpointError(f"{path}: {key!r} has shape {tuple(value.shape)}, but the model built from "
                                     f"the file's other tensors needs {need}.")
        out[expected[key]] = value
    for key, name in expected.items():
        if name not in out:
            raise DA2CheckpointError(f"{path}: no tensor {key!r} (for {name!r} of the depthsmith model).")
    return out


def load_da2_pth(path: str | Path, output: str | None = None, max_depth: float | None = None):
    """A DepthModel with the weights of an original Depth Anything V2 ``.pth`` checkpoint.

    ``output`` ('disparity' or 'metric') and ``max_depth`` (metres) override what the file name says."""
    from .model import DepthModel

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"Depth Anything V2 checkpoint {path} does not exist (or is not a file).")
    state = read_state_dict(path)
    model = DepthModel(**da2_model_kwargs(state, path, output, max_depth))
    model.load_state_dict(convert_da2_state_dict(state, model.state_dict(), path), strict=True)
    return model.eval()
