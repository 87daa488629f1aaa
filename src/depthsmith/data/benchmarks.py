"""Readers for the benchmarks beyond NYU: KITTI (Eigen split), DIODE, iBims-1, SUN RGB-D, ETH3D and
Cityscapes, each in the packaging its authors publish. Units and invalid values are stated per
reader and decoded through ``depthsmith.units`` (iBims' and ETH3D's own encodings live there too).

Evaluate them with the protocol of the same name (``kitti-garg``, ``diode-indoor``, ``ibims`` ...,
see ``depthsmith.evaluate.PROTOCOLS``).
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np

from .base import DepthDataset
from .folders import _PairDataset
from .io import DataError, decode_or_raise, load_array, read_depth, read_depth_array, read_rgb, reading
from ..errors import InputError

__all__ = ["KittiDataset", "DiodeDataset", "IbimsDataset", "SunRgbdDataset", "Eth3dDataset", "CityscapesDataset"]


class _Listed(DepthDataset):
    """A reader whose samples are (rgb path, depth path, extra) triples in ``self.items``."""

    root_key = "path"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.items: list[tuple[Path, Path, Path | None]] = []

    def _count(self) -> int:
        return len(self.items)

    def _name(self, i: int) -> str:
        return str(self.items[i][0])

    def _require(self, root: Path, what: str) -> None:
        if not self.items:
            raise DataError(f"{root}: no {what} found (check the path and the dataset's folder layout)")


class KittiDataset(_PairDataset):
    """KITTI depth: raw-data RGB with the official depth benchmark's LiDAR ground truth.

    Ground truth: 16-bit PNGs of ``data_depth_annotated`` (metres x 256, 0 = no LiDAR return,
    encoding ``png_kitti``). ``filenames_file`` takes either list format:

    * BTS / ZoeDepth (``kitti_eigen_test_files_with_gt.txt``, ``kitti_eigen_train_files_with_gt.txt``):
      ``<rgb path> <gt path or None> <focal>``, relative to ``data_path`` and ``gt_path``;
    * Eigen / Monodepth2 (``eigen_test_files.txt``, 697 lines): ``<date>/<drive> <frame> <l|r>``, the RGB
      at ``<date>/<drive>/image_02/data/<frame:010d>.png`` (03 for r) and the ground truth at
      ``[train/|val/]<drive>/proj_depth/groundtruth/image_02/<frame:010d>.png`` under ``gt_path``.

    Frames without ground truth are left out and counted in ``without_depth``: of Eigen's 697 test
    frames, 652 have it (Garg's set, what BTS, AdaBins and ZoeDepth report on).
    """

    root_key = "data_path"

    def __init__(self, data_path: str | Path, filenames_file: str | Path, gt_path: str | Path | None = None,
                 encoding: str = "png_kitti", **kwargs) -> None:
        super().__init__(encoding, **kwargs)
        data_root, gt_root = Path(data_path), Path(gt_path) if gt_path else Path(data_path)
        self.focals: list[float | None] = []
        self.without_depth = 0
        for number, line in enumerate(_read_text(filenames_file).splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 3 and fields[2] in ("l", "r") and fields[1].isdigit():
                rgb, gt = _eigen_paths(fields, data_root, gt_root)
                focal = None
            elif len(fields) >= 2:
                rgb = data_root / fields[0].lstrip("/")
                gt = None if fields[1] == "None" else gt_root / fields[1].lstrip("/")
                focal = float(fields[2]) if len(fields) > 2 else None
            else:
                raise DataError(f"{filenames_file}:{number}: expected '<rgb> <gt|None> <focal>' (BTS) or "
                                f"'<date>/<drive> <frame> <l|r>' (Eigen), got {line!r}")
            if gt is None:
                self.without_depth += 1
                continue
            self.pairs.append((rgb, gt))
            self.focals.append(focal)
        if not self.pairs:
            raise DataError(f"{filenames_file}: no frame with ground truth ({self.without_depth} without)")
        self._resolve_encoding()


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file list ({err})") from err


def _eigen_paths(fields: list[str], data_root: Path, gt_root: Path) -> tuple[Path, Path | None]:
    """RGB and ground-truth paths of an Eigen-format line (None: no ground truth for the frame)."""
    folder, frame, side = fields[0], int(fields[1]), {"l": "image_02", "r": "image_03"}[fields[2]]
    rgb = data_root / folder / side / "data" / f"{frame:010d}.png"
    drive = Path(folder).name
    candidates = [gt_root / split / drive / "proj_depth" / "groundtruth" / side / f"{frame:010d}.png"
                  for split in ("", "train", "val")]
    return rgb, next((c for c in candidates if c.is_file()), None)


class DiodeDataset(_Listed):
    """DIODE (``val/`` or ``train/`` of the official archive): ``<name>.png`` RGB, ``<name>_depth.npy``
    (H x W x 1 float32 metres) and ``<name>_depth_mask.npy`` (1 = valid). ``split``: indoors | outdoor
    | all. Depth outside the mask becomes invalid (0)."""

    SPLITS = {"indoors": ("indoors",), "outdoor": ("outdoor",), "all": ("indoors", "outdoor")}

    def __init__(self, path: str | Path, split: str = "indoors", **kwargs) -> None:
        super().__init__(**kwargs)
        if split not in self.SPLITS:
            raise InputError(f"diode split must be one of {', '.join(self.SPLITS)}, got {split!r}")
        root = Path(path)
        for scene_type in self.SPLITS[split]:
            for depth in sorted(glob.glob(str(root / "**" / scene_type / "**" / "*_depth.npy"), recursive=True)):
                depth = Path(depth)
                stem = depth.name[: -len("_depth.npy")]
                self.items.append((depth.with_name(stem + ".png"), depth, depth.with_name(stem + "_depth_mask.npy")))
        self._require(root, f"DIODE '{split}' *_depth.npy files")

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, depth_path, mask_path = self.items[i]
        rgb = read_rgb(rgb_path, str(rgb_path))
        depth = decode_or_raise(np.squeeze(load_array(depth_path, str(depth_path))), "npy_m", str(depth_path))
        if mask_path is not None and mask_path.is_file():
            mask = np.squeeze(load_array(mask_path, str(mask_path))) > 0
            if mask.shape != depth.shape:
                raise DataError(f"{mask_path}: mask {mask.shape} does not match depth {depth.shape}")
            depth = np.where(mask, depth, np.float32(0.0))
        return rgb, depth, str(rgb_path)


class IbimsDataset(_Listed):
    """iBims-1 core (``ibims1_core_raw``): ``rgb/<name>.png``, ``depth/<name>.png`` (16-bit, value / 65535
    x 50 m, encoding ``png_ibims``) and the masks ``mask_invalid/`` and ``mask_transp/`` (0 = invalid or
    transparent surface, both made invalid). Names from ``imagelist.txt`` when present, else every rgb PNG."""

    def __init__(self, path: str | Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root = Path(path)
        listing = root / "imagelist.txt"
        names = (listing.read_text().split() if listing.is_file()
                 else sorted(p.stem for p in (root / "rgb").glob("*.png")))
        for name in names:
            self.items.append((root / "rgb" / f"{name}.png", root / "depth" / f"{name}.png", None))
        self._require(root, "iBims-1 rgb/*.png images")

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, depth_path, _ = self.items[i]
        rgb = read_rgb(rgb_path, str(rgb_path))
        depth = read_depth(depth_path, "png_ibims", str(depth_path))
        for folder in ("mask_invalid", "mask_transp"):
            mask_path = self.root / folder / depth_path.name
            if mask_path.is_file():
                keep = read_depth_array(mask_path, str(mask_path)) > 0
                depth = np.where(keep, depth, np.float32(0.0))
        return rgb, depth, str(rgb_path)


class SunRgbdDataset(_Listed):
    """SUN RGB-D: every sample folder holding ``image/<name>.jpg`` and ``depth_bfx/<name>.png`` (the
    refined depth; ``depth=raw`` reads ``depth/``). 16-bit PNGs in millimetres with the bits rotated
    by 3 (encoding ``png_sun``), 0 = no depth."""

    DEPTH_FOLDERS = {"bfx": "depth_bfx", "raw": "depth"}

    def __init__(self, path: str | Path, depth: str = "bfx", **kwargs) -> None:
        super().__init__(**kwargs)
        if depth not in self.DEPTH_FOLDERS:
            raise InputError(f"sunrgbd depth must be one of {', '.join(self.DEPTH_FOLDERS)}, got {depth!r}")
        root = Path(path)
        for image_dir in sorted(root.glob("**/image")):
            images = sorted(image_dir.glob("*.jpg")) + sorted(image_dir.glob("*.png"))
            depths = sorted((image_dir.parent / self.DEPTH_FOLDERS[depth]).glob("*.png"))
            if len(images) == 1 and len(depths) == 1:  # one frame per sample folder in SUN RGB-D
                self.items.append((images[0], depths[0], None))
        self._require(root, f"SUN RGB-D sample folders with image/ and {self.DEPTH_FOLDERS[depth]}/")

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, depth_path, _ = self.items[i]
        return read_rgb(rgb_path, str(rgb_path)), read_depth(depth_path, "png_sun", str(depth_path)), str(rgb_path)


class Eth3dDataset(_Listed):
    """ETH3D high-res multi-view (as Marigold and Depth Anything evaluate it): ``<scene>/images/dslr_images/
    <name>.JPG`` and ``<scene>/ground_truth_depth/dslr_images/<name>.JPG``, the latter despite its name a
    raw little-endian float32 array of 4032 x 6048 metres with inf where there is no depth (encoding
    ``eth3d_f32``)."""

    HEIGHT, WIDTH = 4032, 6048

    def __init__(self, path: str | Path, height: int = HEIGHT, width: int = WIDTH, **kwargs) -> None:
        super().__init__(**kwargs)
        root = Path(path)
        self.shape = (int(height), int(width))
        for depth in sorted(root.glob("*/ground_truth_depth/dslr_images/*")):
            rgb = depth.parents[2] / "images" / "dslr_images" / depth.name
            self.items.append((rgb, depth, None))
        self._require(root, "ETH3D <scene>/ground_truth_depth/dslr_images/ files")

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, depth_path, _ = self.items[i]
        rgb = read_rgb(rgb_path, str(rgb_path))
        with reading(str(depth_path), "ETH3D raw float32 depth"):
            raw = np.fromfile(depth_path, dtype="<f4")
        if raw.size != self.shape[0] * self.shape[1]:
            raise DataError(f"{depth_path}: {raw.size} float32 values, expected {self.shape[0]} x {self.shape[1]}")
        depth = decode_or_raise(raw.reshape(self.shape), "eth3d_f32", str(depth_path))
        return rgb, np.where(np.isfinite(depth), depth, np.float32(0.0)), str(rgb_path)


class CityscapesDataset(_Listed):
    """Cityscapes disparity as depth, as the seed's ``Irv2_Cityscapes.ipynb`` trains on it:
    ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``, ``disparity/<split>/<city>/<name>_disparity.png``
    and ``camera/<split>/<city>/<name>_camera.json``. Per the dataset's README, disparity = (p - 1) / 256
    for p > 0 (p = 0: invalid), and depth = baseline x fx / disparity with the camera file's
    ``extrinsic.baseline`` (m) and ``intrinsic.fx`` (px)."""

    def __init__(self, path: str | Path, split: str = "val", **kwargs) -> None:
        super().__init__(**kwargs)
        root = Path(path)
        for disp in sorted((root / "disparity" / split).glob("*/*_disparity.png")):
            stem = disp.name[: -len("_disparity.png")]
            city = disp.parent.name
            self.items.append((root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", disp,
                               root / "camera" / split / city / f"{stem}_camera.json"))
        self._require(root, f"Cityscapes disparity/{split}/*/*_disparity.png files")

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, disp_path, camera_path = self.items[i]
        rgb = read_rgb(rgb_path, str(rgb_path))
        stored = read_depth_array(disp_path, str(disp_path)).astype(np.float64)
        with reading(str(camera_path), "camera JSON"):
            camera = json.loads(Path(camera_path).read_text())
            baseline, fx = float(camera["extrinsic"]["baseline"]), float(camera["intrinsic"]["fx"])
        disparity = np.where(stored > 0, (stored - 1.0) / 256.0, 0.0)
        with np.errstate(divide="ignore"):
            depth = np.where(disparity > 0, baseline * fx / disparity, 0.0).astype(np.float32)
        return rgb, depth, str(rgb_path)


