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
from typing import Any, NamedTuple

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


# Values checked before anything is written, so that a bad one names itself instead of
# failing inside torch or Lightning (or after an hour of training).
INF = float("inf")


class _Range(NamedTuple):
    integer: bool
    low: float  # lowest valid value (excluded when `above`)
    high: float = INF  # highest valid value (excluded when `below`)
    nullable: bool = False
    above: bool = False
    below: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high == INF:
            bounds = f"{'>' if self.above else '>='} {self.low:g}"
        else:
            bounds = f"in {'(' if self.above else '['}{self.low:g}, {self.high:g}{')' if self.below else ']'}"
        return f"must be {kind} {bounds}{' or null' if self.nullable else ''}"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        over = value > self.low if self.above else value >= self.low
        under = value < self.high if self.below else value <= self.high
        return over and under


_NUMBERS: dict[str, _Range] = {
    "data.val_fraction": _Range(False, 0.0, 1.0, nullable=True, below=True),
    "data.split_seed": _Range(True, 0),
    "data.batch_size": _Range(True, 1),
    "data.val_batch_size": _Range(True, 1, nullable=True),
    "data.num_workers": _Range(True, 0),
    "optim.lr": _Range(False, 0.0, above=True),
    "optim.encoder_lr": _Range(False, 0.0, nullable=True),
    "optim.decoder_lr": _Range(False, 0.0, nullable=True),
    "optim.weight_decay": _Range(False, 0.0),
    "optim.eps": _Range(False, 0.0, above=True),
    "schedule.power": _Range(False, 0.0),
    "schedule.pct_start": _Range(False, 0.0, 1.0),
    "schedule.div_factor": _Range(False, 0.0, above=True),
    "schedule.final_div_factor": _Range(False, 0.0, above=True),
    "schedule.min_lr_ratio": _Range(False, 0.0, 1.0),
    "trainer.max_epochs": _Range(True, -1, nullable=True),
    "trainer.max_steps": _Range(True, -1),
    "trainer.gradient_clip_val": _Range(False, 0.0, nullable=True),
    "trainer.accumulate_grad_batches": _Range(True, 1),
    "trainer.check_val_every_n_epoch": _Range(True, 1),
    "trainer.seed": _Range(True, 0, 2**32 - 1, nullable=True),
    "trainer.log_every_n_steps": _Range(True, 1),
    "trainer.num_nodes": _Range(True, 1),
    "trainer.limit_train_batches": _Range(False, 0.0, nullable=True),  # a count, or a fraction <= 1.0
    "trainer.limit_val_batches": _Range(False, 0.0, nullable=True),
    "freeze_encoder_epochs": _Range(True, 0, nullable=True),
    "checkpoint.every_n_train_steps": _Range(True, 1, nullable=True),
    "bn_momentum": _Range(False, 0.0, 1.0, nullable=True),
}
_CHOICES: dict[str, tuple[Any, ...]] = {
    "optim.name": ("adam", "adamw"),
    "schedule.name": ("none", "linear", "poly", "onecycle", "cosine"),
    "schedule.interval": ("step", "epoch"),
    "schedule.anneal_strategy": ("cos", "linear"),
    "checkpoint.mode": ("min", "max"),
    "target": TARGETS,
    "data.split_by": ("scene", "image"),
    "trainer.matmul_precision": (None, "highest", "high", "medium"),
    "trainer.precision": ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true", "16-true", "fp32", "bf16",
                          "fp16", "64", "32", "16"),
}
_BOOLS = ("optim.amsgrad", "data.cache", "data.drop_last", "trainer.deterministic", "logging.tensorboard",
          "logging.progress_bar", "logging.train_metrics", "logging.train_eval")  # logging.wandb: true|false|auto


def _value_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key`` (and what is valid), or None."""
    if key in _NUMBERS:
        return None if _NUMBERS[key].accepts(value) else _NUMBERS[key].describe()
    if key in _CHOICES:
        # trainer.precision=32 reads as an integer: the choices are the strings Lightning takes.
        ok = not isinstance(value, bool) and (value in _CHOICES[key] or str(value) in _CHOICES[key])
        return None if ok else f"must be one of {', '.join(map(str, _CHOICES[key]))}"
    if key in _BOOLS and not isinstance(value, bool):
        return "must be true or false"
    return None


def _check_values(config: Mapping[str, Any], keys: Sequence[str] = (), source: str = "") -> None:
    """Check the given dotted keys (default: every key with a rule) of a merged config."""
    for key in keys or [*_NUMBERS, *_CHOICES, *_BOOLS]:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            problem = _value_problem(key, node)
            if problem:
                where = f"{source}: " if source else ""
                raise ConfigError(f"{where}config key {key} {problem}; got {node!r} ({type(node).__name__})")


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
        dotted = ".".join(keys)
        _check_values(probe, [k for k in (*_NUMBERS, *_CHOICES, *_BOOLS) if k == dotted or k.startswith(dotted + ".")],
                      source=f"override {dotted}={value!r}")
        _set(resolved, keys, value)
    return normalise(resolved)


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Expand shorthands and check values that would otherwise fail deep inside Lightning."""
    _check_values(config)  # the recipe's or YAML file's own values (overrides were checked as applied)
    trainer = config["trainer"]
    precision = str(trainer["precision"])
    trainer["precision"] = PRECISION_ALIASES.get(precision, precision)
    if not config["model"].get("name"):
        raise ConfigError("model.name is not set (a preset from `depthsmith models` or any timm encoder name)")
    wandb = config["logging"]["wandb"]
    if wandb not in (True, False, "auto") or (wandb in (0, 1) and not isinstance(wandb, bool)):
        raise ConfigError(f"config key logging.wandb must be true, false or auto; got {wandb!r}")
    return config
