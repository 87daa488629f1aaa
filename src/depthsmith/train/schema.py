"""The training config's schema: dataclasses whose fields are the keys, defaults, choices and ranges.

Stdlib dataclasses rather than OmegaConf structured configs, jsonargparse or pydantic: they
keep our YAML-typed ``--set a.b=value`` overrides and free-form ``model``/``loss``/dataset
sub-dicts as they are, and add no dependency.

A field's type hint is its rule, checked by :func:`value_problem` (the one place a value is
checked: ``config.resolve_config`` calls it, ``optim.py`` dispatches on the checked value):

- ``Literal["a", "b"]``: one of the choices (``trainer.precision=32`` reads as an integer,
  so a value also matches a string choice by its text);
- ``bool``: true or false;
- ``Annotated[int, Range(1)]`` / ``Annotated[float, Range(0, above=True)]``: a number in range;
- ``X | None``: any of the above, or null.

Other hints (``str``, ``Any``, ``dict``, ``list``) are documentation: those values go to
functions that check their own arguments (``create_model``, ``build_loss``, ``build_dataset``).
A field whose type is another dataclass is a fixed section (its keys are checked); every other
mapping-valued field is free-form.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple, Union

__all__ = ["Range", "LIGHTNING_PRECISIONS", "PRECISION_ALIASES", "TrainConfig", "OptimConfig", "ScheduleConfig",
           "TrainerConfig", "DataConfig", "CheckpointConfig", "LoggingConfig", "field_rules", "choices",
           "value_problem", "checked_keys", "sections", "from_dict"]

INF = float("inf")


class Range(NamedTuple):
    """Bounds of a number field (``Annotated[int, Range(1)]``); the integer/float kind is the hint's."""

    low: float  # lowest valid value (excluded when `above`)
    high: float = INF  # highest valid value (excluded when `below`)
    above: bool = False
    below: bool = False

    def describe(self) -> str:
        if self.high == INF:
            return f"{'>' if self.above else '>='} {_number(self.low)}"
        return f"in {'(' if self.above else '['}{_number(self.low)}, {_number(self.high)}{')' if self.below else ']'}"

    def contains(self, value: float) -> bool:
        over = value > self.low if self.above else value >= self.low
        under = value < self.high if self.below else value <= self.high
        return over and under


def _number(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"  # 4294967295, not 4.29497e+09


OptimName = Literal["adam", "adamw"]
ScheduleName = Literal["none", "linear", "poly", "onecycle", "cosine"]
# Lightning's precision names (lightning.fabric.connector._PRECISION_INPUT_STR, less the
# transformer-engine ones) and our shorthands, each written as the Lightning name it stands for
# (the "64" / "32" / "16" ones as Lightning itself reads them). The choices are the two together;
# device.resolve_precision's "fp32" / "bf16" answer for ``auto`` is written through the same table.
LIGHTNING_PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true", "bf16-true", "16-true")
PRECISION_ALIASES = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed", "64": "64-true", "32": "32-true",
                     "16": "16-mixed"}
Precision = Literal[LIGHTNING_PRECISIONS + tuple(PRECISION_ALIASES)]  # type: ignore[valid-type]  # one list, not two
Target = Literal["auto", "seed_minmax"]

Count = Annotated[int, Range(0)]
Positive = Annotated[int, Range(1)]
Rate = Annotated[float, Range(0.0, above=True)]  # > 0
NonNegative = Annotated[float, Range(0.0)]
Fraction = Annotated[float, Range(0.0, 1.0)]


@dataclass
class DataConfig:
    root: str | None = None  # fills the `path` of every dataset config that leaves it empty
    train: dict[str, Any] | None = None  # dataset config for build_dataset, e.g. {type: synthetic, num_samples: 512}
    val: dict[str, Any] | None = None  # dataset config, or None to split val_fraction off the training set
    val_fraction: Annotated[float | None, Range(0.0, 1.0, below=True)] = 0.0
    split_seed: Count = 0  # the train/val split is fixed by this seed, not by trainer.seed
    split_by: Literal["scene", "image"] = "scene"  # scene: no scene on both sides | image: random images (seed code)
    transforms: Any = field(default_factory=dict)  # build_transforms config (train=True for train, False for val)
    batch_size: Positive = 8
    val_batch_size: Positive | None = None  # default: batch_size
    num_workers: Count = 0
    cache: bool = False  # keep decoded samples in memory (small or synthetic sets)
    drop_last: bool = True


