"""Encoders: any timm model as a feature pyramid.

Two ways to get features out of a timm model:

* ``taps=None`` (the usual case): timm's own ``features_only=True`` wrapper with
  ``out_indices``; channels and strides come from ``feature_info``.
* ``taps=[...]``: named module outputs anywhere inside the network (for example
  ``"mixed_7a.branch2.1"``, inside Inception-ResNet-v2's Reduction-B). The model is
  traced with torch.fx and everything the taps do not need is dropped, so a truncated
  encoder really has fewer parameters. This is how the paper's encoder is built.

``include_input=True`` adds the (normalised) input image as a stride-1 "feature", the
paper's last skip connection.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import nn

from ..errors import InputError
from .beit import BeitFeatures, is_beit
from .vit import ViTFeatures, is_hybrid_vit, is_plain_vit
from .weights import load_encoder_file
from .zoe_frame import InputFrame

__all__ = ["Encoder", "WEIGHT_CHOICES", "ENCODER_KWARGS", "check_encoder_kwargs"]

WEIGHT_CHOICES = "'imagenet' (timm pretrained), None (random init) or a path to a .safetensors/.pth state dict"


# What ``encoder_kwargs`` may hold: our own options and the timm options that only shape the
# network. Anything else would reach ``timm.create_model`` unchecked, and some timm options
# open files (``checkpoint_path``, ``pretrained_cfg_overlay=dict(file=...)``): a config.json from
# the internet must not be able to make the loader read, or unpickle, an arbitrary file.
ENCODER_OWN_KWARGS = ("out_indices", "taps", "include_input", "pos_embed_antialias", "pos_embed_offset", "norm",
                      "readout", "pos_embed_interpolation", "layer_norm_eps", "final_norm_eps", "pad_multiple", "cnn_taps", "frame",
                      "any_view")
TIMM_SHAPE_KWARGS = ("output_stride", "drop_rate", "drop_path_rate", "img_size", "embed_dim", "depth", "num_heads",
                     "mlp_ratio", "patch_size", "qkv_bias", "init_values", "pretrained_cfg_overlay")
ENCODER_KWARGS = ENCODER_OWN_KWARGS + TIMM_SHAPE_KWARGS
# pretrained_cfg_overlay may only restate the input statistics (a converted checkpoint's processor
# mean / std): its file, url and hub keys would make timm fetch or read weights.
OVERLAY_KEYS = ("mean", "std", "interpolation", "crop_pct")


def check_encoder_kwargs(kwargs: dict, where: str = "encoder_kwargs") -> None:
    """Refuse any key outside ``ENCODER_KWARGS``, naming it (``where`` says which file or argument)."""
    unknown = sorted(set(kwargs) - set(ENCODER_KWARGS))
    if unknown:
        raise InputError(
            f"{where}: encoder_kwargs key(s) {unknown} are not allowed; valid keys: {', '.join(ENCODER_KWARGS)}."
        )
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    bad = sorted(set(overlay) - set(OVERLAY_KEYS)) if isinstance(overlay, dict) else ["(not a mapping)"]
    if bad:
        raise InputError(f"{where}: pretrained_cfg_overlay key(s) {bad} are not allowed; valid keys: "
                         f"{', '.join(OVERLAY_KEYS)}.")


def _check_encoder_name(name: str) -> None:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:15]
        hint = f" Similar timm names: {', '.join(close)}." if close else ""
        raise InputError(
            f"Unknown encoder {name!r}: not a timm model.{hint} "
            "See timm.list_models() for every valid name."
        )


class Encoder(nn.Module):
    """A timm network returning a list of feature maps, shallow to deep.

    Attributes ``channels`` and ``reductions`` describe the returned list (the input
    image, when included, is first with reduction 1).
    """

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        out_indices: Sequence[int] | None = None,
        taps: Sequence[str] | None = None,
        include_input: bool = False,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        _check_encoder_name(name)
        check_encoder_kwargs(timm_kwargs)
        if weights not in (None, "imagenet") and not isinstance(weights, (str, Path)):
            raise InputError(f"encoder_weights={weights!r} is not valid: use {WEIGHT_CHOICES}.")
        self.name = name
        self.include_input = include_input
        frame = timm_kwargs.pop("frame", None)  # ZoeDepth's reflect padding and working-size resize (zoe_frame.py)
        self.frame = InputFrame(**frame) if frame else None
        pretrained = weights == "imagenet"
        weight_file = None if weights in (None, "imagenet") else Path(weights)

        if taps:
            net = timm.create_model(name, pretrained=pretrained, **timm_kwargs)
            self.net = _tap_extractor(net, list(taps))
            channels, reductions = _probe_shapes(self.net, list(taps))
        elif is_plain_vit(name) or is_hybrid_vit(name) or is_beit(name):  # one-stride token grid, any size: vit.py
            features = BeitFeatures if is_beit(name) else ViTFeatures
            if timm_kwargs.get("any_view") is not None:  # Depth Anything 3's any-view ViT on one view (da3_vit.py)
                from .da3_vit import AnyViewViTFeatures as features
            self.net = features(name, pretrained, out_indices, weight_file, **timm_kwargs)
            weight_file = None  # loaded into the bare timm ViT inside
            channels, reductions = list(self.net.channels), list(self.net.reductions)
        else:
            kwargs = dict(features_only=True, pretrained=pretrained, **timm_kwargs)
            if out_indices is not None:
                kwargs["out_indices"] = tuple(out_indices)
            self.net = timm.create_model(name, **kwargs)
            channels = list(self.net.feature_info.channels())
            reductions = list(self.net.feature_info.reduction())
        if weight_file is not None:
            load_encoder_file(self.net, weight_file)

        # The data config (mean/std) timm recommends for this encoder's pretrained weights.
        self.pretrained_cfg = dict(getattr(self.net, "pretrained_cfg", None) or timm.get_pretrained_cfg(name).to_dict())
        if include_input:
            channels = [3, *channels]
            reductions = [1, *reductions]
        self.channels: list[int] = channels
        self.reductions: list[int] = reductions

    def __deepcopy__(self, memo: dict) -> "Encoder":
        # torch.fx's GraphModule.__deepcopy__ rebuilds its modules in train mode, which
        # silently changes an eval-mode copy's outputs (BatchNorm); restore every mode.
        modes = {name: m.training for name, m in self.named_modules()}
        new = Encoder.__new__(Encoder)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        for name, module in new.named_modules():
            module.training = modes.get(name, self.training)
        return new

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.frame is not None:
            x = self.frame(x)
        feats = self.net(x)
        if isinstance(feats, dict):  # fx extractor returns {tap: tensor} in tap order
            feats = list(feats.values())
        feats = list(feats)
        return [x, *feats] if self.include_input else feats


def _tap_extractor(net: nn.Module, taps: list[str]) -> nn.Module:
    """Trace ``net`` and keep only what the named module outputs depend on."""
    from timm.models import create_feature_extractor, get_graph_node_names  # public API (timm wraps torchvision's)

    try:
        return create_feature_extractor(net, return_nodes={t: t for t in taps})
    except Exception as err:  # fx raises several types for an unknown node name
        names = [n for n in get_graph_node_names(net)[1] if not n.endswith(("bn", "act"))]
        raise InputError(
            f"Cannot tap {taps} in {type(net).__name__}: {err}. "
            f"Valid tap names include: {', '.join(names[:40])} ..."
        ) from err


@torch.no_grad()
def _probe_shapes(net: nn.Module, taps: list[str], size: int = 160) -> tuple[list[int], list[int]]:
    """Channels and strides of fx taps, measured with one small dummy forward."""
    was_training = net.training
    net.eval()
    outs = net(torch.zeros(1, 3, size, size))
    net.train(was_training)
    channels = [int(outs[t].shape[1]) for t in taps]
    # Valid-padding networks (IRv2) give e.g. 79 at stride 2 of 160: round to a power of two.
    reductions = [int(2 ** round(math.log2(size / outs[t].shape[-1]))) for t in taps]  # plain floats: meta-safe
    return channels, reductions
