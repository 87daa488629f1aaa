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

from ..paths import check_output_dir
from .callbacks import LAST, PREVIOUS, clean_orphans
from .config import ConfigError, config_value, yaml_load
from .metrics_file import truncate_metrics
from .schema import TrainConfig

__all__ = ["RUN_DIR_ENV", "default_run_dir", "saved_config", "prepare_run_dir", "check_resume_length",
           "resume_checkpoint"]

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
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise ConfigError(f"cannot resume: --run-dir {run_dir} is a file, not a run folder")
    if not saved.is_file():
        raise ConfigError(f"cannot resume: {saved} not found")
    return yaml_load(saved.read_text())


# What fixes how many optimiser steps a run has, which a learning-rate schedule is laid out over.
LENGTH_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches",
               "trainer.accumulate_grad_batches", "data.batch_size")


def check_resume_length(saved: Mapping[str, Any], config: TrainConfig, run_dir: Path) -> None:
    """Refuse a resume that changes the run's length under a learning-rate schedule.

    The schedule was laid out over the original number of steps and its state is in the
    checkpoint: OneCycle then fails with torch's "Tried to step N times", linear/poly decay sit at
    lr 0 for every added step, cosine jumps. A constant learning rate (``schedule.name=none``)
    extends fine; so does a run with no checkpoint yet (it starts from the beginning).
    """
    schedule = config.schedule.name
    if schedule == "none" or not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return
    before = {k: config_value(saved, k) for k in LENGTH_KEYS}  # the saved config.yaml, as written
    after = {k: config_value(config.to_dict(), k) for k in LENGTH_KEYS}
    changed = [f"{k} {before[k]!r} -> {after[k]!r}" for k in LENGTH_KEYS if before[k] != after[k]]
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir} with {', '.join(changed)}: its {schedule} learning-rate schedule was laid out "
            "over the run's original length and cannot be stretched mid-run. Resume with the same length, or train "
            f"longer as a new run that starts from this one's weights: --set model.init_from={run_dir / 'model'} "
            "--set 'model.init_parts=[encoder, decoder]' (with a new --run-dir)."
        )


def _load_problem(path: Path) -> tuple[int | None, str | None]:
    """(global_step, None) for a checkpoint that loads whole, else (None, what is wrong with it)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # whole: a truncated tail fails here
        missing = [k for k in ("global_step", "state_dict", "loops") if k not in ckpt]
        if missing:
            return None, f"no {', '.join(missing)} in it (not a Lightning training checkpoint)"
        return int(ckpt["global_step"]), None
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError ... for a damaged file
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'unreadable'}"


def resume_checkpoint(run_dir: Path, rank0: bool = True) -> tuple[Path, int] | None:
    """The checkpoint ``--resume`` continues from and its step: ``last.ckpt`` if it loads, else the
    newest one that does (``previous.ckpt``, the last.ckpt before it, then any other ``*.ckpt`` of
    the folder by time), saying so; None when the folder has none. A damaged last.ckpt is renamed
    ``last.ckpt.unreadable`` (so the next save does not keep it as previous.ckpt); when no
    checkpoint loads, a ConfigError names each file and what is wrong."""
    folder = run_dir / "checkpoints"
    others = sorted((p for p in folder.glob("*.ckpt") if p.name not in (LAST, PREVIOUS)),
                    key=lambda p: p.stat().st_mtime_ns, reverse=True)
    candidates = [p for p in (folder / LAST, folder / PREVIOUS, *others) if p.is_file()]
    problems: list[str] = []
    for path in candidates:
        step, problem = _load_problem(path)
        if problem is not None:
            problems.append(f"{path} cannot be loaded ({problem})")
            continue
        if problems and rank0:
            print(f"{'; '.join(problems)}: resuming from {path} (step {step}), the newest checkpoint that loads",
                  file=sys.stderr)
            bad_last = folder / LAST
            if bad_last.is_file() and path != bad_last:
                os.replace(bad_last, bad_last.with_name(LAST + ".unreadable"))
        return path, step
    if problems:
        raise ConfigError(f"cannot resume {run_dir}: {'; '.join(problems)}, and no other checkpoint in {folder} "
                          "loads. Start the run again in a new --run-dir (or without --resume in an empty one).")
    return None


def prepare_run_dir(config: TrainConfig | Mapping[str, Any], run_dir: Path, resume: bool) -> Path | None:
    """Check the folder (rank 0 only) and return the checkpoint to resume from.

    A run folder that is a file, cannot be written or sits on a nearly full disk is refused
    before anything is written. ``--resume`` on a folder without a checkpoint (the run stopped,
    or was killed, before its first one) starts the saved run from the beginning: that is
    exactly where it stood; a damaged last.ckpt falls back to an older one (``resume_checkpoint``).
    """
    last = run_dir / "checkpoints" / LAST
    rank0 = rank_zero_only.rank == 0
    if rank0:
        check_output_dir(run_dir, "--run-dir", create=False)
        count, size = clean_orphans(run_dir, run_dir / "checkpoints")
        if count:
            print(f"removed {count} temporary file(s) ({size / 1e6:.1f} MB) left by interrupted writes in {run_dir}",
                  file=sys.stderr)
    if resume:
        found = resume_checkpoint(run_dir, rank0)
        if found is None:
            if rank0:
                print(f"{last} does not exist (the run stopped before its first checkpoint): starting it from the "
                      "beginning with its saved config.yaml", file=sys.stderr)
                truncate_metrics(run_dir / "metrics.csv", 0)  # rows of the lost attempt
            return None
        path, step = found
        if rank0:
            truncate_metrics(run_dir / "metrics.csv", step)
        return path
    if rank0 and (run_dir / "config.yaml").exists():
        state = "its last checkpoint" if last.is_file() else "the beginning (it has no checkpoint yet)"
        raise ConfigError(
            f"{run_dir} already holds a run; continue it from {state} with --resume, or choose another --run-dir"
        )
    return None
