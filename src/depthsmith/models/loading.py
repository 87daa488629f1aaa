"""Reading a saved model folder (``config.json`` + ``model.safetensors``), every fault named.

``load_model`` used to hand local folders to the Hub mixin's ``from_pretrained``, which lets a
corrupt file, a wrong-shaped tensor or an unknown config key surface as a bare safetensors,
torch or TypeError traceback that names no file. Here each step has its own error: config
problems name ``config.json`` and the key, weight problems name ``model.safetensors``.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, MissingInputError
from .encoders import check_encoder_kwargs
from .model import DepthModel
from .weights import WeightFileError

__all__ = ["ModelConfigError", "load_local", "load_hub", "looks_like_path", "CONFIG_KEYS"]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
# The config is DepthModel's __init__ arguments, nothing else (save_pretrained writes exactly these).
CONFIG_KEYS = tuple(n for n in inspect.signature(DepthModel.__init__).parameters if n != "self")
# Suffixes of files people pass by mistake, and which make a string a path rather than a Hub id.
_FILE_SUFFIXES = (".json", ".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".onnx", ".keras", ".h5")


class ModelConfigError(InputError):
    """A model's config.json that cannot be read or does not describe a DepthModel."""


def looks_like_path(text: str) -> bool:
    """True for strings that are meant as local paths, never as Hub ids ``owner/name``.

    A Hub id has exactly one '/' and no suffix; a path has os.sep (beyond that one '/'), starts
    with '.', '~' or '/', or ends in a file suffix. Treating a mistyped path as a Hub id costs
    30 s of network retries and then an error that does not say the path is wrong.
    """
    if text.startswith((".", "~", "/")) or Path(text).suffix.lower() in _FILE_SUFFIXES:
        return True
    if text.count("/") > 1 or (os.sep != "/" and os.sep in text):
        return True
    parent = Path(text).parent  # "runs/modle": runs/ exists here, so a typo, not a Hub owner
    return parent != Path(".") and parent.is_dir()


def read_config(path: Path) -> dict[str, Any]:
    """The config dict of ``path`` (a config.json), checked key by key."""
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:  # e.g. a checkpoint copied over config.json
        raise ModelConfigError(f"{path}: not a text file (byte {err.start} is not UTF-8); expected the JSON "
                               "object written by save_pretrained.") from err
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path}: invalid JSON at line {err.lineno} column {err.colno} ({err.msg}); "
                               "expected the JSON object written by save_pretrained.") from err
    if not isinstance(config, dict):
        raise ModelConfigError(f"{path}: holds a JSON {type(config).__name__}; expected an object "
                               f"{{key: value}} with keys among {', '.join(CONFIG_KEYS)}.")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ModelConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {', '.join(CONFIG_KEYS)}.")
    for key in ("encoder_kwargs", "decoder_kwargs"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise ModelConfigError(f"{path}: {key} must be an object or null, got {type(config[key]).__name__}.")
    check_encoder_kwargs(config.get("encoder_kwargs") or {}, where=str(path))
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error type (and OSError) for corrupt files
        raise WeightFileError(f"{path}: cannot read safetensors weights ({type(err).__name__}: {err}); "
                              "expected the model.safetensors written by save_pretrained.") from err


def load_local(folder: Path, map_location: str | torch.device = "cpu") -> DepthModel:
    """Rebuild the model saved in ``folder``; strict: every tensor present, with its shape."""
    if folder.is_file():
        raise ModelConfigError(
            f"{folder} is a file; give the folder that holds {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written by model.save_pretrained or depthsmith train), not a file inside it or a checkpoint."
        )
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise MissingInputError(
            f"{folder} is not a saved depthsmith model: {' and '.join(missing)} missing; it needs {CONFIG_FILE} "
            f"and {WEIGHTS_FILE} (written by model.save_pretrained or depthsmith train)."
        )
    config_path = folder / CONFIG_FILE
    config = read_config(config_path)
    config["encoder_weights"] = None  # the weights are in the file: never fetch ImageNet ones again
    try:
        model = DepthModel(**config)
    except (TypeError, ValueError) as err:  # a decoder or encoder option that does not exist or fit
        raise ModelConfigError(f"{config_path}: does not describe a valid model ({err}).") from err
    weights_path = folder / WEIGHTS_FILE
    state = _read_weights(weights_path)
    expected = model.state_dict()
    absent = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if absent or extra or shape:
        problems = [f"{len(a)} {what} (e.g. {', '.join(a[:3])})" for a, what in
                    ((absent, "missing tensors"), (extra, "unexpected tensors"), (shape, "with the wrong shape")) if a]
        raise WeightFileError(f"{weights_path}: does not fit the model of {config_path}: {'; '.join(problems)}. "
                              "The weights and config.json must come from the same save_pretrained.")
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()  # as from_pretrained does: a loaded model is for inference


def load_hub(repo_id: str, map_location: str | torch.device = "cpu", **hub_kwargs: Any) -> DepthModel:
    """Download (or find in the Hub cache) a repo's config.json and model.safetensors, then load
    them with the same checks as a local folder: a config from the internet is no more trusted
    than one on disk. ``hub_kwargs`` go to ``hf_hub_download`` (revision, cache_dir, token, ...)."""
    from huggingface_hub import hf_hub_download

    from .hub import hub_error

    try:
        files = [Path(hf_hub_download(repo_id, name, **hub_kwargs)) for name in (CONFIG_FILE, WEIGHTS_FILE)]
    except Exception as err:  # the hub library's errors name neither the id nor network vs missing repo
        raise hub_error(repo_id, err) from err
    return load_local(files[0].parent, map_location)
