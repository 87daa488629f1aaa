"""The few pieces Lightning does not do the way a training run needs them.

- AtomicCheckpointIO: Lightning's TorchCheckpointIO writes the checkpoint file in place, so a
  kill during the write leaves a truncated ``last.ckpt`` and the run cannot be resumed. Here
  the bytes go to a temporary file in the same folder, are fsync'ed, then ``os.replace``d over
  the target: readers see either the old complete file or the new complete file.
- StepReseed: reseeds torch / numpy / random before every training batch from (seed, rank,
  epoch, batch), so model-side randomness (dropout, drop-path) is the same in a resumed run
  as in an uninterrupted one. Lightning does not store RNG states in checkpoints, and its
  sanity check and loader creation consume random numbers at different moments in the two
  cases. (Augmentations are seeded per sample in train/data.py.)
- ResumableCSVLogger: Lightning's CSVLogger deletes an existing metrics.csv when it starts;
  a resumed run must append to it instead.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "StepReseed", "ResumableCSVLogger", "atomic_write_text"]


_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temp file next to ``path``, with the permissions a normal open() would give (mkstemp uses 0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~_UMASK)
    return fd, tmp


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible on Windows, harmless to skip there.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic: temp file in the same folder + os.replace."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _mkstemp(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                self._write(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    @staticmethod
    def _write(checkpoint: dict[str, Any], handle: Any) -> None:
        torch.save(checkpoint, handle)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small text file (config.yaml, summary.json) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class StepReseed(pl.Callback):
    """Seed torch, numpy and random from (seed, rank, epoch, batch) before each training batch."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        key = [self.seed, trainer.global_rank, trainer.current_epoch, batch_idx]
        value = int(np.random.SeedSequence(key).generate_state(1)[0])
        torch.manual_seed(value)  # CPU and every CUDA device
        np.random.seed(value)
        random.seed(value)


class _AppendingWriter(ExperimentWriter):
    """CSV writer that keeps an existing metrics.csv (and its columns) and appends to it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                header = next(csv.reader(handle), [])
            self.metrics_keys = sorted(header)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger writing ``<save_dir>/metrics.csv`` directly; appends when the file exists."""

    def __init__(self, save_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, name="", version="", **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:  # type: ignore[override]
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
