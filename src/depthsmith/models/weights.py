"""Reading state dicts from local files, safely (no arbitrary unpickling).

Reading is timm's ``load_state_dict``: safetensors or ``torch.load(weights_only=True)``, the
EMA / ``state_dict`` / ``model`` nesting of training checkpoints, and ``clean_state_dict`` for the
DDP / torch.compile prefixes. What is ours, and why:

* errors that name the file (timm raises a bare ``FileNotFoundError()`` and torch's key lists);
* the wrappers timm does not strip (``model.`` of a LightningModule, ``encoder.net.`` of a
  depthsmith model) and nestings it does not know (``model_state_dict``, ``ema``);
* the fit check. Not ``timm.create_model(pretrained_cfg_overlay=dict(file=...))``: for a
  ``features_only`` encoder timm loads non-strictly, so a file lacking tensors leaves them at
  random init with only a log line (checked with timm 1.0); every tensor must come from the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models import load_state_dict as timm_load_state_dict
from torch import nn

from ..errors import InputError

__all__ = ["read_state_dict", "load_encoder_file", "WeightFileError", "NonFiniteWeightsError", "check_finite",
           "check_fit"]

# Wrappers that training code puts around a model, in any order (timm strips DDP / compile only at the start).
_PREFIXES = ("module.", "_orig_mod.", "model.", "encoder.net.", "net.")
_NESTED = ("model_state_dict", "ema")  # timm unwraps state_dict_ema, model_ema, state_dict and model


class WeightFileError(InputError):
    """A weight file that cannot be read or does not fit the network."""


class NonFiniteWeightsError(WeightFileError):
    """A model whose weights or buffers hold NaN or inf: every prediction would be NaN or flat."""


def check_finite(model: nn.Module, source: object) -> nn.Module:
    """``model`` if every floating tensor (parameters and buffers: BatchNorm's running_var too) is
    finite, else a NonFiniteWeightsError naming ``source`` and the first bad tensors."""
    bad = []
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            bad.append(f"{name} ({count} of {tensor.numel()} values NaN/inf)")
    if bad:
        raise NonFiniteWeightsError(f"{source}: {len(bad)} tensor(s) hold NaN/inf, e.g. {', '.join(bad[:3])}; "
                                    "the weights are damaged (a diverged training run or a bad conversion): "
                                    "every prediction would be NaN.")
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file.

    ``.pth`` files are read with ``weights_only=True``: a checkpoint that needs
    arbitrary Python objects to load is refused rather than executed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"Weight file {path} does not exist.")
    try:
        sd = timm_load_state_dict(str(path), weights_only=True)  # EMA weights first, as timm does
    except Exception as err:
        raise WeightFileError(
            f"Cannot read weight file {path}: {err}. Expected a .safetensors file or a "
            "torch-saved state dict (.pth/.pt/.bin) holding only tensors."
        ) from err
    for key in _NESTED:  # Lightning / nanoGPT style checkpoints nest the weights
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightFileError(f"Weight file {path} does not hold a state dict of tensors.")
    return {_strip(k): v for k, v in sd.items()}


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def _flat(key: str) -> str:
    # timm's features_only wrapper renames nested modules "a.b" -> "a_b"; compare flat.
    return key.replace(".", "_")


def load_encoder_file(net: nn.Module, path: str | Path) -> None:
    """Load a local file into ``net`` (a timm model or its features-only wrapper).

    Accepts a full timm classification checkpoint (its classifier keys are ignored)
    or an encoder state dict saved from depthsmith. Every tensor the network needs
    must be in the file with the right shape, otherwise the error lists what is wrong.
    """
    file_sd = {_flat(k): v for k, v in read_state_dict(path).items()}
    target = net.state_dict()
    missing, wrong_shape, new_sd = [], [], {}
    for key, ref in target.items():
        src = file_sd.get(_flat(key))
        if src is None:
            missing.append(key)
        elif src.shape != ref.shape:
            wrong_shape.append(f"{key}: file {tuple(src.shape)} vs model {tuple(ref.shape)}")
        else:
            new_sd[key] = src
    if missing or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:5])})")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} with the wrong shape (e.g. {'; '.join(wrong_shape[:3])})")
        raise WeightFileError(
            f"Weight file {path} does not fit encoder {type(net).__name__}: {' and '.join(problems)}. "
            "Use the timm checkpoint of the same architecture, or an encoder state dict saved "
            "from a depthsmith model of the same encoder."
        )
    net.load_state_dict(new_sd, strict=True)


def check_fit(converted: dict, target: dict, source_of, origin: dict | None = None) -> None:
    """A converted checkpoint must hold exactly the model's tensors, each with its shape; the error
    names the first one that does not fit. ``source_of(name)``: the file a checkpoint tensor came from
    (``name`` None: the checkpoint as a whole); ``origin``: model key -> checkpoint key, for messages."""
    origin = origin or {}
    for key, ref in target.items():
        if key not in converted:
            raise WeightFileError(f"{source_of(None)}: the checkpoint has no tensor for {key!r} of the depthsmith model.")
        if tuple(converted[key].shape) != tuple(ref.shape):
            name = origin.get(key, key)
            raise WeightFileError(f"{source_of(name)}: {name!r} has shape {tuple(converted[key].shape)} in the "
                                  f"checkpoint, but {key!r} of the model built from its config.json needs "
                                  f"{tuple(ref.shape)}.")
    extra = sorted(set(converted) - set(target))
    if extra:
        name = origin.get(extra[0], extra[0])
        raise WeightFileError(f"{source_of(name)}: checkpoint tensor {name!r} has no place in the model built from "
                              "its config.json.")
