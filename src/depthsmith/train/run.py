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

import csv
import io
import json
import math
import os
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.rank_zero import _get_rank
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from .callbacks import (AtomicCheckpointIO, FiniteStateGuard, NonFiniteStateError, ResumableCSVLogger, StepCheckpoint,
                        StepReseed, WriteAtFirstCheckpoint, atomic_write_text, clean_orphans, non_finite_report)
from .config import ConfigError, dump_config, resolve_config, yaml_load
from .data import DepthDataModule
from ..models.card import write_run_card
from .holdout import evaluate_holdout, format_holdout
from .module import DepthTrainModule, NonFiniteLossError, build_model
from .precision import resolve_training_precision

__all__ = ["train", "TrainResult", "RUN_DIR_ENV"]

# Set by rank 0 when it picks a default run directory, so that the processes Lightning
# launches for DDP (which re-run the same command line) write into the same folder.
RUN_DIR_ENV = "DEPTHSMITH_RUN_DIR"


@dataclass
class TrainResult:
    ok: bool
    run_dir: Path
    model_dir: Path | None = None
    best: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def _external_launch() -> bool:
    """True under torchrun / SLURM with several processes (not Lightning's own launcher)."""
    world = os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or "1"
    return world.isdigit() and int(world) > 1


def _default_run_dir(name: str) -> Path:
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if _external_launch() or _get_rank() not in (None, 0):
        raise ConfigError("in a multi-process launch (torchrun, SLURM) every process needs the same --run-dir")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def _apply_launch_args(config: dict[str, Any], devices: Any, strategy: Any, accelerator: Any) -> None:
    trainer = config["trainer"]
    if devices is not None:
        devices = str(devices)
        trainer["devices"] = int(devices) if devices.isdigit() else devices
    if strategy is not None:
        trainer["strategy"] = strategy
    if accelerator is not None:
        trainer["accelerator"] = accelerator


def _strategy(config: Mapping[str, Any]) -> Any:
    strategy = config["trainer"]["strategy"]
    if strategy in ("ddp", "ddp_spawn") and int(config["freeze_encoder_epochs"] or 0) > 0:
        # Frozen encoder parameters get no gradient: DDP must be told to expect that.
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True, start_method="spawn" if strategy == "ddp_spawn" else "popen")
    return strategy


def _loggers(config: Mapping[str, Any], run_dir: Path) -> list[Any]:
    logging = config["logging"]
    loggers: list[Any] = [ResumableCSVLogger(run_dir)]
    if logging["tensorboard"]:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False))
    import importlib.util

    # "auto": log to W&B when it is installed (the report's recipes), silently skip when not.
    wandb = logging["wandb"]
    if wandb == "auto":
        wandb = importlib.util.find_spec("wandb") is not None
    if wandb:
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
        if _get_rank() in (None, 0) and not id_file.is_file():
            atomic_write_text(id_file, run_id)
        loggers.append(WandbLogger(project=logging["wandb_project"], name=run_dir.name, save_dir=str(run_dir),
                                   offline=not online, id=run_id, resume="allow"))
    return loggers


