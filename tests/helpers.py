"""Shared test helpers: real-sample paths, builders of tiny datasets in each packaging, depth loaders,
the sample contract, tiny training overrides and a tiny model. Tests import from here, never from
another test module.

The dataset builders are written independently of depthsmith's readers (plain PIL / h5py / zipfile /
scipy calls, the layouts as the original packagers wrote them), so that the reader tests compare the
readers with the packagings, not with themselves. Also imported by benchmarks/bench_data.py.

Real RGB-D pairs: tests/data/real holds the ones whose licence allows shipping them (TUM, CC BY 4.0;
a Kinect v2 capture, Apache-2.0; see tests/data/real/README.md). NYU Depth V2, SUN RGB-D (no explicit
licence) and KITTI (CC BY-NC-SA) are not shipped: they are read from ../shared/data/real when a
checkout has it, and the tests that need them skip saying so otherwise.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

VENDORED = Path(__file__).resolve().parent / "data" / "real"  # shipped with the tests (licences inside)
# ../shared/data/real from the repository root: NYU, SUN, KITTI; a public clone does not have it.
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
NYU_FOLDERS = ["metric3d_nyu", "open3d_nyu_raw_registered", "open3d_tum", "open3d_sun"]  # all 480x640
NYU_FOCAL = 518.8579  # BTS file lists carry the focal length of the NYU Kinect


def real_root(folder: str) -> Path:
    """The folder holding ``folder``: tests/data/real when it is vendored, else ../shared/data/real."""
    return VENDORED if (VENDORED / folder).is_dir() else REAL


def real_dir(folder: str) -> Path:
    return real_root(folder) / folder


def need_real(folder: str = "metric3d_nyu") -> Path:
    """``real_root(folder)``, or a skip saying why when neither place has it."""
    if not real_dir(folder).is_dir():
        pytest.skip(f"real RGB-D samples {folder} not found in {VENDORED} or {REAL}: only TUM (CC BY 4.0) "
                    "and Kinect v2 (Apache-2.0) pairs are vendored; NYU Depth V2 and SUN RGB-D have no "
                    "explicit licence and KITTI is CC BY-NC-SA, so they are not shipped (tests/data/real/README.md)")
    return real_root(folder)


def real_pairs(folders: list[str] | None = None, size: tuple[int, int] | None = None):
    """(rgb uint8 HxWx3, depth millimetres uint16 HxW, 'folder/NNNNN') from the reference PNGs.

    ``size`` = (height, width) resizes (bilinear RGB, nearest depth) for benchmarks.
    """
    pairs = []
    for folder in folders or NYU_FOLDERS:
        for rgb_path in sorted((need_real(folder) / folder).glob("*_rgb.png")):
            rgb = Image.open(rgb_path).convert("RGB")
            depth = Image.open(rgb_path.with_name(rgb_path.name.replace("_rgb", "_depth")))
            if size is not None:
                rgb = rgb.resize(size[::-1], Image.BILINEAR)
                depth = Image.fromarray(np.asarray(depth, dtype=np.int32)).resize(size[::-1], Image.NEAREST)
            pairs.append((np.asarray(rgb), np.asarray(depth).astype(np.uint16), f"{folder}/{rgb_path.stem[:5]}"))
    return pairs


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_png16(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint16)).save(path)  # PIL writes uint16 arrays as 16-bit greyscale


def make_nyu_zip(path: Path, train, test, prefix: str = "") -> Path:
    """DenseDepth's nyu_data.zip: CSVs, JPEG RGB + 8-bit depth (round(d / 10 * 255)) for train,
    PNG RGB + 16-bit millimetre depth for test."""
    with zipfile.ZipFile(path, "w") as zf:
        lines = []
        for k, (rgb, mm, name) in enumerate(train):
            scene = name.split("/")[0] + "_0001"
            rgb_name, depth_name = f"data/nyu2_train/{scene}/{k + 1}.jpg", f"data/nyu2_train/{scene}/{k + 1}.png"
            eight_bit = np.clip(np.rint(mm / 1000.0 / 10.0 * 255.0), 0, 255).astype(np.uint8)
            zf.writestr(prefix + rgb_name, png_bytes(rgb, "JPEG"))
            zf.writestr(prefix + depth_name, png_bytes(eight_bit))
            lines.append(f"{rgb_name},{depth_name}")
        zf.writestr(prefix + "data/nyu2_train.csv", "\n".join(lines) + "\n")
        lines = []
        for k, (rgb, mm, _) in enumerate(test):
            rgb_name, depth_name = f"data/nyu2_test/{k:05d}_colors.png", f"data/nyu2_test/{k:05d}_depth.png"
            buf = io.BytesIO()
            Image.fromarray(mm.astype(np.uint16)).save(buf, format="PNG")
            zf.writestr(prefix + rgb_name, png_bytes(rgb))
            zf.writestr(prefix + depth_name, buf.getvalue())
            lines.append(f"{rgb_name},{depth_name}")
        zf.writestr(prefix + "data/nyu2_test.csv", "\n".join(lines) + "\n")
    return path


def make_nyu_mat(folder: Path, pairs, train_ndx, test_ndx, splits_format: str = "v5") -> tuple[Path, Path]:
    """nyu_depth_v2_labeled.mat as MATLAB v7.3 writes it (HDF5, column-major, so h5py sees
    ``images`` as (N, 3, W, H) and ``depths`` as (N, W, H)) plus splits.mat with 1-based indices.

    ``depths`` (filled) takes the raw depth with holes set to 1.5 m; ``rawDepths`` keeps the holes (0).
    """
    folder.mkdir(parents=True, exist_ok=True)
    mat = folder / "nyu_depth_v2_labeled.mat"
    images = np.stack([rgb.transpose(2, 1, 0) for rgb, _, _ in pairs])  # (N, 3, W, H)
    raw = np.stack([(mm.astype(np.float32) / 1000.0).T for _, mm, _ in pairs])  # (N, W, H)
    filled = np.where(raw > 0, raw, np.float32(1.5)).astype(np.float32)
    with h5py.File(mat, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("depths", data=filled)
        f.create_dataset("rawDepths", data=raw)
    splits = folder / "splits.mat"
    train = np.asarray(train_ndx, dtype=np.float64).reshape(-1, 1)  # MATLAB doubles, column vectors
    test = np.asarray(test_ndx, dtype=np.float64).reshape(-1, 1)
    if splits_format == "v5":
        from scipy.io import savemat

        savemat(splits, {"trainNdxs": train, "testNdxs": test})
    else:  # v7.3: HDF5 with the transposed (1, n) layout
        with h5py.File(splits, "w") as f:
            f.create_dataset("trainNdxs", data=train.T)
            f.create_dataset("testNdxs", data=test.T)
    return mat, splits


def make_h5_folder(folder: Path, pairs) -> Path:
    """sparse-to-dense / FastDepth layout: <split>/<scene>/<n>.h5 with rgb (3, H, W) uint8 and depth (H, W) metres."""
    for k, (rgb, mm, name) in enumerate(pairs):
        path = folder / "train" / name.split("/")[0] / f"{k:05d}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f.create_dataset("rgb", data=rgb.transpose(2, 0, 1))
            f.create_dataset("depth", data=mm.astype(np.float32) / 1000.0)
    return folder


def make_bts(folder: Path, pairs=None) -> tuple[Path, Path]:
    """BTS sync layout: <scene>/rgb_XXXXX.jpg + sync_depth_XXXXX.png and a file list.

    Without ``pairs`` the native Metric3D/BTS files of metric3d_nyu/raw are copied as they are.
    """
    lines = []
    scene = folder / "basement_0001a"
    scene.mkdir(parents=True, exist_ok=True)
    if pairs is None:
        for rgb in sorted((REAL / "metric3d_nyu" / "raw" / "rgb").glob("rgb_*.jpg")):
            number = rgb.stem.split("_")[1]
            shutil.copy(rgb, scene / rgb.name)
            shutil.copy(REAL / "metric3d_nyu" / "raw" / "depth" / f"sync_depth_{number}.png", scene / f"sync_depth_{number}.png")
            lines.append(f"/basement_0001a/rgb_{number}.jpg /basement_0001a/sync_depth_{number}.png {NYU_FOCAL}")
    else:
        for k, (rgb, mm, _) in enumerate(pairs):
            (scene / f"rgb_{k:05d}.jpg").write_bytes(png_bytes(rgb, "JPEG"))
            write_png16(scene / f"sync_depth_{k:05d}.png", mm)
            lines.append(f"/basement_0001a/rgb_{k:05d}.jpg /basement_0001a/sync_depth_{k:05d}.png {NYU_FOCAL}")
    listing = folder / "nyudepthv2_train_files_with_gt.txt"
    listing.write_text("\n".join(lines) + "\n")
    return folder, listing


def make_paired_csv(folder: Path, pairs, encoding_scale: float | None = 1000.0, header: bool = True) -> Path:
    """A user's own dataset: rgb/*.png + depth/*.png (16-bit at ``encoding_scale`` per metre) or
    depth/*.npy (float metres, ``encoding_scale=None``), listed in a CSV relative to its folder."""
    rows = ["rgb,depth"] if header else []
    for k, (rgb, mm, _) in enumerate(pairs):
        (folder / "rgb").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / "rgb" / f"{k:05d}.png")
        if encoding_scale is None:
            (folder / "depth").mkdir(parents=True, exist_ok=True)
            np.save(folder / "depth" / f"{k:05d}.npy", mm.astype(np.float32) / 1000.0)
            rows.append(f"rgb/{k:05d}.png,depth/{k:05d}.npy")
        else:
            write_png16(folder / "depth" / f"{k:05d}.png", np.rint(mm / 1000.0 * encoding_scale))
            rows.append(f"rgb/{k:05d}.png,depth/{k:05d}.png")
    csv = folder / "pairs.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def load_depth(rel: str) -> np.ndarray:
    """A real 16-bit millimetre depth PNG (``<folder>/<file>``) in metres, or a skip saying why."""
    folder = rel.split("/")[0]
    need_real(folder)
    return np.asarray(Image.open(real_dir(folder) / rel.split("/", 1)[1])).astype(np.float32) / 1000.0


HALF_MM = 0.0005


def check_sample(sample, rgb: np.ndarray, mm: np.ndarray, depth_tol: float = HALF_MM, rgb_tol: float = 0.5 / 255):
    """The sample contract, and metres / mask / RGB against the reference pair."""
    h, w = mm.shape
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, h, w)
    assert sample["depth"].dtype == torch.float32 and sample["depth"].shape == (1, h, w)
    assert sample["mask"].dtype == torch.bool and sample["mask"].shape == (1, h, w)
    assert isinstance(sample["name"], str)
    depth, mask = sample["depth"][0].numpy(), sample["mask"][0].numpy()
    ref = mm.astype(np.float64) / 1000.0
    assert np.array_equal(mask, mm > 0)
    assert np.all(depth[~mask] == 0)
    assert np.abs(depth - ref)[mask].max() <= depth_tol + 1e-6
    image = sample["image"].permute(1, 2, 0).numpy()
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert np.abs(image - rgb / 255.0).mean() <= rgb_tol + 1e-6


# 32x48 scenes, a handful of steps, fp32 on one CPU process.
TINY = [
    "data.train={type: synthetic, num_samples: 8, size: [32, 48], seed: 0}",
    "data.transforms=[hflip]",
    "data.batch_size=4",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.precision=fp32",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.strategy=auto",
    "trainer.log_every_n_steps=1",
    "logging.progress_bar=false",
    "model.encoder_weights=null",
]
SMALL_UNET = "model.decoder_kwargs={filters: [32, 16, 16, 8, 8]}"


def tiny_varying_model():
    """A tiny model whose depth varies over a few metres (head scaled up: a random head gives a
    near-constant map, on which precision differences would not show)."""
    import depthsmith

    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 8, 8, 8, 8]})
    with torch.no_grad():
        model.decoder.head.weight.mul_(30.0)
    return model.eval()


def tiny_hf_depth_anything(kind: str, out_indices=(1, 2, 3, 4), max_depth: int = 20, layers: int = 4):
    """A tiny transformers Depth Anything (DINOv2 backbone), ``kind`` relative or metric."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, image_size=56, patch_size=14,
                            out_indices=list(out_indices), reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=kind,
                                 max_depth=max_depth if kind == "metric" else 1)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        # Large random weights (the default init makes every output nearly the same constant, which
        # would hide conversion bugs), then the last conv rescaled so that the logits spread about 1.
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        model.head.activation2 = torch.nn.Identity()
        spread = model(pixel_values=torch.randn(1, 3, 56, 70)).predicted_depth.std() / max_depth
        model.head.conv3.weight /= spread
        model.head.conv3.bias /= spread
        model.head.activation2 = torch.nn.ReLU() if kind == "relative" else torch.nn.Sigmoid()
    return model


def read_weights(folder: Path) -> dict:
    """The tensors of a Hugging Face model folder's model.safetensors."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def copy_with_weights(folder: Path, dest: Path, state: dict) -> Path:
    """``folder``'s JSON files (config, preprocessor) copied to ``dest`` beside ``state`` saved as its
    model.safetensors: a checkpoint edited by a test, the original left as it was."""
    from safetensors.torch import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for path in Path(folder).glob("*.json"):
        shutil.copyfile(path, dest / path.name)
    save_file(state, str(dest / "model.safetensors"))
    return dest
