"""``build_dataset(cfg)``: every reader is one config dict (or a YAML file holding it)."""

from __future__ import annotations

import inspect
import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import Registry
from ..errors import DataError, MissingInputError
from ..units import get_encoding
from .base import DepthDataset
from .benchmarks import (CityscapesDataset, DiodeDataset, Eth3dDataset, IbimsDataset, KittiDataset,
                         SunRgbdDataset)
from .folders import BtsDataset, H5Dataset, PairedDataset
from .nyu import NyuMatDataset, NyuZipDataset
from .synthetic import SyntheticScenes
from ..errors import InputError
from .video import SyntheticVideo

__all__ = ["DATASETS", "build_dataset", "load_dataset_config", "holdout_split", "HOLDOUT_BY"]

# Dataset types by the name a config's ``type`` gives; each reader class carries its own fields
# (``root_key``: the argument ``data.root`` fills).
DATASETS: Registry[type[DepthDataset]] = Registry("dataset type")
for _name, _cls in (("synthetic", SyntheticScenes), ("synthetic_video", SyntheticVideo), ("nyu_zip", NyuZipDataset),
                    ("nyu_mat", NyuMatDataset), ("h5", H5Dataset), ("bts", BtsDataset), ("paired", PairedDataset), ("kitti", KittiDataset),
                    ("diode", DiodeDataset), ("ibims", IbimsDataset), ("sunrgbd", SunRgbdDataset),
                    ("eth3d", Eth3dDataset), ("cityscapes", CityscapesDataset)):
    DATASETS.add(_name, _cls)


def load_dataset_config(cfg: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A dataset config as a dict: given directly, or read from a YAML file (optionally under ``dataset:``)."""
    if isinstance(cfg, (str, Path)):
        import yaml

        path = Path(cfg)
        if not path.is_file():
            raise MissingInputError(f"dataset config {path} not found (give a YAML file or a mapping)")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:  # syntax errors carry the position of the problem
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise DataError(f"{where}: YAML syntax error ({problem}); expected a mapping such as "
                            "'type: paired' with one option per line") from err
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not a UTF-8 text file; expected a YAML dataset config") from err
        if isinstance(loaded, Mapping) and "type" not in loaded and isinstance(loaded.get("dataset"), Mapping):
            loaded = loaded["dataset"]
        if not isinstance(loaded, Mapping):
            raise DataError(f"{path}: expected a mapping with a 'type' key, got {type(loaded).__name__}")
        cfg, where = loaded, f"dataset config {path}"
    else:
        where = "dataset config"
    if "encoding" in cfg:  # units.get_encoding's message names neither the file nor the key
        try:
            get_encoding(cfg["encoding"])
        except ValueError as err:
            raise DataError(f"{where}: key 'encoding': {err}") from err
    return dict(cfg)


def build_dataset(cfg: Mapping[str, Any] | str | Path,
                  transform: Callable[[dict], dict] | None = None) -> DepthDataset:
    """Build a dataset from ``{"type": ..., **options}``.

    Options are the reader's constructor arguments (path, split, encoding, min_depth, max_depth,
    on_error, ...). One generic option more: ``holdout: {fraction: 0.3, part: train|val, seed: 0, by: scene|image}``
    keeps one side of a deterministic split by scene or by image (see :func:`holdout_split`).
    """
    cfg = load_dataset_config(cfg)
    kind = cfg.pop("type", None)
    cls = DATASETS.get(kind)
    holdout = cfg.pop("holdout", None)
    accepted = _parameters(cls)
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise InputError(f"dataset type {kind!r} got unknown options {unknown}; valid: {', '.join(sorted(accepted))}")
    dataset = cls(**cfg, transform=transform)
    if holdout:
        holdout_split(dataset, **holdout)
    return dataset


def _parameters(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"transform"}


HOLDOUT_BY = ("scene", "image")


def holdout_split(dataset: DepthDataset, fraction: float, part: str = "val", seed: int = 0,
                  by: str = "scene") -> DepthDataset:
    """Keep the ``train`` or ``val`` side of a deterministic split.

    ``by="scene"`` (default) never cuts a scene in two. A scene is the folder of a sample's name
    (NYU's ``<scene>/<n>.jpg``); neighbouring video frames are near-duplicates, so splitting frames
    at random would leak them into validation. Datasets whose samples share one folder are split
    per sample. Scenes are shuffled with ``seed`` and taken into ``val`` until ``fraction`` of the
    samples is reached. ``by="image"`` splits single images at random, as the seed notebook's
    ``train_val_split`` does (its validation loss is therefore measured on near-duplicates).
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"holdout fraction must be in (0, 1), got {fraction}")
    if part not in ("train", "val"):
        raise InputError(f"holdout part must be 'train' or 'val', got {part!r}")
    if by not in HOLDOUT_BY:
        raise InputError(f"holdout 'by' must be one of {', '.join(HOLDOUT_BY)}, got {by!r}")
    names = dataset.names()
    groups = [posixpath.dirname(n.replace("\\", "/")) for n in names]
    if by == "image" or len(set(groups)) == 1:
        groups = names
    order = sorted(set(groups))
    np.random.default_rng(seed).shuffle(order)
    sizes = {g: 0 for g in order}
    for g in groups:
        sizes[g] += 1
    val, count = set(), 0
    for g in order:
        if count >= fraction * len(names):
            break
        val.add(g)
        count += sizes[g]
    keep = [i for i, g in enumerate(groups) if (g in val) == (part == "val")]
    return dataset.select(keep)
