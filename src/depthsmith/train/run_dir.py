"""The run folder before training: which folder, the config a resume reads, what to resume from."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only  # public; Lightning sets .rank from RANK / LOCAL_RANK

from .callbacks import clean_orphans
from .config import ConfigError, config_value, yaml_load
from .metrics_file import truncate_metrics

__all__ = ["RUN_DIR_ENV", "default_run_dir", "saved_config", "prepare_run_dir", "check_resume_length"]

# Set by rank 0 when it picks a default run directory, so that the processes Lightning
# launches for DDP (which re-run the same command line) write into the same folder.
RUN_DIR_ENV = "DEPTHSMITH_RUN_DIR"


def _external_launch() -> bool:
    """True under torchrun / SLURM with several processes (not Lightning's own launcher)."""
    world = os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or "1"
    return world.isdigit() and int(world) > 1


def default_run_dir(name: str) -> Path:
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if _external_launch() or rank_zero_only.rank != 0:
        raise ConfigError("in a multi-process launch (torchrun, SLURM) every process needs the same --run-dir")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def saved_config(run_dir: str | Path | None) -> dict[str, Any]:
    """The config.yaml of the run ``--resume`` continues."""
    if run_dir is None:
        raise ConfigError("--resume needs --run-dir (the folder of the run to continue)")
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"cannot resume: {saved} not found")
    return yaml_load(saved.read_text())


# What fixes how many optimiser steps a run has, which a learning-rate schedule is laid out over.
LENGTH_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches",
               "trainer.accumulate_grad_batches", "data.batch_size")


def check_resume_length(saved: Mapping[str, Any], config: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse a resume that changes the run's length under a learning-rate schedule.

    The schedule was laid out over the original number of steps and its state is in the
    checkpoint: OneCycle then fails with torch's "Tried to step N times", linear/poly decay sit at
    lr 0 for every added step, cosine jumps. A constant learning rate (``schedule.name=none``)
    extends fine; so does a run with no checkpoint yet (it starts from the beginning).
    """
    schedule = config_value(config, "schedule.name")
    if schedule in (None, "none") or not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return
    before = {k: config_value(saved, k) for k in LENGTH_KEYS}
    after = {k: config_value(config, k) for k in LENGTH_KEYS}
    changed = [f"{k} {before[k]!r} -> {after[k]!r}" for k in LENGTH_KEYS if before[k] != after[k]]
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir} with {', '.join(changed)}: its {schedule} learning-rate schedule was laid out "
            "over the run's original length and cannot be stretched mid-run. Resume with the same length, or train "
            f"longer as a new run that starts from this one's weights: --set model.init_from={run_dir / 'model'} "
            "--set 'model.init_parts=[encoder, decoder]' (with a new --run-dir)."
        )


def prepare_run_dir(config: Mapping[str, Any], run_dir: Path, resume: bool) -> Path | None:
    """Check the folder (rank 0 only) and return the checkpoint to resume from.

    ``--resume`` on a folder without a checkpoint (the run stopped, or was killed, before its
    first one) starts the saved run from the beginning: that is exactly where it stood.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    rank0 = rank_zero_only.rank == 0
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
                truncate_metrics(run_dir / "metrics.csv", 0)  # rows of the lost attempt
            return None
        if rank0:
            # mmap: read one integer, not the whole checkpoint.
            step = torch.load(last, map_location="cpu", weights_only=True, mmap=True)["global_step"]
            truncate_metrics(run_dir / "metrics.csv", int(step))
        return last
    if rank0 and (run_dir / "config.yaml").exists():
        state = "its last checkpoint" if last.is_file() else "the beginning (it has no checkpoint yet)"
        raise ConfigError(
            f"{run_dir} already holds a run; continue it from {state} with --resume, or choose another --run-dir"
        )
    return None
