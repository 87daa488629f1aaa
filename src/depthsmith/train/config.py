"""Training configs: recipes shipped with the package, YAML files, dicts, and `a.b=value` overrides.

A config is a plain nested dict. ``resolve_config`` merges it over ``DEFAULTS``, applies the
overrides and checks every key of the fixed sections (``optim``, ``schedule``, ``trainer``,
``checkpoint``, ``logging``, ``data``), so a typo such as ``optim.lrr=3e-4`` fails at once,
listing the valid keys, instead of being silently ignored after an hour of training.
The ``model``, ``loss`` and dataset sub-dicts are free-form: they are handed to
``create_model``, ``build_loss`` and ``build_dataset``, which check their own arguments.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "ConfigError", "list_recipes", "load_config", "resolve_config", "parse_override",
           "yaml_load", "dump_config"]


class ConfigError(ValueError):
    """A bad recipe, YAML file or override; the message names the key."""


# Every key a config may have, with its default. None = "not set".
DEFAULTS: dict[str, Any] = {
    "name": None,  # recipe name; filled from the file name when loading a recipe
    "description": "",
    "model": {"name": None, "encoder_weights": None},  # + any create_model override
    "data": {
        "root": None,  # fills the `path` of every dataset config that leaves it empty
        "train": None,  # dataset config for build_dataset, e.g. {type: synthetic, num_samples: 512}
        "val": None,  # dataset config, or None to split val_fraction off the training set
        "val_fraction": 0.0,
        "split_seed": 0,  # the train/val split is fixed by this seed, not by trainer.seed
        "split_by": "scene",  # scene: no scene on both sides | image: random images (the seed code)
        "transforms": {},  # build_transforms config (train=True for train, False for val)
        "batch_size": 8,
        "val_batch_size": None,  # default: batch_size
        "num_workers": 0,
        "cache": False,  # keep decoded samples in memory (small or synthetic sets)
        "drop_last": True,
    },
    "loss": "paper",  # preset name or a dict of term weights (see depthsmith.losses.build_loss)
    "optim": {
        "name": "adam",  # adam | adamw
        "lr": 1.0e-4,
        "encoder_lr": None,  # default: lr
        "decoder_lr": None,  # default: lr
        "weight_decay": 0.0,
        "amsgrad": False,
        "betas": [0.9, 0.999],
        "eps": 1.0e-8,
    },
    "schedule": {
        "name": "none",  # none | linear | poly | onecycle | cosine
        "interval": "step",  # step | epoch: how often the schedule advances
        "power": 1.0,  # poly decay exponent (linear = 1)
        "pct_start": 0.3,  # onecycle: fraction of the steps spent warming up
        "div_factor": 25.0,  # onecycle: initial lr = max lr / div_factor
        "final_div_factor": 1.0e4,  # onecycle: final lr = initial lr / final_div_factor
        "anneal_strategy": "cos",  # onecycle: cos | linear
        "min_lr_ratio": 0.0,  # cosine: final lr = ratio * lr
    },
    "trainer": {
        "max_epochs": 10,
        "max_steps": -1,
        "precision": "32-true",  # Lightning precision; fp32/bf16/fp16 shorthands; auto: bf16-mixed where native
        "gradient_clip_val": None,
        "accumulate_grad_batches": 1,
        "check_val_every_n_epoch": 1,
        "seed": 0,
        "deterministic": False,
        "log_every_n_steps": 50,
        "accelerator": "auto",
        "devices": "auto",
        "strategy": "auto",
        "num_nodes": 1,
        "limit_train_batches": None,
        "limit_val_batches": None,
        "benchmark": None,
        "matmul_precision": None,  # torch.set_float32_matmul_precision: highest | high | medium
    },
    "freeze_encoder_epochs": 0,
    # Training target: auto = from model.output (metric: d / max_depth, inverse, relative: per-image
    # min-max over valid pixels); seed_minmax = the seed code's min-max over every pixel, holes
    # included, with the loss on every pixel (no valid mask).
    "target": "auto",
    # Momentum of every BatchNorm (torch convention: new = (1 - m) * old + m * batch), None = as
    # built. Keras' momentum=0.99 is torch's 0.01.
    "bn_momentum": None,
    "checkpoint": {
        "monitor": "val/rmse",
        "mode": "min",
        "every_n_train_steps": None,  # also save last.ckpt every N optimiser steps
    },
    "logging": {
        "tensorboard": True,
        "wandb": False,  # true | false | auto (when wandb is installed); offline without a login
        "wandb_project": "depthsmith",
        "progress_bar": True,
        "train_metrics": True,  # RMSE/SSIM of the training batches (no extra forward pass)
        # An evaluation pass over the training set (eval mode, no augmentation) at every validation,
        # logged as train_eval/*: the report's "RMSE and SSIM on train and validation every 2 epochs".
        "train_eval": False,
    },
    # Held-out evaluation after training (quickstart): a dataset config, evaluated with the
    # exported model and compared with the best constant-depth predictor.
    "final_eval": None,
}

# Sections whose keys are free (checked by the function they are handed to).
_FREE = {("model",), ("loss",), ("data", "train"), ("data", "val"), ("data", "transforms"), ("final_eval",)}

TARGETS = ("auto", "seed_minmax")
PRECISION_ALIASES = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed",
                     "16": "16-mixed"}


# --- YAML -------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-4 as a float (YAML 1.1 wants 1.0e-4 and would give a string)."""


