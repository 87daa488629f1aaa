"""The Lightning Trainer of a run: its loggers, callbacks, strategy and settings from the config."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_only  # public; Lightning sets .rank from RANK / LOCAL_RANK
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from .callbacks import (AtomicCheckpointIO, FiniteStateGuard, ResumableCSVLogger, StepCheckpoint, StepReseed,
                        atomic_write_text)
from .config import ConfigError
from .schema import LoggingConfig, TrainConfig

__all__ = ["build_loggers", "close_wandb", "build_callbacks", "build_trainer"]


def _strategy(config: TrainConfig) -> Any:
    strategy = config.trainer.strategy
    if strategy in ("ddp", "ddp_spawn") and int(config.freeze_encoder_epochs or 0) > 0:
        # Frozen encoder parameters get no gradient: DDP must be told to expect that.
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True, start_method="spawn" if strategy == "ddp_spawn" else "popen")
    return strategy


def build_loggers(config: TrainConfig, run_dir: Path) -> list[Any]:
    logging = config.logging
    loggers: list[Any] = [ResumableCSVLogger(run_dir)]
    if logging.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False))
    # "auto": log to W&B when it is installed (the report's recipes), silently skip when not.
    wandb = logging.wandb
    if wandb == "auto":
        wandb = importlib.util.find_spec("wandb") is not None
    if wandb:
        loggers.append(_wandb_logger(logging, run_dir))
    return loggers


def _wandb_logger(logging: LoggingConfig, run_dir: Path) -> Any:
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "logging.wandb is true but wandb is not installed: pip install 'depthsmith[wandb]', "
            "or set logging.wandb=false"
        )
    from lightning.pytorch.loggers import WandbLogger

    # Offline unless the user has credentials: never block or upload without asking.
    online = bool(os.environ.get("WANDB_API_KEY")) or _wandb_logged_in()
    # One W&B run per run directory: its id is kept next to the checkpoints for --resume.
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0 and not id_file.is_file():
        atomic_write_text(id_file, run_id)
    return WandbLogger(project=logging.wandb_project, name=run_dir.name, save_dir=str(run_dir),
                       offline=not online, id=run_id, resume="allow")


def close_wandb(loggers: list[Any]) -> None:
    """End this run's W&B run: wandb keeps one run per process, and a second train() in the same
    process (a notebook, the test suite) would otherwise log into the first one's run."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()


def _wandb_logged_in() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def build_callbacks(config: TrainConfig, run_dir: Path,
                    has_val: bool) -> tuple[list[Any], ModelCheckpoint | None]:
    """The run's callbacks, and the best-checkpoint one (None without a validation set)."""
    folder = run_dir / "checkpoints"
    ckpt = config.checkpoint
    callbacks: list[Any] = [
        # last.ckpt at every epoch end, after that epoch's validation (resume point).
        ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
        StepReseed(int(config.trainer.seed or 0)),
        FiniteStateGuard(),
        LearningRateMonitor(),
    ]
    if ckpt.every_n_train_steps:
        callbacks.append(StepCheckpoint(dirpath=folder, filename="last", save_top_k=1,
                                        every_n_train_steps=int(ckpt.every_n_train_steps),
                                        enable_version_counter=False))
    best = None
    if has_val:
        best = ModelCheckpoint(dirpath=folder, filename="best", monitor=ckpt.monitor, mode=ckpt.mode,
                               save_top_k=1, save_on_train_epoch_end=False, enable_version_counter=False,
                               auto_insert_metric_name=False)
        callbacks.append(best)
    return callbacks, best


def build_trainer(config: TrainConfig, run_dir: Path, callbacks: list[Any], loggers: list[Any],
                  has_val: bool) -> pl.Trainer:
    t = config.trainer
    optional = {k: getattr(t, k) for k in ("limit_train_batches", "limit_val_batches", "benchmark")
                if getattr(t, k) is not None}
    if not has_val:
        optional["limit_val_batches"] = 0  # no validation set: skip the loop (and its warnings)
    return pl.Trainer(
        default_root_dir=str(run_dir),
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=_strategy(config),
        num_nodes=int(t.num_nodes),
        precision=t.precision,
        max_epochs=t.max_epochs,
        max_steps=int(t.max_steps),
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=int(t.accumulate_grad_batches),
        check_val_every_n_epoch=int(t.check_val_every_n_epoch),
        deterministic=bool(t.deterministic),
        log_every_n_steps=int(t.log_every_n_steps),
        enable_progress_bar=bool(config.logging.progress_bar),
        enable_model_summary=False,
        use_distributed_sampler=False,  # DepthDataModule shards itself (seeded per sample)
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        **optional,
    )