def _close_wandb(loggers: list[Any]) -> None:
    """End this run's W&B run: wandb keeps one run per process, and a second train() in the same
    process (a notebook, the test suite) would otherwise log into the first one's run."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        wandb.finish()


def _wandb_logged_in() -> bool:
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _callbacks(config: Mapping[str, Any], run_dir: Path, has_val: bool) -> tuple[list[Any], ModelCheckpoint | None]:
    folder = run_dir / "checkpoints"
    ckpt = config["checkpoint"]
    callbacks: list[Any] = [
        # last.ckpt at every epoch end, after that epoch's validation (resume point).
        ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
        StepReseed(int(config["trainer"]["seed"] or 0)),
        FiniteStateGuard(),
        LearningRateMonitor(),
    ]
    if ckpt["every_n_train_steps"]:
        callbacks.append(StepCheckpoint(dirpath=folder, filename="last", save_top_k=1,
                                        every_n_train_steps=int(ckpt["every_n_train_steps"]),
                                        enable_version_counter=False))
    best = None
    if has_val:
        best = ModelCheckpoint(dirpath=folder, filename="best", monitor=ckpt["monitor"], mode=ckpt["mode"],
                               save_top_k=1, save_on_train_epoch_end=False, enable_version_counter=False,
                               auto_insert_metric_name=False)
        callbacks.append(best)
    return callbacks, best


def _build_trainer(config: Mapping[str, Any], run_dir: Path, callbacks: list[Any], loggers: list[Any],
                   has_val: bool) -> pl.Trainer:
    t = config["trainer"]
    optional = {k: t[k] for k in ("limit_train_batches", "limit_val_batches", "benchmark") if t[k] is not None}
    if not has_val:
        optional["limit_val_batches"] = 0  # no validation set: skip the loop (and its warnings)
    return pl.Trainer(
        default_root_dir=str(run_dir),
        accelerator=t["accelerator"],
        devices=t["devices"],
        strategy=_strategy(config),
        num_nodes=int(t["num_nodes"]),
        precision=t["precision"],
        max_epochs=t["max_epochs"],
        max_steps=int(t["max_steps"]),
        gradient_clip_val=t["gradient_clip_val"],
        accumulate_grad_batches=int(t["accumulate_grad_batches"]),
        check_val_every_n_epoch=int(t["check_val_every_n_epoch"]),
        deterministic=bool(t["deterministic"]),
        log_every_n_steps=int(t["log_every_n_steps"]),
        enable_progress_bar=bool(config["logging"]["progress_bar"]),
        enable_model_summary=False,
        use_distributed_sampler=False,  # DepthDataModule shards itself (seeded per sample)
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        **optional,
    )


def _read_metrics(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        out.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return out


def _best_metrics(rows: list[dict[str, float]], monitor: str, mode: str) -> dict[str, Any]:
    """The validation row with the best monitored value (or the last epoch's train row)."""
    scored = [r for r in rows if monitor in r and math.isfinite(r[monitor])]
    if scored:
        row = (min if mode == "min" else max)(scored, key=lambda r: r[monitor])
        best = {k: v for k, v in row.items() if k.startswith("val/")}
        best["epoch"] = int(row.get("epoch", -1))
        return best
    epochs = [r for r in rows if "train/loss" in r]
    if epochs:
        best = {k: v for k, v in epochs[-1].items() if k.startswith("train/") and not k.endswith("_step")}
        best["epoch"] = int(epochs[-1].get("epoch", -1))
        return best
    return {}


def _export(config: Mapping[str, Any], checkpoint: Path, model_dir: Path) -> torch.nn.Module:
    """Rebuild the model on CPU (no ImageNet download), load the checkpoint, save_pretrained."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = build_model(config["model"], encoder_weights=None)
    state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    report = non_finite_report(state)
    if report is not None:  # every checkpoint is checked when saved; this covers older ones
        raise NonFiniteStateError(f"{checkpoint}: the model's weights or buffers are not finite: {report}.", step=-1)
    model.load_state_dict(state)
    partial = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(partial, model_dir)
    return model


def _truncate_metrics(path: Path, global_step: int) -> None:
    """Drop metrics.csv rows logged after the checkpoint a run resumes from (they will be logged again)."""
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    keep = [r for r in rows if not r.get("step") or float(r["step"]) < global_step]
    if len(keep) == len(rows):
        return
    with io.StringIO() as buffer:
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(path, buffer.getvalue())


def _prepare_run_dir(config: Mapping[str, Any], run_dir: Path, resume: bool) -> Path | None:
    """Check the folder (rank 0 only) and return the checkpoint to resume from.

    ``--resume`` on a folder without a checkpoint (the run stopped, or was killed, before its
    first one) starts the saved run from the beginning: that is exactly where it stood.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    rank0 = _get_rank() in (None, 0)
    if rank0:
        count, size = clean_orphans(run_dir, run_dir / "checkpoints")
        if count:
            print(f"removed {count} temporary file(s) ({size / 1e6:.1f} MB) left by interrupted writes in {run_dir}",
                  file=sys.stderr)
    if resume:
        if not last.is_file():
            if rank0:
                print(f"{last} does not exist (the run stopped before its first checkpoint): starting it from the "
                      "beginning with its saved config.yaml", file=sys.stderr)
                _truncate_metrics(run_dir / "metrics.csv", 0)  # rows of the lost attempt
            return None
        if rank0:
            # mmap: read one integer, not the whole checkpoint.
            step = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"]
            _truncate_metrics(run_dir / "metrics.csv", int(step))
        return last
    if rank0 and (run_dir / "config.yaml").exists():
        state = "its last checkpoint" if last.is_file() else "the beginning (it has no checkpoint yet)"
        raise ConfigError(
            f"{run_dir} already holds a run; continue it from {state} with --resume, or choose another --run-dir"
        )
    return None


def train(
    config: str | Path | Mapping[str, Any],
    overrides: Sequence[str] | Mapping[str, Any] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
    devices: Any = None,
    strategy: str | None = None,
    accelerator: str | None = None,
    *,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainResult:
    """Train from a recipe name, YAML path or dict; ``overrides`` are "a.b=value" strings.

    ``devices`` / ``strategy`` / ``accelerator`` = None keep the config's values. With
    ``resume=True`` the run continues from ``run_dir/checkpoints/last.ckpt`` with the saved
    ``config.yaml`` (overrides still apply on top, e.g. ``trainer.max_epochs=30`` to extend).
    ``callbacks`` are extra Lightning callbacks (tests, custom hooks).
    """
    started = time.time()
    rank0 = _get_rank() in (None, 0)
    if resume:
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir (the folder of the run to continue)")
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"cannot resume: {saved} not found")
        config = yaml_load(saved.read_text())
    cfg = resolve_config(config, overrides)
    _apply_launch_args(cfg, devices, strategy, accelerator)
    # precision auto -> bf16-mixed or 32-true for this machine; the resolved value is what config.yaml records.
    cfg["trainer"]["precision"] = resolve_training_precision(cfg["trainer"]["precision"], cfg["trainer"]["accelerator"])
    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(cfg["name"] or "run")
    ckpt_path = _prepare_run_dir(cfg, run_dir, resume)

    pl.seed_everything(int(cfg["trainer"]["seed"] or 0), workers=True, verbose=False)
    if cfg["trainer"]["matmul_precision"]:
        torch.set_float32_matmul_precision(cfg["trainer"]["matmul_precision"])
    # Everything that can fail on a bad config fails here, before anything is written.
    datamodule = DepthDataModule(cfg)
    module = DepthTrainModule(cfg)
    loggers = _loggers(cfg, run_dir)
    has_val = datamodule.val_cfg is not None
    callback_list, best_cb = _callbacks(cfg, run_dir, has_val)
    if resume:  # after FiniteStateGuard: a refused checkpoint does not count as a working config
        callback_list.append(WriteAtFirstCheckpoint(run_dir / "config.yaml", dump_config(cfg)))
    trainer = _build_trainer(cfg, run_dir, callback_list + list(callbacks), loggers, has_val)
    if rank0 and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))  # what --resume will read

    error = None
    resume_hint = f"continue with: depthsmith train --config {cfg['name']} --run-dir {run_dir} --resume"
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
        keep = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint had been written yet"
        error = f"Training stopped: {err} Nothing was overwritten: {keep}."
    except SystemExit:
        # Lightning turns Ctrl+C into a graceful shutdown and sys.exit(1).
        if rank0 and (run_dir / "checkpoints" / "last.ckpt").is_file():
            print(f"Training interrupted; {resume_hint}", file=sys.stderr)
        raise
    finally:
        if previous_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous_env
        _close_wandb(loggers)
    if trainer.interrupted and error is None:
        error = f"Training interrupted; {resume_hint}"
    if not trainer.is_global_zero:
        return TrainResult(ok=error is None, run_dir=run_dir, error=error)
    if error is not None:
        return _failed(run_dir, error)
    return _finish(cfg, run_dir, trainer, best_cb, started)


