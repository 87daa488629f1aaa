"""Samples per second of every dataset reader and of the procedural scene generator.

    PYTHONPATH=src python benchmarks/bench_data.py [--samples 60] [--size 240 320] [--no-model]

Readers run on fixtures written to a temporary folder in each packaging, made from the real
pairs in ../shared/data/real resized to the benchmark size (or from synthetic scenes when the
real pairs are absent). Every reader decodes the same few files over and over, so the OS file
cache is warm: this measures decoding, not disk. One process, one thread, no DataLoader workers;
"CPU" rates use process time, which shared machines disturb less than wall time.

A reference row times a small CNN (timm resnet18) forward + backward per sample on the same
CPU: data loading is not the bottleneck while its ms/sample stay well below that.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # the fixture writers shared with the tests

from depthsmith.data import (BtsDataset, H5Dataset, NyuMatDataset, NyuZipDataset, PairedDataset,  # noqa: E402
                             SyntheticScenes)
from helpers import (REAL, make_bts, make_h5_folder, make_nyu_mat, make_nyu_zip,  # noqa: E402
                                make_paired_csv, real_pairs)


def synthetic_pairs(size: tuple[int, int], count: int = 6):
    ds = SyntheticScenes(count, size=size, seed=123)
    pairs = []
    for i in range(count):
        s = ds[i]
        rgb = (s["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        pairs.append((rgb, np.rint(s["depth"][0].numpy() * 1000).astype(np.uint16), f"synthetic/{i:05d}"))
    return pairs


def rate(dataset, samples: int, repeats: int = 3) -> tuple[float, float]:
    """Best of ``repeats`` runs of ``samples`` reads: (wall samples/s, CPU samples/s)."""
    dataset[0]  # open handles, warm caches
    best_wall = best_cpu = 0.0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(samples):
            dataset[i % len(dataset)]
        best_wall = max(best_wall, samples / (time.perf_counter() - wall))
        best_cpu = max(best_cpu, samples / max(time.process_time() - cpu, 1e-9))
    return best_wall, best_cpu


def model_rate(size: tuple[int, int], batch: int = 8) -> tuple[float, float] | None:
    try:
        import timm
    except ImportError:
        return None
    model = timm.create_model("resnet18", pretrained=False, num_classes=1)
    x = torch.rand(batch, 3, *size)
    model(x).sum().backward()  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    model(x).sum().backward()
    return batch / (time.perf_counter() - wall), batch / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60, help="reads per timed run")
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--no-model", action="store_true", help="skip the CNN reference row")
    args = parser.parse_args()
    size = tuple(args.size)
    torch.set_num_threads(1)

    source = "real pairs" if (REAL / "metric3d_nyu").is_dir() else "synthetic scenes (real pairs not found)"
    pairs = real_pairs(size=size) if source == "real pairs" else synthetic_pairs(size)
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zip_path = make_nyu_zip(tmp / "nyu_data.zip", pairs, pairs)
        mat, _ = make_nyu_mat(tmp / "mat", pairs, list(range(1, len(pairs) + 1)), [1], splits_format="h5")
        bts_root, listing = make_bts(tmp / "bts", pairs)
        readers = {
            "nyu_zip train (JPEG + 8-bit PNG, in zip)": NyuZipDataset(zip_path, split="train"),
            "nyu_zip test (PNG + 16-bit PNG, in zip)": NyuZipDataset(zip_path, split="test"),
            "nyu_mat (labeled .mat, HDF5)": NyuMatDataset(mat, split="train"),
            "h5 (FastDepth per-sample .h5)": H5Dataset(make_h5_folder(tmp / "h5", pairs)),
            "bts (JPEG + 16-bit PNG, file list)": BtsDataset(bts_root, listing),
            "paired png_mm (PNG + 16-bit PNG, CSV)": PairedDataset(csv_path=make_paired_csv(tmp / "mm", pairs),
                                                                   encoding="png_mm"),
            "paired png_kitti (PNG + 16-bit /256)": PairedDataset(
                csv_path=make_paired_csv(tmp / "kitti", pairs, encoding_scale=256.0), encoding="png_kitti"),
            "paired npy_m (PNG + float .npy)": PairedDataset(
                csv_path=make_paired_csv(tmp / "npy", pairs, encoding_scale=None)),
        }
        for name, dataset in readers.items():
            rows.append((name, "x".join(map(str, dataset[0]["depth"].shape[-2:])), *rate(dataset, args.samples)))
    synthetic = SyntheticScenes(10_000, size=size, seed=0)
    rows.append(("synthetic generator (ray casting)", f"{size[0]}x{size[1]}", *rate(synthetic, args.samples)))
    reference = None if args.no_model else model_rate(size)

    print(f"# depthsmith data benchmark: {source}, {args.samples} samples x best of 3, 1 thread")
    print(f"# CPU: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (others' work slows both columns)")
    print()
    print(f"| {'dataset':<42} | {'H x W':>8} | {'samples/s (wall)':>16} | {'samples/s (CPU)':>15} | {'ms/sample (CPU)':>15} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 18}|{'-' * 17}|{'-' * 17}|")
    for name, res, wall, cpu in rows:
        print(f"| {name:<42} | {res:>8} | {wall:>16.1f} | {cpu:>15.1f} | {1000 / cpu:>15.2f} |")
    if reference is not None:
        wall, cpu = reference
        name, res = "reference: resnet18 fwd+bwd (batch 8)", f"{size[0]}x{size[1]}"
        print(f"| {name:<42} | {res:>8} | {wall:>16.1f} | {cpu:>15.1f} | {1000 / cpu:>15.2f} |")


if __name__ == "__main__":
    main()
