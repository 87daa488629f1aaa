"""Training configs: recipes shipped with the package, YAML files, dicts, and `a.b=value` overrides.

A config's schema (keys, defaults, choices, ranges) is the ``TrainConfig`` dataclass in
``schema.py``. ``resolve_config`` merges a recipe, YAML file or dict over ``DEFAULTS``, applies the
overrides and checks every key of the fixed sections (``optim``, ``schedule``, ``trainer``,
``checkpoint``, ``logging``, ``data``) and every value with a rule, so a typo such as
``optim.lrr=3e-4`` or ``optim.name=sgd`` fails at once, naming the key, the value and what is
valid, before anything is written; it returns the checked ``TrainConfig``, which the rest of
``train/`` reads by attribute (``config.trainer.seed``). The merging and checking work on plain
nested dicts (what YAML and ``--set`` give); a dict is made again only where one is stored
(``dump_config`` for config.yaml, Lightning's hparams, the model card: ``TrainConfig.to_dict``).
The ``model``, ``loss`` and dataset sub-dicts are free-form: they are handed to ``create_model``,
``build_loss`` and ``build_dataset``, which check their own arguments. Stdlib dataclasses, not
OmegaConf/jsonargparse/pydantic: those would replace our YAML-typed ``--set`` syntax or add a
dependency for what one small type-hint walker does.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from .schema import PRECISION_ALIASES, Target, TrainConfig, checked_keys, from_dict, sections, value_problem

__all__ = ["DEFAULTS", "ConfigError", "list_recipes", "load_train_config", "resolve_config", "parse_override",
           "yaml_load", "dump_config"]

_KEYS = sections()  # the key tree of the fixed sections (None: a value or a free sub-dict)


class ConfigError(InputError):
    """A bad recipe, YAML file or override; the message names the key."""


# Every key a config may have, with its default (None = "not set"): the schema's defaults.
DEFAULTS: dict[str, Any] = dataclasses.asdict(TrainConfig())
TARGETS = typing.get_args(Target)


_MISSING = object()


def config_value(config: Mapping[str, Any], key: str, missing: Any = None) -> Any:
    """The value at dotted ``key`` ("optim.lr") of a nested config, or ``missing`` where it is absent."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return missing
        node = node[part]
    return node


def _check_values(config: Mapping[str, Any], keys: Sequence[str] = (), source: str = "") -> None:
    """Check the given dotted keys (default: every key with a rule) of a merged config."""
    for key in keys or checked_keys():
        node = config_value(config, key, _MISSING)
        if node is not _MISSING:
            problem = value_problem(key, node)
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


def dump_config(config: TrainConfig | Mapping[str, Any]) -> str:
    """The YAML text of a config (config.yaml); ``resolve_config`` reads it back to an equal config."""
    plain = config.to_dict() if isinstance(config, TrainConfig) else config
    return yaml.safe_dump(_plain(plain), sort_keys=False, default_flow_style=None)


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


def load_train_config(config: str | Path | Mapping[str, Any] | TrainConfig) -> dict[str, Any]:
    """The raw (unresolved) config of a recipe name, a YAML path, a dict or a ``TrainConfig``."""
    if isinstance(config, TrainConfig):
        return config.to_dict()
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


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key, free sections too (so --set model.output=relative keeps model.name)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _merge(copy.deepcopy(base[key]), value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _check_keys(config: Mapping[str, Any], tree: Mapping[str, Any] = _KEYS, path: tuple[str, ...] = ()) -> None:
    """Every key of a fixed section must be in the schema; free sub-dicts (``tree[key] is None``) are skipped."""
    for key, value in config.items():
        here = path + (str(key),)
        if key not in tree:
            where = ".".join(path) or "the top level"
            raise ConfigError(
                f"unknown config key {'.'.join(here)!r}; valid keys at {where}: {', '.join(map(str, tree))}"
            )
        if tree[key] is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {'.'.join(here)!r} must be a mapping, got {value!r}")
            _check_keys(value, tree[key], here)


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
    config: str | Path | Mapping[str, Any] | TrainConfig, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> TrainConfig:
    """Defaults <- recipe/YAML/dict <- overrides, with every fixed key checked and shorthands expanded."""
    raw = load_train_config(config)
    _check_keys(raw)
    resolved = _merge(copy.deepcopy(DEFAULTS), raw)
    items = overrides.items() if isinstance(overrides, Mapping) else [parse_override(o) for o in overrides]
    for keys, value in items:
        keys = keys.split(".") if isinstance(keys, str) else list(keys)
        probe: dict[str, Any] = {}
        _set(probe, keys, value)
        _check_keys(probe)  # a typo in an override names the key it meant
        dotted = ".".join(keys)
        under = checked_keys(dotted)
        if under:  # checked_keys("") would be every key
            _check_values(probe, under, source=f"override {dotted}={value!r}")
        _set(resolved, keys, value)
    return from_dict(TrainConfig, normalise(resolved))


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Expand shorthands and check values that would otherwise fail deep inside Lightning."""
    _check_values(config)  # the recipe's or YAML file's own values (overrides were checked as applied)
    trainer = config["trainer"]
    precision = str(trainer["precision"])
    trainer["precision"] = PRECISION_ALIASES.get(precision, precision)
    if not isinstance(config["model"], Mapping):
        raise ConfigError(f"config key 'model' must be a mapping (name: ..., plus create_model options), "
                          f"got {config['model']!r}")
    if not config["model"].get("name"):
        raise ConfigError("model.name is not set (a preset from `depthsmith models` or any timm encoder name)")
    return config
