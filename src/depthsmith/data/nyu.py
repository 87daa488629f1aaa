"""NYU Depth V2 in its two common packagings: DenseDepth's ``nyu_data.zip`` and the official labeled .mat."""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path

import numpy as np

from ..units import decode_depth
from .base import DepthDataset
from .io import DataError, decode_or_raise, read_depth_array, read_rgb, reading
from ..errors import InputError

__all__ = ["NyuZipDataset", "NyuMatDataset", "read_mat_indices"]


class NyuZipDataset(DepthDataset):
    """DenseDepth / Kaggle ``nyu_data.zip``, read straight from the zip (no unpacking).

    Lists: ``data/nyu2_train.csv`` (about 50K pairs) and ``data/nyu2_test.csv`` (654 pairs), lines
    ``rgb_path,depth_path`` relative to the zip root; a leading folder (``nyu_data/``) is detected.

    Depth units are decided per file by the decoded dtype, as the two halves differ:
    8-bit PNGs (the training maps) are ``png8_densedepth`` (value / 255 * 10 m) and 16-bit PNGs
    (the 654 test maps) are ``png_mm`` (millimetres). That the test maps are millimetres is an
    assumption from users' reports, not from DenseDepth's code (which tests on its own .npy).
    """

    root_key = "path"

    _handles = ("_zip",)
    DEPTH_BY_DTYPE = {np.dtype(np.uint8): "png8_densedepth", np.dtype(np.uint16): "png_mm"}

    def __init__(self, path: str | Path, split: str = "train", **kwargs) -> None:
        super().__init__(**kwargs)
        if split not in ("train", "test"):
            raise InputError(f"nyu_zip split must be 'train' or 'test', got {split!r}")
        self.path = Path(path)
        self.split = split
        self._zip: zipfile.ZipFile | None = None
        # The listing is read once here with a short-lived handle; decoding reopens per process.
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = set(zf.namelist())
                # The shallowest data/nyu2_<split>.csv (macOS archives add __MACOSX/._ copies).
                found = [n for n in names if posixpath.basename(n) == f"nyu2_{split}.csv"]
                csv_name = min(found, key=lambda n: (n.count("/"), n)) if found else None
                if csv_name is None:
                    raise DataError(f"{self.path}: no nyu2_{split}.csv inside the zip")
                text = zf.read(csv_name).decode("utf-8")
        except (OSError, zipfile.BadZipFile) as err:
            raise DataError(f"{self.path}: cannot open zip ({err})") from err
        rows = [line.strip().split(",") for line in text.splitlines() if line.strip()]
        bad = [r for r in rows if len(r) < 2]
        if bad or not rows:
            raise DataError(f"{self.path}:{csv_name}: expected 'rgb,depth' lines, got {bad[:1] or 'none'}")
        self.prefix = self._find_prefix(csv_name, rows[0][0], names)
        self.pairs = [(self.prefix + r[0].strip(), self.prefix + r[1].strip()) for r in rows]

    @staticmethod
    def _find_prefix(csv_name: str, first: str, names: set[str]) -> str:
        # CSV paths are relative to the zip root of the original layout; try the CSV's ancestors.
        parent = posixpath.dirname(csv_name)
        while True:
            prefix = parent + "/" if parent else ""
            if prefix + first in names:
                return prefix
            if not parent:
                return ""  # let the missing file surface as a DataError naming it
            parent = posixpath.dirname(parent)

    def _count(self) -> int:
        return len(self.pairs)

    def _name(self, i: int) -> str:
        return self.pairs[i][0]

    def _member(self, member: str) -> bytes:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        try:
            return self._zip.read(member)
        except KeyError as err:
            raise DataError(f"{self.path}:{member}: file not found in the zip") from err
        except Exception as err:  # bad CRC, truncated member
            raise DataError(f"{self.path}:{member}: cannot read ({err})") from err

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_name, depth_name = self.pairs[i]
        rgb = read_rgb(self._member(rgb_name), rgb_name)
        array = read_depth_array(self._member(depth_name), depth_name)
        encoding = self.DEPTH_BY_DTYPE.get(array.dtype)
        if encoding is None:
            raise DataError(f"{depth_name}: expected an 8- or 16-bit depth PNG, got dtype {array.dtype}")
        return rgb, decode_or_raise(array, encoding, depth_name), rgb_name


