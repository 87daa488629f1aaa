"""Datasets and loaders for training: a LightningDataModule built from the ``data:`` section.

Reproducible by construction: the shuffling order is a pure function of (seed, epoch), and the
random augmentations of a sample are a pure function of (seed, epoch, sample index). A run
resumed from a checkpoint therefore sees exactly the batches it would have seen without the
interruption, whatever the number of workers and whenever Lightning happens to create the
loader iterator (it does so at different moments in a fresh and in a resumed run).
Under DDP each process gets its shard from the same sampler (rank, world size from the Trainer).

Mid-epoch resume: every checkpoint records the training loader's position (epoch, seed and
how many batches of that epoch were trained), and the resumed loader starts at the next batch.
Without that, Lightning replays the epoch from its first batch (BatchNorm statistics and
weights then differ from an uninterrupted run). The position is kept in the DataModule's
``state_dict``, which Lightning restores before it builds the loader; Lightning's own loader
state (``loops.fit_loop.combined_loader``) comes back too late when ``configure_optimizers``
asks for ``estimated_stepping_batches`` (OneCycle, poly, cosine), because that builds the
loader early.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.data.dataloader import default_collate

from ..data import build_dataset, build_transforms
from .config import ConfigError
from .schema import TrainConfig

__all__ = ["DepthDataModule", "collate_skip_none", "dataset_configs", "SampleCache", "EpochIndexSampler",
           "ResumableLoader"]


def collate_skip_none(batch: list[Any]) -> Any:
    """default_collate without the samples a dataset gave back as None (bad files, on_error=skip)."""
    batch = [b for b in batch if b is not None]
    return default_collate(batch) if batch else None


class EpochIndexSampler(DistributedSampler):
    """DistributedSampler (shuffled by seed + epoch, one shard per rank) that yields
    ``(epoch, index)`` so the dataset can seed each sample's augmentation.

    ``resume_at(epoch, start)`` makes the next pass over ``epoch`` begin at position ``start``
    of this rank's shard (once); ``len`` stays the full shard, as Lightning counts the
    batches of a resumed epoch from the start of the epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(start))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = 0
        if self._resume is not None:
            if self._resume[0] == self.epoch:
                start = self._resume[1]
            self._resume = None  # only the pass it was saved in starts part-way
        epoch = self.epoch
        return ((epoch, i) for i in list(super().__iter__())[start:])


class ResumableLoader(DataLoader):
    """The training DataLoader, with a ``state_dict`` / ``load_state_dict`` that say where in
    the epoch it is (Lightning also checks for these two methods to call a loader resumable,
    and may apply the DataModule's state a second time: loading is idempotent).

    ``trained_batches`` tells how many batches of the current epoch the model has really been
    trained on (the Trainer's progress counter). The loader's own iterator runs ahead of that
    (worker prefetching), so it cannot count them itself.
    """

    sampler: EpochIndexSampler

    def __init__(self, *args: Any, trained_batches: Callable[[], int], seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_batches, self.seed = trained_batches, int(seed)

    def _layout(self) -> dict[str, int]:
        # What the position means: any change makes "batch k of epoch e" another set of samples.
        return {"seed": self.seed, "batch_size": int(self.batch_size), "num_replicas": self.sampler.num_replicas,
                "num_samples": len(self.dataset), "drop_last": int(self.drop_last)}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": int(self.trained_batches()), "length": len(self),
                **self._layout()}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= int(state["length"]):  # saved at the end of the epoch: the next one starts afresh
            self.sampler.set_epoch(epoch + 1)
            return
        if batches <= 0:
            self.sampler.set_epoch(epoch)
            return
        now = self._layout()
        changed = [f"{k} {state.get(k)} -> {v}" for k, v in now.items() if state.get(k) != v]
        if changed:
            raise ConfigError(
                f"cannot resume in the middle of epoch {epoch} (after batch {batches}): the checkpoint's data "
                f"layout differs from this run's ({', '.join(changed)}; seed = trainer.seed, batch_size = "
                "data.batch_size, num_replicas = devices x nodes, num_samples = the training set). Resume with "
                "the values the run was started with, or from an end-of-epoch checkpoint."
            )
        self.sampler.resume_at(epoch, batches * int(self.batch_size))


