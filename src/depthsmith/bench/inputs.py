"""The benchmark's inputs: the accuracy image and sets (a synthetic room, held-out synthetic rooms,
real frames) and the depth-head fit that stands in for trained weights.

Synthetic rooms come from ``depthsmith.data.SyntheticScenes`` (the one room generator) with a
seed no recipe trains on; real frames are the ``*_rgb.*`` images under a folder (e.g. the
repository's shared sample ``shared/data/real/<source>/00000_rgb.png``), resized to the
benchmark's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.synthetic import SyntheticScenes
from ..io import IMAGE_SUFFIXES, load_image, read_png16
from ..models import load_any
from ..resize import resized

__all__ = ["synthetic_rooms", "real_frames", "synthetic_scene", "fit_depth_head", "load_for_bench", "bench_size",
           "HELDOUT_SEED"]

HELDOUT_SEED = 7  # recipes train on seed 0, validate on 1 and evaluate on 2; int8 calibrates on 1234


def synthetic_rooms(count: int, height: int, width: int, seed: int = HELDOUT_SEED) -> list[torch.Tensor]:
    """``count`` procedural rooms as 1 x 3 x H x W tensors."""
    rooms = SyntheticScenes(num_samples=max(1, count), size=(height, width), seed=seed)
    return [rooms[i]["image"][None] for i in range(count)]


def real_frames(folder: str | Path | None, height: int, width: int, limit: int = 12) -> tuple[list[torch.Tensor], str]:
    """Up to ``limit`` RGB frames (files named ``*_rgb.*``) under ``folder`` as 1 x 3 x H x W tensors,
    and a note (why none, where they are from)."""
    if folder is None:
        return [], "no real frames given"
    folder = Path(folder)
    if not folder.is_dir():
        return [], f"real frames skipped: {folder} not found"
    files = sorted(p for p in folder.rglob("*_rgb.*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        return [], f"real frames skipped: no *_rgb images under {folder}"
    frames = [resized(torch.from_numpy(load_image(f)).permute(2, 0, 1), (height, width)) for f in files]
    return frames, f"{len(files)} real frames from {folder} ({', '.join(sorted({f.parent.name for f in files}))})"


def synthetic_scene(height: int = 240, width: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One procedural room of ``SyntheticScenes``: H x W x 3 float32 RGB in [0, 1] and its depth in
    metres (H x W float32, exact from ray casting)."""
    sample = SyntheticScenes(num_samples=1, size=(height, width), seed=seed)[0]
    return sample["image"].permute(1, 2, 0).numpy(), sample["depth"][0].numpy()


@torch.no_grad()
def fit_depth_head(model: nn.Module, image: torch.Tensor, depth: torch.Tensor, ridge: float = 1e-3) -> nn.Module:
    """Fit the decoder's last 1-channel convolution by ridge least squares so that ``model(image)``
    approximates ``depth`` (metres; 0 = invalid) on its valid pixels. In place; returns the model.

    Only for metric (``output='metric'``) DepthModels: the target is logit(depth / max_depth).
    """
    head = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 1][-1]
    seen: dict[str, torch.Tensor] = {}
    hook = head.register_forward_pre_hook(lambda mod, args: seen.__setitem__("x", args[0]))
    model.eval()(image)
    hook.remove()
    k, pad = head.kernel_size, head.padding
    cols = F.unfold(seen["x"].double(), k, padding=pad).transpose(1, 2).reshape(-1, head.in_channels * k[0] * k[1])
    target = depth.double().reshape(-1)
    valid = target > 0
    frac = (target / model.max_depth).clamp(0.02, 0.98)
    a = torch.cat([cols[valid], torch.ones(int(valid.sum()), 1, dtype=cols.dtype)], dim=1)
    b = torch.log(frac / (1 - frac))[valid]
    gram = a.T @ a
    lam = ridge * gram.diagonal().mean()
    w = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=gram.dtype), a.T @ b)
    head.weight.copy_(w[:-1].view_as(head.weight).float())
    head.bias.copy_(w[-1:].float())
    return model


def bench_size(model: str | nn.Module, height: int | None, width: int | None) -> tuple[int, int]:
    """``height`` x ``width``, or by default the model's working size (``resize.example_size``); a
    preset name is a native random-init model."""
    from ..models import list_models
    from ..resize import example_size
    from ..runtime import model_working_size, open_model

    if height and width:
        return int(height), int(width)
    preset = isinstance(model, str) and not Path(model).exists() and model in list_models()
    return example_size(None if preset else model_working_size(open_model(model)), height, width)


def load_for_bench(
    model: str | nn.Module, image: Any, depth: Any, height: int, width: int
) -> tuple[nn.Module, torch.Tensor, str]:
    """The model, a 1 x 3 x H x W accuracy image, and a note on where the weights come from."""
    from_preset = isinstance(model, str) and not Path(model).exists() and not model.endswith(".onnx")
    if from_preset:
        torch.manual_seed(0)  # the same random weights in every run, so accuracy columns repeat
    net = load_any(model)
    if image is None:
        rgb, gt, source = *synthetic_scene(height, width), "a synthetic room"
    else:
        rgb, source = load_image(image), f"{Path(str(image)).name}"
        gt = read_png16(depth) if depth is not None else synthetic_scene(*rgb.shape[:2])[1]
    x = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None], size=(height, width), mode="bilinear",
                      antialias=True)
    gt_t = F.interpolate(torch.from_numpy(np.ascontiguousarray(gt))[None, None], size=(height, width), mode="nearest")
    given = model if isinstance(model, (str, Path)) else getattr(net, "name", "the given model")
    note = "" if from_preset else f"weights of {given} as given"
    if from_preset and getattr(net, "output", "") == "metric":
        fit_depth_head(net, x, gt_t[0, 0])
        note = (f"random-init preset with its depth head least-squares fitted to the depth of {source} "
                "(stand-in for trained weights so outputs vary)")
    return net.eval(), x, note
