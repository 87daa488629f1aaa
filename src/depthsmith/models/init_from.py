"""Fine-tuning's starting point: copy the encoder (and optionally the decoder) of a saved or
published model into a freshly built one.

``model.name: init_from`` builds that fresh model with the architecture of ``model.init_from`` itself
(``init_architecture``): the zoo families (DPT / MiDaS, ZoeDepth, Depth Pro, Depth Anything) are built by
their converters from the checkpoint's tensors, with sizes no preset names, so a recipe that fine-tunes one
says "the same network" rather than spelling out its encoder and decoder arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import load_model
from .weights import WeightFileError
from ..errors import InputError

__all__ = ["init_weights_from", "init_architecture", "INIT_PARTS", "SAME_AS_INIT"]

INIT_PARTS = ("encoder", "decoder")
SAME_AS_INIT = "init_from"  # model.name: the architecture of model.init_from
# The DepthModel arguments (models/model.py) that make its architecture, input and output; not its card,
# and not encoder_weights (the weights come from init_from).
_ARCHITECTURE = ("encoder", "decoder", "encoder_kwargs", "decoder_kwargs", "input_norm", "channel_order", "output",
                 "max_depth", "min_depth", "working_size", "name")


def init_architecture(source: str | Path, overrides: dict[str, Any], **hub_kwargs: Any) -> tuple[dict[str, Any], Any]:
    """DepthModel arguments for ``model.name: init_from``: those ``source`` (a zoo id or model folder) was
    built with (what its ``save_pretrained`` would write), then the recipe's ``overrides`` (its ``output``,
    ``max_depth``, ...; ``encoder_kwargs`` / ``decoder_kwargs`` merged key by key). Also returns the loaded
    source, for ``init_weights_from(..., donor=)``: a zoo model is converted once, not once for each."""
    if not source:
        raise InputError(f"model.name: {SAME_AS_INIT} builds the architecture of model.init_from, which is not set; "
                         "give model.init_from=<zoo id or model folder>, or a preset / timm encoder as model.name.")
    donor = load_model(source, **hub_kwargs)
    built = getattr(donor, "_hub_mixin_config", None) or {}  # the __init__ arguments PyTorchModelHubMixin keeps
    config = {key: built[key] for key in _ARCHITECTURE if key in built}
    for key, value in overrides.items():
        merge = key in ("encoder_kwargs", "decoder_kwargs") and isinstance(value, dict)
        config[key] = {**config.get(key, {}), **value} if merge else value
    return config, donor


def init_weights_from(model, source: str | Path, parts=("encoder",), donor: Any = None, **hub_kwargs: Any) -> None:
    """Copy ``parts`` of a saved or published model into ``model`` (fine-tuning's starting point).

    Depth-Anything-V2's metric_depth/train.py loads only the encoder ('pretrained.*' keys) of the
    relative checkpoint and trains the DPT head from scratch; ``parts=('encoder', 'decoder')``
    starts from its DPT too. Every tensor must fit (strict), and the input normalisation must
    agree, since the copied encoder was trained with it. ``donor``: ``source`` already loaded.
    """
    unknown = sorted(set(parts) - set(INIT_PARTS))
    if unknown or not parts:
        raise InputError(f"init_parts {list(parts)} must be a non-empty list of {', '.join(INIT_PARTS)}.")
    donor = load_model(source, **hub_kwargs) if donor is None else donor
    for buffer in ("mean", "std"):
        if not torch.allclose(getattr(donor.input_norm, buffer), getattr(model.input_norm, buffer)):
            raise InputError(f"init_from {source}: its input normalisation {buffer} "
                             f"{getattr(donor.input_norm, buffer).flatten().tolist()} differs from this model's.")
    for part in parts:
        src, dst = getattr(donor, part).state_dict(), getattr(model, part).state_dict()
        for key, ref in dst.items():
            if key not in src or src[key].shape != ref.shape:
                got = "missing" if key not in src else f"shape {tuple(src[key].shape)}"
                raise WeightFileError(f"init_from {source}: {part}.{key} is {got} there, {tuple(ref.shape)} here; "
                                      "build the same encoder/decoder sizes as the checkpoint.")
        getattr(model, part).load_state_dict(src, strict=True)
