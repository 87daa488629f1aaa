"""``train()``: one run from a config to a run directory with checkpoints and an exported model.

Run directory::

    config.yaml          the resolved config (what was really run)
    metrics.csv          Lightning CSVLogger: per-step and per-epoch metrics
    hparams.yaml         written by Lightning's loggers
    tb/                  TensorBoard
    wandb/               only with logging.wandb: true
    checkpoints/last.ckpt, checkpoints/best.ckpt   (written atomically)
    model/               save_pretrained of the best model (config.json + model.safetensors)
    summary.json         best metrics, epoch, paths, held-out evaluation if configured
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only  # public; Lightning sets .rank from RANK / LOCAL_RANK

from ..device import resolve_precision
from ..paths import atomic_write_text
from .callbacks import NonFiniteStateError, WriteAtFirstCheckpoint
from .config import dump_config, resolve_config
from .data import DepthDataModule
from .finish import TrainResult, failed, finish
from .module import CollapsedOutputError, DepthTrainModule, NonFiniteLossError
from .run_dir import RUN_DIR_ENV, check_resume_length, default_run_dir, prepare_run_dir, saved_config
from .schema import PRECISION_ALIASES, TrainConfig
from .trainer import build_callbacks, build_loggers, build_trainer, close_wandb

__all__ = ["train", "TrainResult", "RUN_DIR_ENV"]


def _apply_launch_args(config: TrainConfig, devices: Any, strategy: Any, accelerator: Any) -> None:
    trainer = config.trainer
    if devices is not None:
        devices = str(devices)
        trainer.devices = int(devices) if devices.isdigit() else devices
    if strategy is not None:
        trainer.strategy = strategy
    if accelerator is not None:
        trainer.accelerator = accelerator


def _resolve(config: str | Path | Mapping[str, Any] | TrainConfig, overrides: Sequence[str] | Mapping[str, Any],
             resume: bool, run_dir: str | Path | None, launch: tuple[Any, Any, Any]) -> TrainConfig:
    """The config this run really runs: the saved one on resume, overrides and launch arguments on top."""
    saved = saved_config(run_dir) if resume else None
    cfg = resolve_config(saved if resume else config, overrides)
    _apply_launch_args(cfg, *launch)
    if saved is not None:
        check_resume_length(saved, cfg, Path(run_dir))
    # precision auto -> bf16-mixed or 32-true for this machine; the resolved value is what config.yaml records.
    trainer = cfg.trainer
    if trainer.precision == "auto":
        trainer.precision = PRECISION_ALIASES[resolve_precision("auto", _precision_device(trainer.accelerator))]
    return cfg


def _precision_device(accelerator: Any) -> str:
    """The device ``resolve_precision`` asks for a Lightning accelerator: the GPU for gpu/cuda,
    auto as it resolves, and the CPU's answer for any other (as before: mps, tpu, an object)."""
    accelerator = str(accelerator or "auto")
    return accelerator if accelerator in ("auto", "gpu", "cuda") else "cpu"


def _fit(trainer: pl.Trainer, module: DepthTrainModule, datamodule: DepthDataModule, ckpt_path: Path | None,
         run_dir: Path, resume_hint: str, loggers: list[Any]) -> str | None:
    """``trainer.fit``; returns the error message of a run stopped by non-finite numbers or Ctrl+C."""
    error = None
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # read by the DDP processes Lightning starts
    try:
        with warnings.catch_warnings():
            # Resuming writes into the existing checkpoints/ folder on purpose.
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None,
                        weights_only=True)
    except (NonFiniteLossError, NonFiniteStateError) as err:
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            keep = "no checkpoint had been written yet"
        elif isinstance(err, CollapsedOutputError):  # finite checkpoints, the latest maybe already collapsed
            keep = f"the checkpoints in {last.parent} are as they were saved"
        else:
            keep = f"the last good checkpoint is {last}"
        error = f"Training stopped: {err} Nothing was overwritten: {keep}."
    except SystemExit:
        # Lightning turns Ctrl+C into a graceful shutdown and sys.exit(1).
        if rank_zero_only.rank == 0 and (run_dir / "checkpoints" / "last.ckpt").is_file():
            print(f"Training interrupted; {resume_hint}", file=sys.stderr)
        raise
    finally:
        if previous_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous_env
        close_wandb(loggers)
    if trainer.interrupted and error is None:
        error = f"Training interrupted; {resume_hint}"
    return error


def train(
    config: str | Path | Mapping[str, Any] | TrainConfig,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
    devices: Any = None,
    strategy: str | None = None,
    accelerator: str | None = None,
    *,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainResult:
    """Train from a recipe name, YAML path, dict or TrainConfig; ``overrides`` are "a.b=value" strings.

    ``devices`` / ``strategy`` / ``accelerator`` = None keep the config's values. With
    ``resume=True`` the run continues from ``run_dir/checkpoints/last.ckpt`` with the saved
    ``config.yaml`` (overrides still apply on top, e.g. ``trainer.max_epochs=30`` to extend a run
    with a constant learning rate; a scheduled run refuses a new length, see ``check_resume_length``).
    ``callbacks`` are extra Lightning callbacks (tests, custom hooks).
    """
    started = time.time()
    cfg = _resolve(config, overrides, resume, run_dir, (devices, strategy, accelerator))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg.name or "run")
    ckpt_path = prepare_run_dir(cfg, run_dir, resume)

    pl.seed_everything(int(cfg.trainer.seed or 0), workers=True, verbose=False)
    if cfg.trainer.matmul_precision:
        torch.set_float32_matmul_precision(cfg.trainer.matmul_precision)
    # Everything that can fail on a bad config fails here, before anything is written.
    datamodule = DepthDataModule(cfg)
    module = DepthTrainModule(cfg)
    loggers = build_loggers(cfg, run_dir)
    has_val = datamodule.val_cfg is not None
    callback_list, best_cb = build_callbacks(cfg, run_dir, has_val)
    if resume:  # after FiniteStateGuard: a refused checkpoint does not count as a working config
        callback_list.append(WriteAtFirstCheckpoint(run_dir / "config.yaml", dump_config(cfg)))
    trainer = build_trainer(cfg, run_dir, callback_list + list(callbacks), loggers, has_val)
    if rank_zero_only.rank == 0 and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))  # what --resume will read

    resume_hint = f"continue with: depthsmith train --config {cfg.name} --run-dir {run_dir} --resume"
    error = _fit(trainer, module, datamodule, ckpt_path, run_dir, resume_hint, loggers)
    if not trainer.is_global_zero:
        return TrainResult(ok=error is None, run_dir=run_dir, error=error)
    if error is not None:
        return failed(run_dir, error)
    return finish(cfg, run_dir, trainer, best_cb, started)
