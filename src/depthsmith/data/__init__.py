"""Depth datasets: readers for the common packagings, procedural scenes, transforms, checks.

Every dataset yields ``{"image": 3xHxW float RGB in [0, 1], "depth": 1xHxW metres (invalid = 0),
"mask": 1xHxW bool, "name": str}``; :func:`build_dataset` makes one from a config dict.
"""

from ..errors import DataError, ReadError
from ..units import ENCODINGS, Encoding, decode_depth, encode_depth, get_encoding
from .base import DepthDataset, make_sample
from .build import DATASETS, build_dataset, holdout_split, load_dataset_config
from .folders import BtsDataset, H5Dataset, PairedDataset
from .nyu import NyuMatDataset, NyuZipDataset
from .synthetic import SyntheticScenes
from .video import SyntheticVideo
from .transforms import build_transforms, depth_to_target, target_to_depth

__all__ = [
    "DataError", "ReadError", "DepthDataset", "make_sample", "DATASETS", "build_dataset", "load_dataset_config",
    "holdout_split",
    "ENCODINGS", "Encoding", "decode_depth", "encode_depth", "get_encoding",
    "BtsDataset", "H5Dataset", "PairedDataset", "NyuMatDataset", "NyuZipDataset", "SyntheticScenes", "SyntheticVideo",
    "build_transforms", "depth_to_target", "target_to_depth",
    "check_dataset", "format_report",
]


def __getattr__(name: str):
    # check pulls in matplotlib and tqdm: import it only when asked for.
    if name in ("check_dataset", "format_report"):
        from . import check

        return getattr(check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
