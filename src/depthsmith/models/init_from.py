"""Fine-tuning's starting point: copy the encoder (and optionally the decoder) of a saved or
published model into a freshly built one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import load_model
from .weights import WeightFileError
from ..errors import InputError

__all__ = ["init_weights_from", "INIT_PARTS"]

INIT_PARTS = ("encoder", "decoder")


def init_weights_from(model, source: str | Path, parts=("encoder",), **hub_kwargs: Any) -> None:
    """Copy ``parts`` of a saved or published model into ``model`` (fine-tuning's starting point).

    Depth-Anything-V2's metric_depth/train.py loads only the encoder ('pretrained.*' keys) of the
    relative checkpoint and trains the DPT head from scratch; ``parts=('encoder', 'decoder')``
    starts from its DPT too. Every tensor must fit (strict), and the input normalisation must
    agree, since the copied encoder was trained with it.
    """
    unknown = sorted(set(parts) - set(INIT_PARTS))
    if unknown or not parts:
        raise InputError(f"init_parts {list(parts)} must be a non-empty list of {', '.join(INIT_PARTS)}.")
    donor = load_model(source, **hub_kwargs)
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