@dataclass
class OptimConfig:
    name: OptimName = "adam"
    lr: Rate = 1.0e-4
    encoder_lr: NonNegative | None = None  # default: lr
    decoder_lr: NonNegative | None = None  # default: lr
    weight_decay: NonNegative = 0.0
    amsgrad: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: Rate = 1.0e-8


@dataclass
class ScheduleConfig:
    name: ScheduleName = "none"
    interval: Literal["step", "epoch"] = "step"  # how often the schedule advances
    power: NonNegative = 1.0  # poly decay exponent (linear = 1)
    pct_start: Fraction = 0.3  # onecycle: fraction of the steps spent warming up
    div_factor: Rate = 25.0  # onecycle: initial lr = max lr / div_factor
    final_div_factor: Rate = 1.0e4  # onecycle: final lr = initial lr / final_div_factor
    anneal_strategy: Literal["cos", "linear"] = "cos"  # onecycle
    min_lr_ratio: Fraction = 0.0  # cosine: final lr = ratio * lr


@dataclass
class TrainerConfig:
    max_epochs: Annotated[int | None, Range(-1)] = 10
    max_steps: Annotated[int, Range(-1)] = -1
    precision: Precision = "32-true"  # Lightning precision; fp32/bf16/fp16 shorthands; auto: bf16-mixed where native
    gradient_clip_val: NonNegative | None = None
    accumulate_grad_batches: Positive = 1
    check_val_every_n_epoch: Positive = 1
    seed: Annotated[int | None, Range(0, 2**32 - 1)] = 0
    deterministic: bool = False
    log_every_n_steps: Positive = 50
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: Any = "auto"
    num_nodes: Positive = 1
    # A count, or a fraction <= 1.0; 0 trains nothing and leaves no checkpoint to finish from.
    limit_train_batches: Annotated[float | None, Range(0.0, above=True)] = None
    limit_val_batches: NonNegative | None = None
    benchmark: bool | None = None
    matmul_precision: Literal["highest", "high", "medium"] | None = None  # torch.set_float32_matmul_precision


@dataclass
class CheckpointConfig:
    monitor: str = "val/rmse"
    mode: Literal["min", "max"] = "min"
    every_n_train_steps: Positive | None = None  # also save last.ckpt every N optimiser steps


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    wandb: bool | Literal["auto"] = False  # auto: when wandb is installed; offline without a login
    wandb_project: str = "depthsmith"
    progress_bar: bool = True
    train_metrics: bool = True  # RMSE/SSIM of the training batches (no extra forward pass)
    # An evaluation pass over the training set (eval mode, no augmentation) at every validation,
    # logged as train_eval/*: the report's "RMSE and SSIM on train and validation every 2 epochs".
    train_eval: bool = False


