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
import json
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


def save_hf_depth_anything(hf, folder: Path, size: int = 518) -> Path:
    """``hf`` saved with a Depth Anything image processor config (the Hub's: ImageNet mean / std, the short
    side to ``size`` keeping the aspect, a multiple of 14; 518 as published)."""
    import json

    hf.save_pretrained(folder)
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
         "size": {"height": size, "width": size}, "keep_aspect_ratio": True, "ensure_multiple_of": 14}))
    return Path(folder)


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


# The tiny transformers models of the conversion tests (test_hf_*.py), shared with test_zoo_export.py.
DPT_MEAN, DPT_STD = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
DPT_VARIANTS = {  # dpt-large's layout, and the other readouts and fusion options of DPTConfig
    "project": {},
    "add-batchnorm": {"readout_type": "add", "use_batch_norm_in_fusion_residual": True},
    "ignore-projection": {"readout_type": "ignore", "add_projection": True, "fusion_hidden_size": 256},
    # dpt-hybrid-midas: the BiT R50 stem (full size: timm's hybrid has it fixed) under a tiny ViT
    "hybrid": {"is_hybrid": True, "reassemble_factors": [1, 1, 1, 0.5], "neck_hidden_sizes": [256, 512, 64, 64],
               "backbone_featmap_shape": [1, 1024, 4, 4]},
    # dpt-beit-*: a BEiT backbone (relative position bias, layer scale), built in tiny_hf_dpt
    "beit": {"backbone_config": "beit"},
}


def tiny_hf_dpt(**options):
    """A tiny random transformers DPT (MiDaS 3.x layouts: ``DPT_VARIANTS``), its output spread about 1.5 +- 1."""
    import functools

    import transformers
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    if options.get("backbone_config") == "beit":
        options["backbone_config"] = transformers.BeitConfig(
            hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128, image_size=64,
            patch_size=16, use_relative_position_bias=True, use_absolute_position_embeddings=False,
            out_indices=[1, 2, 3, 4], reshape_hidden_states=False, layer_scale_init_value=0.1)
    config = DPTConfig(**{"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 128,
                          "image_size": 64, "patch_size": 16, "backbone_out_indices": [0, 1, 2, 3],
                          "neck_hidden_sizes": [16, 32, 64, 64], "fusion_hidden_size": 32, **options})
    model = DPTForDepthEstimation(config).eval()
    if config.is_hybrid:
        # DPTModel never passes interpolate_pos_encoding to the hybrid embeddings, which then refuse
        # any size but image_size; switch on their own resizing (_resize_pos_embed) for other sizes.
        embeddings = model.dpt.embeddings
        embeddings.forward = functools.partial(type(embeddings).forward, embeddings, interpolate_pos_encoding=True)
    with torch.no_grad():
        # Weights of unit gain (the default init gives a near-constant output that would hide
        # conversion bugs) and random batch-norm statistics, then the last conv scaled and shifted
        # so that the logits before the ReLU have mean 1.5 and standard deviation 1.
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn_like(p) / fan_in ** 0.5 + (1.0 if name.endswith("norm_before.weight") else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
        head = model.head.head
        head[4].bias.fill_(0.0)
        head[5] = torch.nn.Identity()
        image = (torch.rand(2, 3, 64, 64) - torch.tensor(DPT_MEAN).view(3, 1, 1)) / torch.tensor(DPT_STD).view(3, 1, 1)
        logits = model(pixel_values=image).predicted_depth
        head[5] = torch.nn.ReLU()
        head[4].weight /= logits.std()
        head[4].bias.fill_(float(1.5 - logits.mean() / logits.std()))
    return model


def save_hf_dpt(hf, folder):
    from transformers import DPTImageProcessor

    hf.save_pretrained(folder)
    DPTImageProcessor(image_mean=DPT_MEAN, image_std=DPT_STD, keep_aspect_ratio=True,
                      ensure_multiple_of=32).save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [depth]\n---\n# tiny\n")


ZOE_BINS = [{"name": "nyu", "n_bins": 12, "min_depth": 1e-3, "max_depth": 10.0},
            {"name": "kitti", "n_bins": 10, "min_depth": 1e-3, "max_depth": 80.0}]


def tiny_hf_zoedepth(bins):
    """A tiny random transformers ZoeDepth (BEiT backbone), one metric head per entry of ``bins``."""
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation

    backbone = BeitConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                          image_size=64, patch_size=16, use_relative_position_bias=True, reshape_hidden_states=False,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    two = dict(num_patch_transformer_layers=4, patch_transformer_hidden_size=128,  # 128: the classifier's fixed width
               patch_transformer_intermediate_size=32, patch_transformer_num_attention_heads=4) if len(bins) > 1 else {}
    config = ZoeDepthConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                            bottleneck_features=16, num_relative_features=8, bin_embedding_dim=32,
                            bin_configurations=bins, **two)
    torch.manual_seed(0)
    model = ZoeDepthForDepthEstimation(config).eval()
    with torch.no_grad():  # large random weights: the default init gives a nearly constant output
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model


