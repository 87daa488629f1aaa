"""Inputs for the benchmark's accuracy columns: held-out synthetic rooms and real frames.

Each backend's output is compared with fp32 eager PyTorch on every image of a set, at the
benchmark's size. Synthetic rooms come from ``depthsmith.data.SyntheticScenes`` with a seed no
recipe trains on; real frames are the ``*_rgb.*`` images under a folder (e.g. the repository's
shared sample ``shared/data/real/<source>/00000_rgb.png``), resized to the benchmark's size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["synthetic_rooms", "real_frames", "HELDOUT_SEED"]

HELDOUT_SEED = 7  # recipes train on seed 0, validate on 1 and evaluate on 2; int8 calibrates on 1234


def _resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    x = x[None] if x.ndim == 3 else x
    if tuple(x.shape[-2:]) == size:
        return x.contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=x.shape[-2] > size[0])


def synthetic_rooms(count: int, height: int, width: int, seed: int = HELDOUT_SEED) -> list[torch.Tensor]:
    """``count`` procedural rooms as 1 x 3 x H x W tensors."""
    from .data.synthetic import SyntheticScenes

    rooms = SyntheticScenes(num_samples=max(1, count), size=(height, width), seed=seed)
    return [rooms[i]["image"][None] for i in range(count)]


def real_frames(folder: str | Path | None, height: int, width: int, limit: int = 12) -> tuple[list[torch.Tensor], str]:
    """Up to ``limit`` RGB frames (files named ``*_rgb.*``) under ``folder`` as 1 x 3 x H x W tensors,
    and a note (why none, where they are from)."""
    from .io import IMAGE_SUFFIXES, load_image

    if folder is None:
        return [], "no real frames given"
    folder = Path(folder)
    if not folder.is_dir():
        return [], f"real frames skipped: {folder} not found"
    files = sorted(p for p in folder.rglob("*_rgb.*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        return [], f"real frames skipped: no *_rgb images under {folder}"
    frames = [_resized(torch.from_numpy(load_image(f)).permute(2, 0, 1), (height, width)) for f in files]
    return frames, f"{len(files)} real frames from {folder} ({', '.join(sorted({f.parent.name for f in files}))})"
