"""After ``fit`` (rank 0): export the best model, held-out evaluation, run card, summary.json."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ..models.card import write_run_card
from ..paths import atomic_write_text
from .callbacks import NonFiniteStateError, non_finite_report
from .holdout import evaluate_holdout, format_holdout
from .metrics_file import best_metrics, read_metrics
from .module import build_model
from .schema import TrainConfig
from .working_size import model_section

__all__ = ["TrainResult", "export_model", "failed", "finish"]


@dataclass
class TrainResult:
    ok: bool
    run_dir: Path
    model_dir: Path | None = None
    best: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def export_model(config: TrainConfig, checkpoint: Path, model_dir: Path) -> torch.nn.Module:
    """Rebuild the model on CPU (no ImageNet download), load the checkpoint, save_pretrained."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = build_model(model_section(config), encoder_weights=None)
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


def failed(run_dir: Path, error: str) -> TrainResult:
    print(error, file=sys.stderr)
    summary = {"status": "failed", "error": error, "run_dir": str(run_dir)}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return TrainResult(ok=False, run_dir=run_dir, error=error, summary=summary)


def finish(cfg: TrainConfig, run_dir: Path, trainer: pl.Trainer, best_cb: ModelCheckpoint | None,
           started: float) -> TrainResult:
    """Rank 0 after fit: export the best model, held-out evaluation, summary.json, one line."""
    best_ckpt = Path(best_cb.best_model_path) if best_cb is not None and best_cb.best_model_path else None
    source = best_ckpt if best_ckpt is not None and best_ckpt.is_file() else run_dir / "checkpoints" / "last.ckpt"
    model_dir = run_dir / "model"
    try:
        model = export_model(cfg, source, model_dir)
    except NonFiniteStateError as err:
        return failed(run_dir, f"Training stopped: {err} No model was exported.")
    monitor, mode = cfg.checkpoint.monitor, cfg.checkpoint.mode
    best = best_metrics(read_metrics(run_dir / "metrics.csv"), monitor, mode)
    summary: dict[str, Any] = {
        "status": "ok",
        "recipe": cfg.name,
        "best": best,
        "best_epoch": best.get("epoch"),
        "monitor": monitor if best_ckpt is not None else None,
        "model_dir": str(model_dir),
        "exported_from": str(source),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "wall_time_s": round(time.time() - started, 1),
    }
    if cfg.final_eval:
        autocast = "bf16" in str(cfg.trainer.precision)
        summary["holdout"] = evaluate_holdout(model, cfg.final_eval, batch_size=int(cfg.data.batch_size),
                                              autocast=autocast)
        print(format_holdout(summary["holdout"]))
        summary["wall_time_s"] = round(time.time() - started, 1)
    write_run_card(model, model_dir, cfg.to_dict(), summary.get("holdout"))  # README.md: data, metrics, licence
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    score = f"best {monitor} {best[monitor]:.4f} at epoch {best['epoch']}" if monitor in best else "no validation set"
    print(f"done in {summary['wall_time_s']:.0f} s: {score}; model: {model_dir} "
          f"(depthsmith predict --model {model_dir} ...)")
    return TrainResult(ok=True, run_dir=run_dir, model_dir=model_dir, best=best, summary=summary)