def read_mat_indices(path: str | Path, key: str) -> np.ndarray:
    """Read a 1-based index vector from a MATLAB file (v7.3 via h5py, older versions via scipy)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    import h5py

    with reading(str(path), repr(key)):
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                values = np.asarray(f[key])
        else:
            try:
                from scipy.io import loadmat
            except ImportError as err:  # the official splits.mat is MATLAB v5
                raise DataError(f"{path}: a MATLAB v5 file needs scipy (pip install scipy)") from err
            values = loadmat(path)[key]
    return np.asarray(values).astype(np.int64).ravel()


class NyuMatDataset(DepthDataset):
    """Official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5) with ``splits.mat``.

    Layout as h5py sees it (MATLAB writes column-major, so axes come out reversed):
    ``images`` (N, 3, W, H) uint8, ``depths`` / ``rawDepths`` (N, W, H) float metres.
    Sample i is therefore ``images[i].transpose(2, 1, 0)`` (H, W, 3) and ``depths[i].T`` (H, W),
    as the public readers do. ``splits.mat`` holds 1-based ``trainNdxs`` (795) and ``testNdxs`` (654).
    ``depth="filled"`` reads the inpainted ``depths``, ``"raw"`` the ``rawDepths`` with holes (0).

    ``split="seed_test"`` is the seed paper's test set: labeled-set indices 0-653 in file order
    (its notebook's ``eigen_test_indices``), NOT ``testNdxs``. 386 of those 654 images are official
    training images (only 268 are in ``testNdxs``), so numbers on it are not comparable with the
    field; it exists to reproduce the paper's numbers. It needs no ``splits.mat``.
    """

    root_key = "path"

    _handles = ("_file",)
    SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}
    SPLITS = ("train", "test", "all", "seed_test")
    SEED_TEST_SIZE = 654  # np.arange(654) in the seed notebook's evaluation cell
    DEPTH_KEYS = {"filled": "depths", "raw": "rawDepths"}

    def __init__(
        self,
        path: str | Path,
        split: str = "test",
        splits_path: str | Path | None = None,
        depth: str = "filled",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if split not in self.SPLITS:
            raise InputError(f"nyu_mat split must be one of {', '.join(self.SPLITS)}, got {split!r}")
        if depth not in self.DEPTH_KEYS:
            raise InputError(f"nyu_mat depth must be one of {list(self.DEPTH_KEYS)}, got {depth!r}")
        self.path = Path(path)
        self.split = split
        self.depth_key = self.DEPTH_KEYS[depth]
        self._file = None
        import h5py

        try:  # short-lived handle: the sample count only
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("images", self.depth_key) if k not in f]
                count = f["images"].shape[0] if not missing else 0
        except Exception as err:
            raise DataError(f"{self.path}: cannot open as MATLAB v7.3 / HDF5 ({err})") from err
        if missing:
            raise DataError(f"{self.path}: missing {missing}")
        if split == "all":
            self.indices = np.arange(count)
        elif split == "seed_test":
            self.indices = np.arange(min(self.SEED_TEST_SIZE, count))
        else:
            splits_path = Path(splits_path) if splits_path else self.path.with_name("splits.mat")
            one_based = read_mat_indices(splits_path, self.SPLIT_KEYS[split])
            if one_based.size and (one_based.min() < 1 or one_based.max() > count):
                raise DataError(f"{splits_path}: {self.SPLIT_KEYS[split]} out of range 1..{count}")
            self.indices = one_based - 1

    def _count(self) -> int:
        return len(self.indices)

    def _name(self, i: int) -> str:
        return f"{self.path.name}[{int(self.indices[i])}]"

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        k = int(self.indices[i])
        name = self._name(i)
        try:
            rgb = np.asarray(self._file["images"][k]).transpose(2, 1, 0)
            depth = np.asarray(self._file[self.depth_key][k]).T
        except Exception as err:
            raise DataError(f"{name}: cannot read ({type(err).__name__}: {err})") from err
        return np.ascontiguousarray(rgb), decode_depth(depth, "mat_m"), name