def zoedepth_processor():
    """The processor of the tiny ZoeDepth: a 64 x 96 working size."""
    from transformers import ZoeDepthImageProcessor

    return ZoeDepthImageProcessor(size={"height": 64, "width": 96}, ensure_multiple_of=32)


def save_hf_zoedepth(hf, folder):
    hf.save_pretrained(folder)
    zoedepth_processor().save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [depth]\n---\n# tiny\n")
    return folder


DEPTH_PRO_WORK = 256  # working size: tile 64 / smallest ratio 0.25, as 384 / 0.25 = 1536 for apple/DepthPro-hf


def tiny_hf_depth_pro(fov: bool = True):
    """A tiny random transformers Depth Pro (float64), working size ``DEPTH_PRO_WORK``."""
    from transformers import DepthProConfig, DepthProForDepthEstimation

    def vit(layers: int = 4) -> dict:  # patch 16 as the real ViT-L/16, so the output is at the working size
        return dict(model_type="dinov2", hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                    patch_size=16, image_size=64, layerscale_value=0.5)

    config = DepthProConfig(fusion_hidden_size=16, patch_size=64, intermediate_hook_ids=[2, 1],
                            intermediate_feature_dims=[16, 16], scaled_images_feature_dims=[32, 32, 16],
                            use_fov_model=fov, image_model_config=vit(), patch_model_config=vit(5),
                            fov_model_config=vit(3))
    torch.manual_seed(0)
    model = DepthProForDepthEstimation(config).eval()
    with torch.no_grad():  # inverse depth about 1 +- 0.15 (not at the clamp), fov about 40 +- 10 degrees
        model.head.layers[4].weight.mul_(0.001)
        model.head.layers[4].bias.fill_(1.0)
        if fov:  # transformers' init (std 0.02) leaves the fov ViT's part in the estimate negligible
            model.fov_model.fov_encoder.neck.weight.normal_(0, 1)
            model.fov_model.head.layers[2].bias.fill_(10.0)  # its two ReLU outputs not both 0: fov != the bias
            model.fov_model.head.layers[4].weight.normal_(0, 0.5)
            model.fov_model.head.layers[4].bias.fill_(50.0)
    return model.double()


def save_hf_depth_pro(hf, folder):
    from transformers import DepthProImageProcessor

    hf.save_pretrained(folder)
    DepthProImageProcessor(size={"height": DEPTH_PRO_WORK, "width": DEPTH_PRO_WORK}).save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apple-amlr\nlicense_name: apple-sample-code-license\n---\n# t\n")


