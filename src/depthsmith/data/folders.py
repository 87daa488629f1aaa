"""Datasets of loose files: BTS file lists, any paired CSV / globs, and per-sample .h5 files."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import glob_files
from ..units import Encoding, get_encoding
from .base import DepthDataset
from .io import DataError, decode_or_raise, read_depth, read_rgb, reading, rgb_from_array
from ..errors import InputError

__all__ = ["PairedDataset", "BtsDataset", "H5Dataset"]

# Extensions whose files hold metres already, so the encoding can be implied safely.
FLOAT_EXTENSIONS = {".npy": "npy_m", ".h5": "h5_m", ".hdf5": "h5_m"}


class _PairDataset(DepthDataset):
    """Shared by the file-pair readers: ``self.pairs`` of (rgb path, depth path)."""

    def __init__(self, encoding: str | float | Encoding | None, depth_key: str = "depth", **kwargs) -> None:
        super().__init__(**kwargs)
        self.pairs: list[tuple[Path, Path]] = []
        self.encoding = encoding
        self.depth_key = depth_key

    def _resolve_encoding(self) -> None:
        """Check the encoding once the file list is known: PNG units are never guessed."""
        if self.encoding is None and self.pairs:
            suffixes = {p.suffix.lower() for _, p in self.pairs}
            implied = {FLOAT_EXTENSIONS.get(s) for s in suffixes}
            if len(implied) != 1 or None in implied:
                raise InputError(
                    f"depth files {sorted(suffixes)} need an explicit 'encoding' (one of png_mm, png_kitti, "
                    "png_tum, png_sun, png8_densedepth, npy_m, h5_m) or a number: the 16-bit PNG scale"
                )
            self.encoding = implied.pop()
        if self.encoding is not None:
            get_encoding(self.encoding)  # unknown names fail at construction, listing valid ones

    def _count(self) -> int:
        return len(self.pairs)

    def _name(self, i: int) -> str:
        return str(self.pairs[i][0])

    def _depth_name(self, i: int) -> str:
        return str(self.pairs[i][1])

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, depth_path = self.pairs[i]
        rgb = read_rgb(rgb_path, str(rgb_path))
        depth = read_depth(depth_path, self.encoding, str(depth_path), key=self.depth_key)
        return rgb, depth, str(rgb_path)


class PairedDataset(_PairDataset):
    """Any RGB + depth pairs, from a CSV (``rgb,depth`` per line) or from two globs.

    Paths in the CSV are relative to ``root`` (default: the CSV's folder); globs are relative to
    ``root`` (default: the working directory) and are paired in sorted order, so they must match
    one to one. ``encoding`` names how depth is stored (see ``depthsmith.units.ENCODINGS``) or gives the
    16-bit PNG scale as a number (KITTI 256, TUM 5000); .npy / .h5 imply metres.
    """

    root_key = "csv_path"

    @classmethod
    def root_key_for(cls, cfg: Mapping[str, Any]) -> str | None:
        return "root" if cfg.get("rgb_glob") else cls.root_key  # glob pairs are relative to `root`

    def __init__(
        self,
        csv_path: str | Path | None = None,
        rgb_glob: str | None = None,
        depth_glob: str | None = None,
        root: str | Path | None = None,
        encoding: str | float | Encoding | None = None,
        depth_key: str = "depth",
        **kwargs,
    ) -> None:
        super().__init__(encoding, depth_key, **kwargs)
        if (csv_path is None) == (rgb_glob is None or depth_glob is None):
            raise InputError("paired dataset needs either csv_path or both rgb_glob and depth_glob")
        if csv_path is not None:
            self.pairs = self._read_csv(Path(csv_path), Path(root) if root else Path(csv_path).parent)
        else:
            base = Path(root) if root else Path()
            rgbs = glob_files(str(base / rgb_glob))  # symlink loops skipped, not followed
            depths = glob_files(str(base / depth_glob))
            if len(rgbs) != len(depths) or not rgbs:
                raise DataError(
                    f"globs {base / rgb_glob} ({len(rgbs)} files) and {base / depth_glob} "
                    f"({len(depths)} files) must match one to one and be non-empty"
                )
            self.pairs = [(Path(r), Path(d)) for r, d in zip(rgbs, depths)]
        self._resolve_encoding()

    @staticmethod
    def _read_csv(path: Path, root: Path) -> list[tuple[Path, Path]]:
        """``rgb,depth`` lines; a UTF-8 byte-order mark (Excel's CSVs) and one header row are accepted.

        The first row is a header when neither cell names a file of a known suffix or an existing
        file (so "rgb.path,depth.path" is a header, "a.png,a_depth.png" is data).
        """
        expected = "two comma-separated columns 'rgb,depth' (paths relative to the CSV's folder or root)"
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: strips a BOM if there is one
                lines = [(n, line) for n, line in enumerate(f.read().splitlines(), 1) if line.strip()]
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text (byte {err.start}); expected {expected}") from err
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err})") from err
        rows = [(n, [c.strip() for c in next(csv.reader([line]))]) for n, line in lines]
        if rows and _is_header(rows[0][1], root):
            rows = rows[1:]
        if not rows:
            raise DataError(f"{path}: no data lines; expected {expected}")
        pairs = []
        for number, cells in rows:
            if len(cells) < 2 or not cells[0] or not cells[1]:
                hint = " (it looks semicolon-separated: use commas)" if ";" in ",".join(cells) else ""
                raise DataError(f"{path}:{number}: expected {expected}, got {','.join(cells)!r}{hint}")
            pairs.append((root / cells[0], root / cells[1]))
        return pairs


# Suffixes a CSV's data cells name; a first row without any is a header such as "rgb,depth".
_DATA_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".npy", ".h5", ".hdf5"}


def _is_header(cells: list[str], root: Path) -> bool:
    return not any(Path(c).suffix.lower() in _DATA_SUFFIXES or (root / c).is_file() for c in cells if c)


class BtsDataset(_PairDataset):
    """BTS-style folders with a file list: lines ``rgb_path depth_path focal``.

    Paths are relative to ``data_path`` (RGB) and ``gt_path`` (depth, default ``data_path``),
    a leading '/' being ignored, as in BTS's ``nyudepthv2_*_files_with_gt.txt``. Lines whose depth
    is ``None`` (frames without ground truth) are left out and counted in ``without_depth``.
    The focal length of each line is kept in ``focals`` (not in the sample dict).
    """

    root_key = "data_path"

    def __init__(
        self,
        data_path: str | Path,
        filenames_file: str | Path,
        gt_path: str | Path | None = None,
        encoding: str | float | Encoding = "png_mm",
        **kwargs,
    ) -> None:
        super().__init__(encoding, **kwargs)
        data_path = Path(data_path)
        gt_root = Path(gt_path) if gt_path else data_path
        try:
            lines = Path(filenames_file).read_text().splitlines()
        except OSError as err:
            raise DataError(f"{filenames_file}: cannot read ({err})") from err
        self.focals: list[float | None] = []
        self.without_depth = 0
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DataError(f"{filenames_file}:{number}: expected 'rgb depth [focal]', got {line!r}")
            if fields[1] == "None":
                self.without_depth += 1
                continue
            self.pairs.append((data_path / fields[0].lstrip("/"), gt_root / fields[1].lstrip("/")))
            self.focals.append(float(fields[2]) if len(fields) > 2 else None)
        self._resolve_encoding()


class H5Dataset(DepthDataset):
    """sparse-to-dense / FastDepth ``.h5`` files: ``rgb`` (3, H, W) uint8, ``depth`` (H, W) float metres.

    ``path`` is a folder searched with ``pattern`` (default every .h5 below it, sorted), a single
    file, or a list of files. Each file is opened only while its sample is read.
    """

    root_key = "path"

    def __init__(
        self,
        path: str | Path | list[str | Path],
        pattern: str = "**/*.h5",
        rgb_key: str = "rgb",
        depth_key: str = "depth",
        encoding: str | Encoding = "h5_m",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(path, (list, tuple)):
            self.files = [Path(p) for p in path]
        elif Path(path).is_dir():
            self.files = [Path(p) for p in glob_files(str(Path(path) / pattern))]
        else:
            self.files = [Path(path)]
        if not self.files:
            raise DataError(f"{path}: no files matching {pattern}")
        self.rgb_key, self.depth_key = rgb_key, depth_key
        self.encoding = get_encoding(encoding)

    def _count(self) -> int:
        return len(self.files)

    def _name(self, i: int) -> str:
        return str(self.files[i])

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        import h5py

        name = str(self.files[i])
        with reading(name, "HDF5"), h5py.File(self.files[i], "r") as f:
            missing = [k for k in (self.rgb_key, self.depth_key) if k not in f]
            if missing:
                raise DataError(f"{name}: missing datasets {missing} (has {sorted(f.keys())})")
            rgb, depth = np.asarray(f[self.rgb_key]), np.asarray(f[self.depth_key])
        depth = np.squeeze(depth)
        if depth.ndim != 2:
            raise DataError(f"{name}: depth must be H x W, got shape {depth.shape}")
        return rgb_from_array(rgb, name), decode_or_raise(depth, self.encoding, name), name
