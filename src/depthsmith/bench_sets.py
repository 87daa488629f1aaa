"""The benchmark's inputs and runners: the accuracy image and sets (a synthetic room, held-out
synthetic rooms, real frames), the depth-head fit that stands in for trained weights, the
agreement measures, and one callable per benchmark row.

Each backend's output is compared with fp32 eager PyTorch on every image of a set, at the
benchmark's size. Synthetic rooms come from ``depthsmith.data.SyntheticScenes`` with a seed no
recipe trains on; real frames are the ``*_rgb.*`` images under a folder (e.g. the repository's
shared sample ``shared/data/real/<source>/00000_rgb.png``), resized to the benchmark's size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["synthetic_rooms", "real_frames", "synthetic_scene", "fit_depth_head", "agreement", "HELDOUT_SEED"]

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


def synthetic_scene(height: int = 240, width: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic textured "room" (H x W x 3 float RGB in [0, 1]) and its depth in metres:
    a floor and back wall (1.5 m near the bottom to 8 m at the top) and three closer boxes."""
    rng = np.random.default_rng(seed)
    rows = np.broadcast_to(np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None], (height, width))
    depth = 8.0 - 6.5 * rows
    rgb = np.stack([0.3 + 0.4 * rows, 0.5 - 0.2 * rows, np.full_like(rows, 0.6)], axis=-1)
    for _ in range(3):
        h, w = rng.integers(height // 6, height // 3), rng.integers(width // 6, width // 3)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        depth[top:top + h, left:left + w] = rng.uniform(1.0, 4.0)
        rgb[top:top + h, left:left + w] = rng.uniform(0.1, 0.9, size=3)
    rgb += rng.normal(0.0, 0.03, size=rgb.shape)  # sensor-like texture
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), depth.astype(np.float32)


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


def agreement(fast: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(mean |fast - ref| / ref, fraction of pixels with max(fast/ref, ref/fast) < 1.25)."""
    fast, ref = fast.float().clamp_min(1e-6), ref.float().clamp_min(1e-6)
    rel = ((fast - ref).abs() / ref).mean().item()
    delta1 = (torch.maximum(fast / ref, ref / fast) < 1.25).float().mean().item()
    return rel, delta1


def _runners(model: nn.Module, backend: str, height: int, width: int) -> tuple[Runner, Any]:
    """A callable B x 3 x H x W float -> B x 1 x H x W depth for ``backend``, and its precision
    (or a function giving it: backend auto knows its precision once it has chosen)."""
    from .bench import BACKENDS
    from .inference import Predictor
    from .runtime import create_runner, list_backends

    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    if backend == "fp32":
        return model, "fp32"
    if backend in ("channels_last", "bf16_cl"):
        # .eval() again: deepcopy of an fx GraphModule (the tapped IRv2 encoder) comes back in train mode
        cl = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)

        def run_cl(x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous(memory_format=torch.channels_last)
            if backend == "bf16_cl":
                with bf16:
                    return cl(x).float()
            return cl(x)

        return run_cl, "bf16" if backend == "bf16_cl" else "fp32"
    if backend == "bf16":
        def run_bf16(x: torch.Tensor) -> torch.Tensor:
            with bf16:
                return model(x).float()

        return run_bf16, "bf16"
    if backend == "predict":
        predictor = Predictor(model, device="cpu")

        def run_predict(x: torch.Tensor) -> torch.Tensor:
            # The public path: decoded H x W x 3 images in, H x W depth arrays out.
            images = list(enumerate(x.permute(0, 2, 3, 1).numpy()))
            depths = [d for _, _, d in predictor.predict_many(images, batch_size=len(images))]
            return torch.from_numpy(np.stack(depths))[:, None]

        run_predict.predictor = predictor  # type: ignore[attr-defined]  (the loaded pass re-decides auto)
        return run_predict, lambda: predictor.precision
    if backend in list_backends():
        # int8 is measured whatever its accuracy (the table shows it); predict and export refuse past 2%.
        options = {"tolerance": float("inf")} if backend == "openvino-int8" else {}
        runner = create_runner(backend, model, device="cpu", **options)
        return runner, lambda: runner.precision
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _load_for_bench(
    model: str | nn.Module, image: Any, depth: Any, height: int, width: int
) -> tuple[nn.Module, torch.Tensor, str]:
    """The model, a 1 x 3 x H x W accuracy image, and a note on where the weights come from."""
    from .inference import load_any
    from .io import load_image, read_png16

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


def _mean_agreement(run: Runner, inputs: list[torch.Tensor], refs: list[torch.Tensor]) -> tuple[float, float]:
    """Mean over images of (mean relative difference, delta1 agreement); NaN for no images."""
    if not inputs:
        return float("nan"), float("nan")
    pairs = [agreement(run(x), ref) for x, ref in zip(inputs, refs)]
    return float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))