def offline_hub_cache(monkeypatch, cache: Path) -> None:
    """Point huggingface_hub at ``cache`` with the network off (env for subprocesses, constants for this one)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def hub_snapshot(cache: Path, repo_id: str, revision: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """The snapshot folder of ``repo_id`` in the cache layout huggingface_hub writes
    (models--owner--name/{refs/main, snapshots/<revision>/...}); write the model's files into it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def spread_vit_weights(model: torch.nn.Module) -> None:
    """Weights large enough that every part of a DINOv2 + DPT network matters (the default init leaves
    attention nearly uniform and the output nearly constant): unit-gain matrices with q/k doubled,
    LayerScale about 0.2, norms about 1, small biases. Seeded."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:  # q/k doubled: a visibly non-uniform attention
                p.copy_(torch.randn_like(p) * (2.0 if "qkv" in name else 1.0) / p[0].numel() ** 0.5)
            elif name.endswith("gamma"):  # LayerScale
                p.copy_(0.2 * (1 + 0.2 * torch.randn_like(p)))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))


def standardise_output(last: torch.nn.Module, run) -> None:
    """Rescale the conv ``last`` so that its output on ``run()`` (a forward of the whole network) has
    mean 0 and standard deviation 1: logits that spread, whatever the random weights before it."""
    out = []
    hook = last.register_forward_hook(lambda module, args, y: out.append(y))
    with torch.no_grad():
        run()
        hook.remove()
        last.bias -= out[0].mean()
        last.weight /= out[0].std()
        last.bias /= out[0].std()


# Depth Anything 3's monocular models (PyPI depth-anything-3), shared by test_da3.py and test_zoo_everywhere.py.
DA3_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # upstream InputProcessor.NORMALIZE
DA3_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def tiny_da3(name: str) -> torch.nn.Module:
    """Upstream's ``DepthAnything3Net`` from its own config ``name`` (da3mono-large, da3metric-large) at ViT-S
    size (the published configs are ViT-L), with weights large enough that every part matters, then the
    depth and sky logits set to mean 0, std 1: depth spans e^-3..e^3, and about a third of the pixels are
    sky (upstream's threshold 0.3 after ReLU)."""
    from depth_anything_3.cfg import create_object, load_config
    from depth_anything_3.registry import MODEL_REGISTRY

    cfg = load_config(MODEL_REGISTRY[name])
    cfg.net.name, cfg.net.out_layers = "vits", [2, 5, 8, 11]
    cfg.head.dim_in, cfg.head.features, cfg.head.out_channels = 384, 64, [48, 96, 192, 384]
    net = create_object(cfg).eval()
    spread_vit_weights(net)
    x = (torch.rand(1, 3, 56, 70, generator=torch.Generator().manual_seed(1)) - DA3_MEAN) / DA3_STD
    for last in (net.head.scratch.output_conv2[2], net.head.scratch.sky_output_conv2[2]):
        standardise_output(last, lambda: net(x[:, None]))
    return net


def save_da3(net: torch.nn.Module, name: str, folder: Path, licence: str | None = "apache-2.0") -> Path:
    """``net`` saved as ``depth_anything_3.api.DepthAnything3.save_pretrained`` does: it is a
    ``PyTorchModelHubMixin`` whose only init argument is ``model_name`` and whose network is ``self.model``
    (api.py). The class itself is not imported: api.py pulls in the exporters' moviepy, pycolmap, trimesh, evo."""
    from huggingface_hub import PyTorchModelHubMixin

    class Published(torch.nn.Module, PyTorchModelHubMixin):
        def __init__(self, model_name: str) -> None:
            super().__init__()
            self.model = torch.nn.Identity()

    published = Published(model_name=name)
    published.model = net
    published.save_pretrained(folder)
    readme = Path(folder) / "README.md"
    readme.write_text(f"---\nlicense: {licence}\n---\n# {name}\n" if licence else f"# {name}\n")
    return Path(folder)


def edited_da3_folder(folder: Path, out: Path, change=None, name: str | None = None) -> Path:
    """A copy of a Depth Anything 3 checkpoint folder at ``out``, its state dict passed through ``change``
    (edits in place) and its config.json's ``model_name`` replaced by ``name``."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    if change:
        change(state)
    out.mkdir(exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **({"model_name": name} if name else {})}))
    return out