def _failed(run_dir: Path, error: str) -> TrainResult:
    print(error, file=sys.stderr)
    summary = {"status": "failed", "error": error, "run_dir": str(run_dir)}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return TrainResult(ok=False, run_dir=run_dir, error=error, summary=summary)


def _finish(cfg: Mapping[str, Any], run_dir: Path, trainer: pl.Trainer, best_cb: ModelCheckpoint | None,
            started: float) -> TrainResult:
    """Rank 0 after fit: export the best model, held-out evaluation, summary.json, one line."""
    best_ckpt = Path(best_cb.best_model_path) if best_cb is not None and best_cb.best_model_path else None
    source = best_ckpt if best_ckpt is not None and best_ckpt.is_file() else run_dir / "checkpoints" / "last.ckpt"
    model_dir = run_dir / "model"
    try:
        model = _export(cfg, source, model_dir)
    except NonFiniteStateError as err:
        return _failed(run_dir, f"Training stopped: {err} No model was exported.")
    monitor, mode = cfg["checkpoint"]["monitor"], cfg["checkpoint"]["mode"]
    best = _best_metrics(_read_metrics(run_dir / "metrics.csv"), monitor, mode)
    summary: dict[str, Any] = {
        "status": "ok",
        "recipe": cfg["name"],
        "best": best,
        "best_epoch": best.get("epoch"),
        "monitor": monitor if best_ckpt is not None else None,
        "model_dir": str(model_dir),
        "exported_from": str(source),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "wall_time_s": round(time.time() - started, 1),
    }
    if cfg["final_eval"]:
        autocast = "bf16" in str(cfg["trainer"]["precision"])
        summary["holdout"] = evaluate_holdout(model, cfg["final_eval"], batch_size=int(cfg["data"]["batch_size"]),
                                              autocast=autocast)
        print(format_holdout(summary["holdout"]))
        summary["wall_time_s"] = round(time.time() - started, 1)
    write_run_card(model, model_dir, cfg, summary.get("holdout"))  # README.md: data, metrics, licence
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    score = f"best {monitor} {best[monitor]:.4f} at epoch {best['epoch']}" if monitor in best else "no validation set"
    print(f"done in {summary['wall_time_s']:.0f} s: {score}; model: {model_dir} "
          f"(depthsmith predict --model {model_dir} ...)")
    return TrainResult(ok=True, run_dir=run_dir, model_dir=model_dir, best=best, summary=summary)
