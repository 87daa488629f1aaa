"""The few pieces Lightning does not do the way a training run needs them.

- AtomicCheckpointIO: Lightning's TorchCheckpointIO writes the checkpoint file in place, so a
  kill during the write leaves a truncated ``last.ckpt`` and the run cannot be resumed. Here
  the bytes go to a temporary file in the same folder, are fsync'ed, then ``os.replace``d over
  the target: readers see either the old complete file or the new complete file.
  The ``last.ckpt`` it replaces is kept as ``previous.ckpt`` (``keep_previous``).
- StepReseed: reseeds torch / numpy / random before every training batch from (seed, rank,
  epoch, batch), so model-side randomness (dropout, drop-path) is the same in a resumed run
  as in an uninterrupted one. Lightning does not store RNG states in checkpoints, and its
  sanity check and loader creation consume random numbers at different moments in the two
  cases. (Augmentations are seeded per sample in train/data.py.)
- ResumableCSVLogger: Lightning's CSVLogger deletes an existing metrics.csv when it starts;
  a resumed run must append to it instead.
- FiniteStateGuard: the loss check in the module misses weights and buffers that overflow
  while the loss stays finite (at a huge learning rate BatchNorm's running_var becomes inf,
  the sigmoid output saturates, the loss does not): every checkpoint is checked first, and
  a bad state stops the run with the previous checkpoint left as it was.
- StepCheckpoint: ``checkpoint.every_n_train_steps`` without the one checkpoint Lightning
  cannot resume correctly (see the class).
- clean_orphans: a kill during an atomic write leaves its temp file; they are removed on start.
- WriteAtFirstCheckpoint: a resumed run's config.yaml (saved config + new overrides) is
  written only once the run has loaded its checkpoint and trained with it, so a resume that
  fails (say, an override that does not fit the checkpoint) does not make the next plain
  ``--resume`` fail the same way.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..paths import atomic_write_text, fsync_dir, temp_beside

__all__ = ["AtomicCheckpointIO", "StepReseed", "ResumableCSVLogger", "atomic_write_text", "FiniteStateGuard",
           "NonFiniteStateError", "non_finite_report", "clean_orphans", "WriteAtFirstCheckpoint", "StepCheckpoint"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic: temp file in the same folder + os.replace."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)  # the temp-file rule of every writer (depthsmith.paths)
        handle = _RecordingWriter(os.fdopen(fd, "wb"))
        try:
            with handle.file:
                self._write(checkpoint, handle)
                handle.flush()
                os.fsync(handle.file.fileno())
            if path.name == LAST:
                keep_previous(path)
            os.replace(tmp, path)
        except Exception as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            # torch.save turns a failed write (disk full, file too large) into an opaque
            # RuntimeError: report the OSError underneath and what is still on disk.
            cause = handle.error or err
            kept = f"the previous {path.name} is unchanged" if path.is_file() else f"no {path.name} was written"
            raise OSError(getattr(cause, "errno", None),
                          f"could not write the checkpoint {path} ({getattr(cause, 'strerror', None) or cause}); "
                          f"{kept}. Free disk space, then continue with --resume") from err
        except BaseException:  # a kill-like interrupt: clean up, change nothing else
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(path.parent)

    @staticmethod
    def _write(checkpoint: dict[str, Any], handle: Any) -> None:
        torch.save(checkpoint, handle)


LAST, PREVIOUS = "last.ckpt", "previous.ckpt"


def keep_previous(last: Path) -> None:
    """Keep the ``last.ckpt`` about to be replaced as ``previous.ckpt`` (a hard link: no copy, and
    the disk cost of one more checkpoint only once the new last.ckpt is in place), so a
    ``last.ckpt`` damaged later (a bad copy, a failing disk) leaves a checkpoint to resume from
    (``run_dir.resume_checkpoint``). A file system without hard links just has no previous.ckpt."""
    if not last.is_file():
        return
    link = last.with_name(f".{PREVIOUS}.{os.getpid()}.tmp")  # the orphan pattern clean_orphans removes
    with contextlib.suppress(OSError):
        link.unlink(missing_ok=True)
        os.link(last, link)
        os.replace(link, last.with_name(PREVIOUS))


class _RecordingWriter:
    """A file for torch.save that remembers the first OSError of a write."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.file.flush()


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


class NonFiniteStateError(RuntimeError):
    """A weight or buffer became NaN or inf; the message names the step and the first bad tensor."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


def non_finite_report(state: Mapping[str, Any]) -> str | None:
    """None when every floating tensor of ``state`` is finite; else which ones are not."""
    bad = []
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point():
            count = int((~torch.isfinite(value)).sum())
            if count:
                bad.append((name, count, value.numel()))
    if not bad:
        return None
    name, count, total = bad[0]
    more = f"; {len(bad)} tensors in all are not finite" if len(bad) > 1 else ""
    return f"first bad tensor {name} ({count} of {total} values NaN or inf){more}"


class FiniteStateGuard(pl.Callback):
    """Refuse to checkpoint (and so to export) a model whose weights or buffers are not finite."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        report = non_finite_report(checkpoint["state_dict"])
        # Every DDP rank decides together (BatchNorm buffers are per rank), or one would hang.
        if trainer.strategy.reduce_boolean_decision(report is not None, all=False):
            raise NonFiniteStateError(
                f"the model's weights or buffers are not finite at global step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}): {report or 'on another rank'}. The loss may still look finite. "
                "Try a lower optim.lr or trainer.gradient_clip_val=1.0.",
                step=trainer.global_step,
            )


def clean_orphans(*folders: Path) -> tuple[int, int]:
    """Delete the temp files that killed atomic writes left in ``folders``: (count, bytes).

    Only names our own writers make (``.<target>.<random>.tmp``, see paths.temp_beside); a run
    folder is used by one run at a time, so none of them can belong to a live write.
    """
    count = size = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                bytes_ = path.stat().st_size
                path.unlink()
                count, size = count + 1, size + bytes_
    return count, size


class WriteAtFirstCheckpoint(pl.Callback):
    """Write ``text`` to ``path`` (rank 0, atomically) when the run saves its first checkpoint."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = Path(path), text

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.text is not None and trainer.is_global_zero:
            atomic_write_text(self.path, self.text)
        self.text = None


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint every N optimiser steps, except after the last batch of an epoch.

    That checkpoint is taken before the epoch's validation, and Lightning 2.6 resumes it with
    the epoch counters one short: a run killed there, resumed, and killed again in a later
    epoch's validation trains one batch too many when resumed (OneCycle then fails with
    "Tried to step 17 times"). The end-of-epoch last.ckpt, written right after validation,
    covers that point instead.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
