"""One tiny fixture per dataset type in ``depthsmith.data.DATASETS``, each in its dataset's own
packaging, for the registry test (tests/test_registry.py): a type without an entry here fails it.

Each builder writes one RGB-D pair (known RGB, known metres) and returns ``Case(config, rgb, mm,
depth_tol, rgb_tol)`` for the sample at index 0, so that the shared tester compares the reader's
metres and colours with what was written. The packagings are the ones the reader tests use
(tests/helpers.py builders, the layouts of test_eval_benchmarks.py), at a small size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image

from helpers import make_bts, make_h5_folder, make_nyu_mat, make_nyu_zip, make_paired_csv, write_png16

SHAPE = (24, 32)


class Case(NamedTuple):
    config: dict
    rgb: np.ndarray | None  # H x W x 3 uint8 written; None: the reader makes its own (synthetic)
    mm: np.ndarray | None  # H x W millimetres (float allowed) the reader must give back as metres, 0 = hole
    depth_tol: float = 0.0005  # metres: half the packaging's quantisation step
    rgb_tol: float = 0.5 / 255  # mean absolute difference; JPEG packagings are lossy


def _pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth RGB (JPEG keeps it close) and 0.5-9 m depth in millimetres with about 10 % holes."""
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    rgb = np.stack([x * 255 // SHAPE[1], y * 255 // SHAPE[0], np.full(SHAPE, 128)], -1).astype(np.uint8)
    mm = rng.integers(500, 9000, SHAPE).astype(np.uint16)
    mm[rng.random(SHAPE) < 0.1] = 0
    return rgb, mm


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")  # PNG content whatever the suffix (ETH3D's .JPG)


def _synthetic(root: Path, rng) -> Case:
    return Case({"type": "synthetic", "num_samples": 2, "size": list(SHAPE), "seed": 0}, None, None)


def _synthetic_video(root: Path, rng) -> Case:
    return Case({"type": "synthetic_video", "num_frames": 3, "size": list(SHAPE), "seed": 0, "path": "pass"}, None, None)


def _nyu_zip(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    path = make_nyu_zip(root / "nyu_data.zip", [], [(rgb, mm, "room")])
    return Case({"type": "nyu_zip", "path": str(path), "split": "test"}, rgb, mm)


def _nyu_mat(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    mat, splits = make_nyu_mat(root, [(rgb, mm, "room")], [1], [1])
    return Case({"type": "nyu_mat", "path": str(mat), "splits_path": str(splits), "split": "test",
                 "depth": "raw"}, rgb, mm)


def _h5(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    return Case({"type": "h5", "path": str(make_h5_folder(root, [(rgb, mm, "room/0")]))}, rgb, mm)


def _bts(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    folder, listing = make_bts(root, [(rgb, mm, "room")])
    return Case({"type": "bts", "data_path": str(folder), "filenames_file": str(listing)}, rgb, mm,
                rgb_tol=4 / 255)


def _paired(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    csv = make_paired_csv(root, [(rgb, mm, "room")], encoding_scale=1000.0)
    return Case({"type": "paired", "csv_path": str(csv), "encoding": "png_mm"}, rgb, mm)


def _kitti(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    drive = "2011_09_26_drive_0002_sync"
    _png(root / "raw" / "2011_09_26" / drive / "image_02" / "data" / "0000000005.png", rgb)
    write_png16(root / "gt" / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000005.png",
                np.rint(mm / 1000.0 * 256))  # metres x 256, 0 = no LiDAR return
    (root / "eigen.txt").write_text(f"2011_09_26/{drive} 5 l\n")
    return Case({"type": "kitti", "data_path": str(root / "raw"), "gt_path": str(root / "gt"),
                 "filenames_file": str(root / "eigen.txt")}, rgb, mm, depth_tol=0.5 / 256)


def _diode(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    scan = root / "val" / "indoors" / "scene_00019" / "scan_00183"
    stem = "00019_00183_indoors_000_010"
    _png(scan / f"{stem}.png", rgb)
    valid = mm > 0
    depth = np.where(valid, mm / 1000.0, 7.0).astype(np.float32)[..., None]  # holes: a value, masked out
    scan.mkdir(parents=True, exist_ok=True)
    np.save(scan / f"{stem}_depth.npy", depth)
    np.save(scan / f"{stem}_depth_mask.npy", valid.astype(np.float32))
    return Case({"type": "diode", "path": str(root / "val"), "split": "indoors"}, rgb, mm, depth_tol=1e-6)


def _ibims(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    stored = np.rint(mm / 1000.0 / 50.0 * 65535).astype(np.uint16)  # uint16 over 0-50 m
    _png(root / "rgb" / "corridor_01.png", rgb)
    _png(root / "depth" / "corridor_01.png", np.where(mm > 0, stored, 1234).astype(np.uint16))
    _png(root / "mask_invalid" / "corridor_01.png", (mm > 0).astype(np.uint8))
    _png(root / "mask_transp" / "corridor_01.png", np.ones(SHAPE, np.uint8))
    (root / "imagelist.txt").write_text("corridor_01\n")
    return Case({"type": "ibims", "path": str(root)}, rgb, mm, depth_tol=0.5 * 50 / 65535)


def _sunrgbd(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    rotated = ((mm << 3) | (mm >> 13)).astype(np.uint16)  # SUN RGB-D stores mm rotated left by 3 bits
    sample = root / "kv2" / "kinect2data" / "000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize"
    _png(sample / "image" / "0000103.jpg", rgb)
    _png(sample / "depth_bfx" / "0000103.png", rotated)
    return Case({"type": "sunrgbd", "path": str(root)}, rgb, mm)


def _eth3d(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    scene = root / "courtyard"
    _png(scene / "images" / "dslr_images" / "DSC_0286.JPG", rgb)
    (scene / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    np.where(mm > 0, mm / 1000.0, np.inf).astype("<f4").tofile(scene / "ground_truth_depth" / "dslr_images" / "DSC_0286.JPG")
    return Case({"type": "eth3d", "path": str(root), "height": SHAPE[0], "width": SHAPE[1]}, rgb, mm, depth_tol=1e-6)


def _cityscapes(root: Path, rng) -> Case:
    rgb, mm = _pair(rng)
    baseline, fx = 0.209313, 2262.52
    stem, city = "frankfurt_000000_000294", "frankfurt"
    # stored p: disparity (p - 1) / 256 px, depth = baseline * fx / disparity; 0 = invalid
    stored = np.where(mm > 0, np.rint(baseline * fx / np.maximum(mm, 1) * 1000.0 * 256) + 1, 0).astype(np.uint16)
    metres = np.where(stored > 0, baseline * fx / np.maximum((stored.astype(np.float64) - 1) / 256, 1e-9), 0.0)
    _png(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", rgb)
    _png(root / "disparity" / "val" / city / f"{stem}_disparity.png", stored)
    cam = root / "camera" / "val" / city / f"{stem}_camera.json"
    cam.parent.mkdir(parents=True)
    cam.write_text(json.dumps({"extrinsic": {"baseline": baseline}, "intrinsic": {"fx": fx}}))
    return Case({"type": "cityscapes", "path": str(root), "split": "val"}, rgb, metres * 1000.0, depth_tol=1e-5)


DATASET_FIXTURES: dict[str, Callable[[Path, np.random.Generator], Case]] = {
    "synthetic": _synthetic, "synthetic_video": _synthetic_video, "nyu_zip": _nyu_zip, "nyu_mat": _nyu_mat, "h5": _h5, "bts": _bts, "paired": _paired,
    "kitti": _kitti, "diode": _diode, "ibims": _ibims, "sunrgbd": _sunrgbd, "eth3d": _eth3d,
    "cityscapes": _cityscapes,
}
