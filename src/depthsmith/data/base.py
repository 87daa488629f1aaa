"""The common dataset interface: every reader yields the same sample dict.

A sample is ``{"image": float32 3xHxW RGB in [0, 1], "depth": float32 1xHxW metres
(invalid = 0), "mask": bool 1xHxW (True = valid), "name": str}``.

Bad data. ``on_error="raise"`` (default) raises :class:`DataError` naming the file.
``on_error="skip"`` returns the next good sample instead (so the default collate works;
training is fine with that: a batch stays full and one good sample is seen twice that
epoch), or ``None`` when ``substitute_skipped`` is False (evaluation sets it: a substitute
would score one image twice and hide the bad one), appends ``(name, reason)`` to
``dataset.skipped`` and warns, once per bad sample. DataLoader workers hold their own
copies of the dataset, so their ``skipped`` lists never reach the main process; the
warnings (printed by the workers) do. For a count that is exact at the end of a run,
call :meth:`DepthDataset.validate` in the main process before building the loader:
it reads every sample once, records the bad ones in ``skipped`` and, in skip mode,
removes them from the index so workers never meet them (``data check`` does the same scan).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, InputError

__all__ = ["DataError", "DepthDataset", "make_sample", "ON_ERROR"]

ON_ERROR = ("raise", "skip")
Sample = dict[str, Any]


def make_sample(
    rgb: np.ndarray,
    depth: np.ndarray,
    name: str,
    min_depth: float | None = None,
    max_depth: float | None = None,
    depth_name: str | None = None,
) -> Sample:
    """Build the sample dict from H x W x 3 RGB (uint8 or float in [0, 1]) and H x W metres.

    Valid pixels are finite, > 0, > ``min_depth`` and <= ``max_depth``; all others get depth 0
    so that a loss never sees NaN/inf. Raises DataError on a size mismatch or no valid pixel;
    ``depth_name``, the depth file when it is not ``name`` (the RGB file), is the file those name.
    """
    if rgb.shape[:2] != depth.shape[:2]:
        raise DataError(
            f"{depth_name or name}: RGB is {rgb.shape[0]}x{rgb.shape[1]} but depth is {depth.shape[0]}x{depth.shape[1]}"
            f"{f' (RGB {name})' if depth_name else ''}; they must be the same size"
        )
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(depth) & (depth > (min_depth or 0.0))
        if max_depth is not None:
            mask &= depth <= max_depth
    if not mask.any():
        valid = f"finite, > {min_depth or 0.0:g}" + (f" and <= {max_depth:g}" if max_depth is not None else "")
        raise DataError(f"{depth_name or name}: depth map has no valid pixel (valid depth is {valid} metres"
                        f"{f'; RGB {name}' if depth_name else ''})")
    depth = np.where(mask, depth, np.float32(0.0))
    # Conversions stay in NumPy: tiny torch ops can cost more in thread-pool wake-ups than in work.
    chw = rgb.transpose(2, 0, 1)
    if rgb.dtype == np.uint8:
        image = np.multiply(chw, np.float32(1.0 / 255.0), dtype=np.float32)
    else:
        image = np.clip(chw, 0.0, 1.0).astype(np.float32)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)),
        "depth": torch.from_numpy(depth)[None],
        "mask": torch.from_numpy(mask)[None],
        "name": name,
    }


class DepthDataset(Dataset):
    """Base class: subclasses implement ``__len__``-backing ``_count()``, ``_load(i)`` and ``_name(i)``.

    ``_load`` returns ``(rgb, depth_metres, name)``; this class handles masks, min/max depth,
    bad-data policy and the optional transform. Subclasses keep open file handles in
    attributes listed in ``_handles`` so that pickling (DataLoader workers) drops them and
    each process reopens its own on first access.
    """

    _handles: tuple[str, ...] = ()
    # The constructor argument that says where the data is: ``data.root`` of a training config fills
    # it when unset (train/data.py). None: the reader reads no files (synthetic).
    root_key: str | None = None

    @classmethod
    def root_key_for(cls, cfg: Mapping[str, Any]) -> str | None:
        """``root_key`` for this config (a reader whose path argument depends on its options overrides it)."""
        return cls.root_key
    substitute_skipped = True  # on_error="skip": next good sample (True) or None (False) for a bad one

    def __init__(
        self,
        min_depth: float | None = None,
        max_depth: float | None = None,
        on_error: str = "raise",
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise InputError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if min_depth is not None and max_depth is not None and min_depth >= max_depth:
            raise InputError(f"min_depth ({min_depth}) must be below max_depth ({max_depth})")
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.on_error = on_error
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []
        self._index: list[int] | None = None  # a selection of sources (holdout split, validate)
        self._pid = os.getpid()

    # -- subclass interface -------------------------------------------------------------
    def _count(self) -> int:
        raise NotImplementedError

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError

    def _name(self, i: int) -> str:
        return f"{type(self).__name__}[{i}]"

    def _depth_name(self, i: int) -> str | None:
        """The depth file of sample ``i`` when it is not the file ``_name`` gives (loose pairs)."""
        return None

    # -- public -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index) if self._index is not None else self._count()

    def select(self, indices: Sequence[int]) -> "DepthDataset":
        """Restrict the dataset to these positions of its current listing (in place; returns self)."""
        base = self._index if self._index is not None else range(self._count())
        self._index = [base[i] for i in indices]
        return self

    def names(self) -> list[str]:
        """The name of every sample, without reading any file."""
        return [self._safe_name(i) for i in range(len(self))]

    def read(self, index: int) -> Sample:
        """Read one sample without transform or skip policy (raises DataError)."""
        self._check_process()
        source = self._source(index)
        rgb, depth, name = self._load(source)
        return make_sample(rgb, depth, name, self.min_depth, self.max_depth, self._depth_name(source))

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        for attempt in range(len(self)):
            j = (index + attempt) % len(self)
            try:
                sample = self.read(j)
                break
            except DataError as err:
                if self.on_error == "raise":
                    raise
                self._record_skip(self._safe_name(j), str(err))
                if not self.substitute_skipped:
                    return None
        else:
            raise DataError(f"{type(self).__name__}: no readable sample at all ({len(self.skipped)} skipped)")
        return self.transform(sample) if self.transform is not None else sample

    def validate(self, progress: bool = False) -> list[tuple[str, str]]:
        """Read every sample once; return ``(name, reason)`` for each bad one.

        In skip mode the bad samples are also removed from the index, so that a DataLoader
        built afterwards never meets them and ``len(self.skipped)`` is the run's final count.
        """
        from tqdm import tqdm

        bad, good = [], []
        for i in tqdm(range(len(self)), desc="validate", disable=not progress):
            try:
                self.read(i)
                good.append(i)
            except DataError as err:
                bad.append((self._safe_name(i), str(err)))
        if self.on_error == "skip":
            self.select(good)
            self.skipped = list(bad)
            if bad:
                warnings.warn(f"{type(self).__name__}: skipping {len(bad)} unreadable samples", stacklevel=2)
        return bad

    # -- plumbing -----------------------------------------------------------------------
    def _source(self, i: int) -> int:
        return self._index[i] if self._index is not None else i

    def _safe_name(self, i: int) -> str:
        try:
            return self._name(self._source(i))
        except Exception:
            return f"{type(self).__name__}[{i}]"

    def _record_skip(self, name: str, reason: str) -> None:
        # One entry and one warning per bad sample, however many epochs meet it.
        if all(name != n for n, _ in self.skipped):
            warnings.warn(f"skipping bad sample: {reason}", stacklevel=3)
            self.skipped.append((name, reason))

    def _check_process(self) -> None:
        # A handle opened before a fork shares its file offset with the child: reopen per process.
        if os.getpid() != self._pid:
            self._close()
            self._pid = os.getpid()

    def _close(self) -> None:
        for attr in self._handles:
            handle = getattr(self, attr, None)
            if handle is not None:
                try:
                    handle.close()
                except Exception:
                    pass
            setattr(self, attr, None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for attr in self._handles:
            state[attr] = None
        return state

    def __del__(self) -> None:
        if os.getpid() == getattr(self, "_pid", None):
            self._close()