@dataclass
class TrainConfig:
    name: str | None = None  # recipe name; filled from the file name when loading a recipe
    description: str = ""
    model: dict[str, Any] = field(default_factory=lambda: {"name": None, "encoder_weights": None})  # create_model
    data: DataConfig = field(default_factory=DataConfig)
    loss: str | dict[str, Any] = "paper"  # preset name or a dict of term weights (depthsmith.losses.build_loss)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    freeze_encoder_epochs: Count | None = 0
    # Training target: auto = from model.output (metric: d / max_depth, inverse, relative: per-image
    # min-max over valid pixels); seed_minmax = the seed code's min-max over every pixel, holes
    # included, with the loss on every pixel (no valid mask).
    target: Target = "auto"
    # Momentum of every BatchNorm (torch convention: new = (1 - m) * old + m * batch), None = as
    # built. Keras' momentum=0.99 is torch's 0.01.
    bn_momentum: Fraction | None = None
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # Held-out evaluation after training (quickstart): a dataset config, evaluated with the
    # exported model and compared with the best constant-depth predictor.
    final_eval: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The nested dict of the config, for the places that store one: config.yaml, Lightning's
        hparams, the model card."""
        return dataclasses.asdict(self)


# --- reading the hints ---------------------------------------------------------------------
class _Rule(NamedTuple):
    """What a hint allows: choices (Literal), bool, a number kind with its range, null."""

    choices: tuple[Any, ...] = ()
    boolean: bool = False
    number: type | None = None  # int or float
    bounds: Range | None = None
    nullable: bool = False

    @property
    def checked(self) -> bool:
        return bool(self.choices or self.boolean or self.number)


def _options(hint: Any) -> Iterator[tuple[Any, Range | None]]:
    """(plain type, its Range) of each member of a hint: X, X | Y, Annotated[X, Range], Annotated[X | Y, Range]."""
    bounds = None
    if typing.get_origin(hint) is Annotated:
        hint, *extra = typing.get_args(hint)
        bounds = next((e for e in extra if isinstance(e, Range)), None)
    if typing.get_origin(hint) in (Union, types.UnionType):
        for member in typing.get_args(hint):
            for option, inner in _options(member):
                yield option, inner or bounds
    else:
        yield hint, bounds


def _rule(hint: Any) -> _Rule:
    rule: dict[str, Any] = {"choices": ()}
    for option, bounds in _options(hint):
        if option is type(None):
            rule["nullable"] = True
        elif typing.get_origin(option) is Literal:
            rule["choices"] += typing.get_args(option)
        elif option is bool:
            rule["boolean"] = True
        elif option in (int, float):
            rule["number"], rule["bounds"] = option, bounds
    return _Rule(**rule)


def _describe(rule: _Rule) -> str:
    if rule.number:
        kind = "an integer" if rule.number is int else "a number"
        bounds = f" {rule.bounds.describe()}" if rule.bounds else ""
        return f"must be {kind}{bounds}{' or null' if rule.nullable else ''}"
    words = (["true", "false"] if rule.boolean else []) + [str(c) for c in rule.choices]
    words += ["null"] if rule.nullable else []
    if rule.choices and not rule.boolean:
        return f"must be one of {', '.join(words)}"
    return f"must be {', '.join(words[:-1])} or {words[-1]}"


def _accepts(rule: _Rule, value: Any) -> bool:
    if value is None:
        return rule.nullable
    if isinstance(value, bool):
        return rule.boolean
    if rule.number:
        kinds = int if rule.number is int else (int, float)
        return isinstance(value, kinds) and (rule.bounds is None or rule.bounds.contains(value))
    # trainer.precision=32 reads as an integer: the choices are the strings Lightning takes.
    return value in rule.choices or str(value) in rule.choices


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _walk(cls: type = TrainConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, hint) of every field, sections included, depth first."""
    for name, hint in _hints(cls).items():
        yield prefix + name, hint
        if dataclasses.is_dataclass(hint):
            yield from _walk(hint, f"{prefix}{name}.")


_RULES: dict[str, _Rule] = {key: rule for key, hint in _walk() if (rule := _rule(hint)).checked}


def sections(cls: type = TrainConfig) -> dict[str, Any]:
    """The key tree: field name -> its sub-tree for a fixed section, None for a value or a free sub-dict."""
    return {name: sections(hint) if dataclasses.is_dataclass(hint) else None for name, hint in _hints(cls).items()}


def field_rules() -> dict[str, str]:
    """Dotted key -> what it accepts ("must be one of adam, adamw"), for every checked key (CLI/docs)."""
    return {key: _describe(rule) for key, rule in _RULES.items()}


def choices(key: str) -> tuple[Any, ...]:
    """The valid choices of a Literal key, e.g. choices("optim.name") == ("adam", "adamw")."""
    return _RULES[key].choices


def value_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the dotted ``key`` (and what is valid), or None."""
    rule = _RULES.get(key)
    return None if rule is None or _accepts(rule, value) else _describe(rule)


def checked_keys(under: str = "") -> list[str]:
    """Every key with a rule, or those at or below the dotted key ``under``."""
    return [k for k in _RULES if not under or k == under or k.startswith(under + ".")]


def from_dict(cls: type, values: Mapping[str, Any]) -> Any:
    """The dataclass instance of a checked config dict (fixed sections become their dataclasses);
    ``config.resolve_config`` calls it once its checks have passed."""
    hints = _hints(cls)
    return cls(**{k: from_dict(hints[k], v) if dataclasses.is_dataclass(hints[k]) else v for k, v in values.items()})
