"""Optimiser with encoder / decoder parameter groups, and the learning-rate schedules of the recipes.

- paper: Adam(amsgrad) at 1e-4 decayed linearly to 0 (Keras ``poly_decay`` with power 1,
  applied per epoch: epoch e of E trains at lr * (1 - e / E)).
- report: AdamW, lr 1e-4 for the encoder and 1e-3 for the decoder, OneCycle with cosine
  annealing (PyTorch ``OneCycleLR``; each group peaks at its own lr).

``optim.name`` and ``schedule.name`` are checked once, against the choices of ``schema.py``,
when the config is resolved; the builders here look the checked name up in their tables, whose
keys tests/test_train_config.py compares with those choices.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .schema import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "build_scheduler", "param_groups"]


def param_groups(model: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
    """[{name: encoder, params, lr}, {name: decoder, params, lr}] from ``model.parameter_groups()``.

    Every trainable parameter must be in exactly one group: a parameter left out would
    silently never train.
    """
    groups = model.parameter_groups()
    lr = float(optim.lr)
    out = []
    for name in ("encoder", "decoder"):
        group_lr = getattr(optim, f"{name}_lr")
        out.append({"name": name, "params": list(groups[name]), "lr": float(lr if group_lr is None else group_lr)})
    grouped = {id(p) for g in out for p in g["params"]}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in grouped]
    if missing or len(grouped) != sum(len(g["params"]) for g in out):
        raise RuntimeError(f"parameter_groups() must cover every trainable parameter once; missing: {missing[:5]}")
    return [g for g in out if g["params"]]


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, optim)
    kwargs = dict(betas=tuple(optim.betas), eps=float(optim.eps), weight_decay=float(optim.weight_decay),
                  amsgrad=bool(optim.amsgrad))
    return OPTIMIZERS[optim.name](groups, **kwargs)


def _onecycle(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total: int) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=total,
        pct_start=float(schedule.pct_start),
        anneal_strategy=str(schedule.anneal_strategy),
        div_factor=float(schedule.div_factor),
        final_div_factor=float(schedule.final_div_factor),
    )


def _poly(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total: int, power: float | None = None) -> Any:
    # lr * (1 - t / total) ** power: Keras poly_decay with power 1 is the paper's schedule.
    power = float(schedule.power) if power is None else power
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=power)


def _linear(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total: int) -> Any:
    return _poly(optimizer, schedule, total, power=1.0)


def _cosine(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total: int) -> Any:
    # Ours, not CosineAnnealingLR: the floor is a ratio of each group's own lr (encoder and
    # decoder end at the same fraction of theirs), and the lr stays there past the end.
    floor = float(schedule.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total)))


# name -> builder(optimizer, schedule, total) or None for a constant learning rate.
SCHEDULES: dict[str, Any] = {"none": None, "linear": _linear, "poly": _poly, "onecycle": _onecycle,
                             "cosine": _cosine}


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total_steps: int, total_epochs: int
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict, or None for a constant learning rate.

    ``total_steps`` (optimiser steps of the whole run) is used when the schedule advances per
    step, ``total_epochs`` when it advances per epoch.
    """
    builder = SCHEDULES[schedule.name]
    if builder is None:
        return None
    # OneCycle is defined per optimiser step.
    interval = "step" if builder is _onecycle else schedule.interval
    total = max(int(total_steps if interval == "step" else total_epochs), 1)
    return {"scheduler": builder(optimizer, schedule, total), "interval": interval, "frequency": 1, "name": "lr"}