class SampleCache(Dataset):
    """Wraps a dataset: optional in-memory cache of decoded samples, and seeded transforms.

    Keys are an index or ``(epoch, index)`` (from EpochIndexSampler): the random transforms then
    draw from torch's RNG seeded with (seed, epoch, index), inside ``fork_rng`` so the global
    stream is left as it was. ``cache=True`` keeps decoded, untransformed samples, for small or
    procedural datasets whose decoding costs more than a training step (the synthetic scenes
    are ray-cast: 10-25 ms each at 96x128 on one core); each DataLoader worker holds its own cache.
    """

    def __init__(self, dataset: Dataset, transform: Any = None, cache: bool = False, seed: int = 0) -> None:
        self.dataset, self.transform, self.cache, self.seed = dataset, transform, cache, int(seed)
        self._store: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample = self._store.get(index)
        if sample is None:
            sample = self.dataset[index]
            if self.cache and sample is not None:
                self._store[index] = sample
        if sample is None or self.transform is None:
            return sample
        seed = int(np.random.SeedSequence([self.seed, int(epoch), int(index)]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(dict(sample))


def _path_key(cfg: Mapping[str, Any]) -> str | None:
    """The argument of the config's reader that says where its data is (``DepthDataset.root_key``);
    `data.root` fills it when unset."""
    from ..data import DATASETS

    kind = cfg.get("type")
    return DATASETS.get(kind).root_key_for(cfg) if isinstance(kind, str) and kind in DATASETS else None


def _with_root(cfg: Mapping[str, Any] | None, root: Any) -> dict[str, Any] | None:
    if cfg is None:
        return None
    cfg = copy.deepcopy(dict(cfg))
    key = _path_key(cfg)
    if key is not None and cfg.get(key) is None and root is not None:
        cfg[key] = root
    return cfg


def dataset_configs(config: TrainConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(train, val) dataset configs after ``data.root`` and ``data.val_fraction`` are applied.

    Fails with the key to set when a recipe's dataset path is missing.
    """
    data = config.data
    recipe = config.name or "this config"
    if not data.train:
        raise ConfigError(f"{recipe}: data.train is not set (a dataset config, e.g. {{type: synthetic}})")
    train = _with_root(data.train, data.root)
    val = _with_root(data.val, data.root)
    for part, cfg in (("train", train), ("val", val)):
        key = _path_key(cfg) if cfg else None
        if key is not None and key != "root" and cfg.get(key) is None:
            example = "nyu_data.zip" if cfg.get("type") == "nyu_zip" else "your/data"
            raise ConfigError(
                f"{recipe} needs its dataset: set data.root (or data.{part}.{key}), "
                f"e.g. --set data.root=/path/to/{example}"
            )
    fraction = float(data.val_fraction or 0.0)
    if fraction > 0:
        if val is not None:
            raise ConfigError("set either data.val or data.val_fraction, not both")
        # The same list split twice with one seed: disjoint train / val sides (by scene or image).
        holdout = {"fraction": fraction, "seed": int(data.split_seed), "by": str(data.split_by)}
        val = {**train, "holdout": {**holdout, "part": "val"}}
        train = {**train, "holdout": {**holdout, "part": "train"}}
    return train, val


class DepthDataModule(pl.LightningDataModule):
    """Train / val loaders from a resolved config's ``data`` section."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.data = config.data
        self.seed = int(config.trainer.seed or 0)
        self.train_cfg, self.val_cfg = dataset_configs(config)  # fail before any process starts
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.train_eval_set: Dataset | None = None
        # Metric prefix of each validation loader, in order (read by the module's validation_step).
        self.val_prefixes: list[str] = []
        self._train_loader: ResumableLoader | None = None
        self._resume_state: dict[str, int] | None = None  # from a checkpoint, for the next train loader

    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._resume_state = dict(state["train_loader"]) if state.get("train_loader") else None
        if self._train_loader is not None and self._resume_state is not None:  # loader built before the restore
            self._train_loader.load_state_dict(self._resume_state)
            self._resume_state = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        tcfg = self.data.transforms or None
        cache = bool(self.data.cache)
        self.train_set = SampleCache(build_dataset(self.train_cfg), build_transforms(tcfg, train=True), cache,
                                     seed=self.seed)
        if self.val_cfg is not None:
            self.val_set = SampleCache(build_dataset(self.val_cfg), build_transforms(tcfg, train=False), cache)
        if self.config.logging.train_eval:
            # The training images again, through the validation transforms: an evaluation pass.
            self.train_eval_set = SampleCache(self.train_set.dataset, build_transforms(tcfg, train=False), cache)

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        # The Trainer runs with use_distributed_sampler=False: we shard here, with the
        # Trainer's rank and world size, and Lightning calls set_epoch on the sampler.
        workers = int(self.data.num_workers)
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        drop_last = bool(self.data.drop_last) and train and len(dataset) >= batch_size * world
        options = dict(
            batch_size=batch_size, num_workers=workers,
            # Persistent workers would keep their caches across epochs; otherwise reuse costs nothing.
            persistent_workers=workers > 0 and bool(self.data.cache),
            collate_fn=collate_skip_none, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
        )
        if train:
            sampler = EpochIndexSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            return ResumableLoader(dataset, sampler=sampler, trained_batches=self._trained_batches, seed=self.seed,
                                   **options)
        # Sequential; under DDP each rank takes every world-th sample (padded like Lightning's own).
        val_sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
        return DataLoader(dataset, sampler=val_sampler, **options)

    def _trained_batches(self) -> int:
        # Batches of this epoch whose training step has run (saved by a checkpoint taken now).
        if self.trainer is None:
            return 0
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        loader = self._loader(self.train_set, int(self.data.batch_size), train=True)
        if self._resume_state is not None:
            loader.load_state_dict(self._resume_state)
            self._resume_state = None
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        size = int(self.data.val_batch_size or self.data.batch_size)
        sets = [(p, d) for p, d in (("val", self.val_set), ("train_eval", self.train_eval_set)) if d is not None]
        self.val_prefixes = [p for p, _ in sets]
        loaders = [self._loader(d, size, train=False) for _, d in sets]
        return loaders[0] if len(loaders) == 1 else loaders