_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML (safe), reading exponent floats such as 1e-4 as numbers."""
    return yaml.load(text, Loader=_Loader)


def dump_config(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=None)


def _plain(value: Any) -> Any:
    """Tuples -> lists, Paths -> str: YAML-safe types only."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --- recipes ----------------------------------------------------------------------------
def _recipe_files() -> dict[str, Any]:
    folder = resources.files("depthsmith") / "recipes"
    return {p.name[: -len(".yaml")]: p for p in folder.iterdir() if p.name.endswith(".yaml")}


def list_recipes() -> dict[str, str]:
    """Recipe name -> its one-line description, for every YAML file shipped in depthsmith/recipes."""
    out = {}
    for name, path in sorted(_recipe_files().items()):
        raw = yaml_load(path.read_text()) or {}
        out[name] = str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else ""
    return out


def load_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The raw (unresolved) config of a recipe name, a YAML path or a dict."""
    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config))
    recipes = _recipe_files()
    text, name = None, None
    if str(config) in recipes:
        name = str(config)
        text = recipes[name].read_text()
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(
                f"{config!r} is neither a recipe nor a YAML file. Recipes: {', '.join(sorted(recipes))}."
            )
        text, name = path.read_text(), path.stem
    try:
        raw = yaml_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{config}: invalid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{config}: a config must be a YAML mapping, got {type(raw).__name__}")
    raw.setdefault("name", name)
    return raw


# --- merging, overrides, checks -----------------------------------------------------------
def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=3e-4' -> (['optim', 'lr'], 0.0003). The value is parsed as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like key.subkey=value (e.g. optim.lr=3e-4)")
    try:
        parsed = yaml_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({err})") from err
    return key.split("."), parsed


def _merge(base: dict[str, Any], update: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    for key, value in update.items():
        here = path + (str(key),)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and here not in _FREE:
            _merge(base[key], value, here)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            # Free sections merge too (so --set model.output=relative keeps model.name).
            base[key] = _merge(copy.deepcopy(base[key]), value, here)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _check_keys(config: Mapping[str, Any], defaults: Mapping[str, Any], path: tuple[str, ...] = ()) -> None:
    for key, value in config.items():
        here = path + (str(key),)
        if here in _FREE or any(here[: len(f)] == f for f in _FREE):
            continue
        if key not in defaults:
            where = ".".join(path) or "the top level"
            raise ConfigError(
                f"unknown config key {'.'.join(here)!r}; valid keys at {where}: {', '.join(map(str, defaults))}"
            )
        if isinstance(defaults[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {'.'.join(here)!r} must be a mapping, got {value!r}")
            _check_keys(value, defaults[key], here)


def _set(config: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    node = config
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            # e.g. loss=paper then --set loss.l1=0.5: a preset name has no sub-keys.
            raise ConfigError(f"cannot set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is {child!r}, not a mapping")
        node = child
    node[keys[-1]] = value


def resolve_config(
    config: str | Path | Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] = ()
) -> dict[str, Any]:
    """Defaults <- recipe/YAML/dict <- overrides, with every fixed key checked and shorthands expanded."""
    raw = load_config(config)
    _check_keys(raw, DEFAULTS)
    resolved = _merge(copy.deepcopy(DEFAULTS), raw)
    items = overrides.items() if isinstance(overrides, Mapping) else [parse_override(o) for o in overrides]
    for keys, value in items:
        keys = keys.split(".") if isinstance(keys, str) else list(keys)
        probe: dict[str, Any] = {}
        _set(probe, keys, value)
        _check_keys(probe, DEFAULTS)  # a typo in an override names the key it meant
        _set(resolved, keys, value)
    return normalise(resolved)


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Expand shorthands and check values that would otherwise fail deep inside Lightning."""
    trainer = config["trainer"]
    precision = str(trainer["precision"])
    trainer["precision"] = PRECISION_ALIASES.get(precision, precision)
    if not config["model"].get("name"):
        raise ConfigError("model.name is not set (a preset from `depthsmith models` or any timm encoder name)")
    if config["optim"]["name"] not in ("adam", "adamw"):
        raise ConfigError(f"optim.name must be adam or adamw, got {config['optim']['name']!r}")
    if config["schedule"]["name"] not in ("none", "linear", "poly", "onecycle", "cosine"):
        raise ConfigError(
            f"schedule.name must be none, linear, poly, onecycle or cosine, got {config['schedule']['name']!r}"
        )
    if config["schedule"]["interval"] not in ("step", "epoch"):
        raise ConfigError(f"schedule.interval must be step or epoch, got {config['schedule']['interval']!r}")
    if config["checkpoint"]["mode"] not in ("min", "max"):
        raise ConfigError(f"checkpoint.mode must be min or max, got {config['checkpoint']['mode']!r}")
    if config["logging"]["wandb"] not in (True, False, "auto"):
        raise ConfigError(f"logging.wandb must be true, false or auto, got {config['logging']['wandb']!r}")
    if config["target"] not in TARGETS:
        raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {config['target']!r}")
    if config["data"]["split_by"] not in ("scene", "image"):
        raise ConfigError(f"data.split_by must be scene or image, got {config['data']['split_by']!r}")
    momentum = config["bn_momentum"]
    if momentum is not None and not (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0):
        raise ConfigError(f"bn_momentum must be null or a number in [0, 1] (torch convention), got {momentum!r}")
    fraction = float(config["data"]["val_fraction"] or 0.0)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {fraction}")
    return config
