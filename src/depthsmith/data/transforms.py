"""Sample transforms (callables on the sample dict) and the RGB / depth-target conversions.

Geometric transforms move image, depth and mask together. Random transforms draw from the
``torch.Generator`` they are given, or from torch's global RNG, which DataLoader seeds
differently in every worker; so the draws are ours, and the pixel work is torchvision's
``transforms.v2.functional`` (its transform classes draw from the global RNG only, and know
neither a depth map's masked resize nor INTER_AREA). Samples stay RGB in [0, 1]: the model normalises its input itself
(``models.model.InputNorm``), so training, prediction and export cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms.v2 import InterpolationMode

from ..registry import Registry
from ..errors import InputError

__all__ = [
    "Compose", "Resize", "area_resize", "area_weights", "RandomHorizontalFlip", "RandomCrop", "CenterCrop", "ColorJitter",
    "RandomChannelSwap", "RandomRotate", "build_transforms", "transform_items", "TRANSFORMS", "depth_to_target", "target_to_depth", "minmax_range", "TARGET_MODES",
]

Sample = dict[str, Any]
TARGET_MODES = ("metric", "minmax", "inverse", "minmax_all")


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class Compose:
    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def area_weights(n_in: int, n_out: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """n_out x n_in box-filter weights: output pixel j averages input [j * s, (j + 1) * s), s = n_in / n_out,
    each input pixel weighted by its overlap. This is OpenCV's INTER_AREA for downscaling, at any
    factor (torch's ``mode="area"`` is adaptive pooling, which equals it only for integer factors)."""
    scale = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64)[:, None] * scale
    left = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(lo + scale, left + 1) - torch.maximum(lo, left)).clamp_min(0.0)
    return (overlap / scale).to(dtype)


def area_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """INTER_AREA-style resize of ... x H x W down to ``size`` (see :func:`area_weights`).

    Upscaling has no area to average: there OpenCV's INTER_AREA is bilinear, and so is this."""
    h, w = x.shape[-2:]
    if size[0] > h or size[1] > w:
        flat = x.reshape(-1, 1, h, w).float()
        out = F.interpolate(flat, size, mode="bilinear", align_corners=False)
        return out.reshape(*x.shape[:-2], *size).to(x.dtype)
    wh, ww = area_weights(h, size[0], x.dtype), area_weights(w, size[1], x.dtype)
    return wh @ x @ ww.T


class Resize:
    """Resize to ``size = (height, width)``.

    RGB: ``bilinear`` (antialiased, default) or ``area`` (OpenCV INTER_AREA, what the seed's
    ``imutils.resize`` uses). Depth: ``nearest`` (default), ``masked`` or ``area``.
    ``nearest`` keeps measured values (no blending across edges or holes). ``masked`` averages the
    valid pixels under each output pixel, for sparse depth (KITTI LiDAR), whose holes would
    otherwise swallow most points; an output pixel is valid if any input pixel under it was.
    ``area`` averages every pixel, holes (0) included, as the seed code's resize of its depth PNGs;
    the mask is resized like ``masked``.
    """

    IMAGE_MODES = ("bilinear", "area")
    DEPTH_MODES = ("nearest", "masked", "area")

    def __init__(self, size: int | Sequence[int], depth_mode: str = "nearest", image_mode: str = "bilinear") -> None:
        if depth_mode not in self.DEPTH_MODES:
            raise InputError(f"depth_mode must be one of {', '.join(self.DEPTH_MODES)}, got {depth_mode!r}")
        if image_mode not in self.IMAGE_MODES:
            raise InputError(f"image_mode must be one of {', '.join(self.IMAGE_MODES)}, got {image_mode!r}")
        self.size, self.depth_mode, self.image_mode = _size(size), depth_mode, image_mode

    def __call__(self, sample: Sample) -> Sample:
        if tuple(sample["image"].shape[-2:]) == self.size:
            return sample
        out = dict(sample)
        if self.image_mode == "area":
            out["image"] = area_resize(sample["image"], self.size).clamp_(0.0, 1.0)
        else:
            out["image"] = TF.resize(sample["image"], list(self.size), InterpolationMode.BILINEAR,
                                     antialias=True).clamp_(0.0, 1.0)
        depth, mask = sample["depth"][None], sample["mask"][None]
        if self.depth_mode == "nearest":
            out["depth"] = TF.resize(sample["depth"], list(self.size), InterpolationMode.NEAREST_EXACT)
            out["mask"] = TF.resize(sample["mask"], list(self.size), InterpolationMode.NEAREST_EXACT)
        elif self.depth_mode == "area":
            out["depth"] = area_resize(sample["depth"], self.size)
            out["mask"] = area_resize(sample["mask"].to(sample["depth"].dtype), self.size) > 0
        else:
            weight = F.interpolate(mask.float(), self.size, mode="area")
            total = F.interpolate(depth * mask, self.size, mode="area")
            valid = weight > 0
            out["depth"] = torch.where(valid, total / weight.clamp_min(1e-12), torch.zeros_like(total))[0]
            out["mask"] = valid[0]
        return out

    def __repr__(self) -> str:
        return f"Resize({self.size}, depth_mode={self.depth_mode!r}, image_mode={self.image_mode!r})"


class RandomHorizontalFlip:
    """Mirror image, depth and mask together with probability ``p`` (the seed paper's augmentation)."""

    random = True  # training only, unless the config says ``val: true``

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p, self.generator = p, generator

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand((), generator=self.generator).item() >= self.p:
            return sample
        out = dict(sample)
        for key in ("image", "depth", "mask"):
            out[key] = TF.horizontal_flip(sample[key])
        return out


def _crop(sample: Sample, top: int, left: int, size: tuple[int, int]) -> Sample:
    out = dict(sample)
    for key in ("image", "depth", "mask"):
        out[key] = TF.crop(sample[key], top, left, size[0], size[1])
    return out


def _check_fits(sample: Sample, size: tuple[int, int]) -> tuple[int, int]:
    h, w = sample["image"].shape[-2:]
    if h < size[0] or w < size[1]:
        raise InputError(f"{sample.get('name', 'sample')}: cannot crop {size[0]}x{size[1]} from {h}x{w}")
    return h, w


class RandomCrop:
    """A crop of ``size`` at a uniformly random position."""

    random = True  # training only, unless the config says ``val: true``

    def __init__(self, size: int | Sequence[int], generator: torch.Generator | None = None) -> None:
        self.size, self.generator = _size(size), generator

    def __call__(self, sample: Sample) -> Sample:
        h, w = _check_fits(sample, self.size)
        top = int(torch.randint(0, h - self.size[0] + 1, (), generator=self.generator))
        left = int(torch.randint(0, w - self.size[1] + 1, (), generator=self.generator))
        return _crop(sample, top, left, self.size)


class CenterCrop:
    """torchvision's centre crop (an odd margin m puts round(m / 2) pixels above / left)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size(size)

    def __call__(self, sample: Sample) -> Sample:
        _check_fits(sample, self.size)
        out = dict(sample)
        for key in ("image", "depth", "mask"):
            out[key] = TF.center_crop(sample[key], list(self.size))
        return out


class ColorJitter:
    """Random brightness, contrast, saturation, gamma and per-channel gain (BTS-style), RGB kept in [0, 1].

    Each strength ``s`` draws a factor in [1 - s, 1 + s]; ``gamma`` and ``channel_gain`` likewise.
    Applied as gamma, brightness, contrast, saturation with torchvision's kernels (each clamps to
    [0, 1]; contrast and saturation blend with the ITU-R 601 grey), then the per-channel gain,
    which torchvision lacks.
    """

    random = True  # training only, unless the config says ``val: true``

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 gamma: float = 0.1, channel_gain: float = 0.1, generator: torch.Generator | None = None) -> None:
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.gamma, self.channel_gain, self.generator = gamma, channel_gain, generator

    def __call__(self, sample: Sample) -> Sample:
        g = self.generator
        img = TF.adjust_gamma(sample["image"].clamp(0.0, 1.0), _uniform(1 - self.gamma, 1 + self.gamma, g))
        img = TF.adjust_brightness(img, _uniform(1 - self.brightness, 1 + self.brightness, g))
        img = TF.adjust_contrast(img, _uniform(1 - self.contrast, 1 + self.contrast, g))
        img = TF.adjust_saturation(img, _uniform(1 - self.saturation, 1 + self.saturation, g))
        gains = torch.tensor([_uniform(1 - self.channel_gain, 1 + self.channel_gain, g) for _ in range(3)])
        out = dict(sample)
        out["image"] = (img * gains[:, None, None]).clamp_(0.0, 1.0)
        return out


class RandomChannelSwap:
    """Permute the RGB channels with probability ``p`` (DenseDepth's colour augmentation, p = 0.25)."""

    random = True  # training only, unless the config says ``val: true``

    def __init__(self, p: float = 0.25, generator: torch.Generator | None = None) -> None:
        self.p, self.generator = p, generator

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand((), generator=self.generator).item() >= self.p:
            return sample
        out = dict(sample)
        out["image"] = TF.permute_channels(sample["image"], torch.randperm(3, generator=self.generator).tolist())
        return out


class RandomRotate:
    """Rotate image, depth and mask together by an angle drawn uniformly from [-degrees, degrees]
    (counter-clockwise, about the image centre, the size kept), as ZoeDepth's training does
    (isl-org/ZoeDepth zoedepth/data/data_mono.py: ``rotate_image``, PIL ``Image.rotate`` with the angle
    ``(random.random() - 0.5) * 2 * degree``, the image bilinear, the depth nearest; utils/config.py:
    ``degree: 1.0`` for NYU and KITTI).

    What rotates in from outside the frame is 0 (black in the image; PIL fills the same), and the mask
    is False there: ZoeDepth's mask is ``depth > min_depth`` after the rotation, so its filled corners
    are invalid, never 0 m. The mask is rotated like the depth (nearest), so both keep the same pixels.
    """

    random = True  # training only, unless the config says ``val: true``

    def __init__(self, degrees: float = 1.0, generator: torch.Generator | None = None) -> None:
        if isinstance(degrees, bool) or not isinstance(degrees, (int, float)) or not 0 <= degrees <= 180:
            raise InputError(f"random_rotate: degrees must be a number in [0, 180], got {degrees!r}")
        self.degrees, self.generator = float(degrees), generator

    def __call__(self, sample: Sample) -> Sample:
        angle = _uniform(-self.degrees, self.degrees, self.generator)
        out = dict(sample)
        # No fill: grid_sample's zero padding, so a pixel near the frame's edge blends with 0 as
        # skimage.transform.rotate(order=1, mode="constant", cval=0) does.
        out["image"] = TF.rotate(sample["image"], angle, InterpolationMode.BILINEAR)
        out["depth"] = TF.rotate(sample["depth"], angle, InterpolationMode.NEAREST)
        mask = TF.rotate(sample["mask"].to(sample["depth"].dtype), angle, InterpolationMode.NEAREST)
        out["mask"] = mask > 0.5
        return out

    def __repr__(self) -> str:
        return f"RandomRotate(degrees={self.degrees})"


# A transform class that says ``random = True`` is left out of validation unless given ``val: true``.
TRANSFORMS: Registry[type] = Registry("transform")
for _name, _cls in (("resize", Resize), ("hflip", RandomHorizontalFlip), ("random_crop", RandomCrop),
                    ("center_crop", CenterCrop), ("color_jitter", ColorJitter), ("channel_swap", RandomChannelSwap),
                    ("random_rotate", RandomRotate)):
    TRANSFORMS.add(_name, _cls)


def transform_items(cfg: Sequence | Mapping | None) -> list[tuple[str, dict[str, Any]]]:
    """(name, options) of a ``data.transforms`` config, in its three forms: a mapping name -> options,
    or a list of names and ``{name: ..., **options}`` entries."""
    if not cfg:
        return []
    if isinstance(cfg, Mapping):
        return [(name, dict(opts or {})) for name, opts in cfg.items()]
    items = []
    for entry in cfg:
        if isinstance(entry, str):
            items.append((entry, {}))
        else:
            entry = dict(entry)
            items.append((entry.pop("name", ""), entry))
    return items


def build_transforms(cfg: Sequence | Mapping | None, train: bool) -> Compose:
    """Build from config: a list of names / ``{"name": ..., **options}`` dicts, or a ``{name: options}`` dict.

    With ``train=False`` the random transforms are left out (evaluation sees whole images), except
    those given ``val: true``.
    """
    transforms = []
    for name, opts in transform_items(cfg):
        cls = TRANSFORMS.get(name)
        # ``val: true`` keeps a random transform in validation too (the seed flips its validation
        # batches at random); evaluation (depthsmith eval) never uses these transforms.
        also_val = bool(opts.pop("val", False))
        if train or also_val or not getattr(cls, "random", False):
            transforms.append(cls(**opts))
    return Compose(transforms)


# -- depth targets -------------------------------------------------------------------------------
def minmax_range(depth: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image min and max depth over valid pixels, shaped to broadcast over (..., 1, H, W)."""
    dims = (-3, -2, -1)
    big = torch.finfo(depth.dtype).max
    lo = torch.where(mask, depth, torch.full_like(depth, big)).amin(dim=dims, keepdim=True)
    hi = torch.where(mask, depth, torch.full_like(depth, -big)).amax(dim=dims, keepdim=True)
    return lo, hi


def depth_to_target(depth: torch.Tensor, mask: torch.Tensor, mode: str = "metric",
                    max_depth: float = 10.0, min_depth: float = 1e-3) -> torch.Tensor:
    """Metres -> training target in [0, 1] on valid pixels (0 elsewhere).

    ``metric``: depth / max_depth. ``minmax``: per image (d - min) / (max - min) over valid pixels,
    the relative target of the seed paper's text. ``inverse``: min_depth / d (DenseDepth-style), in
    (min_depth / max_depth, 1]. Depth is clamped to [min_depth, max_depth] first.
    ``minmax_all``: what the seed's code does, per image (d - min) / (max - min) over EVERY pixel,
    holes (0) included and not clamped, and a target on every pixel (the caller's loss must not
    mask either: see ``target: seed_minmax`` in the training config).
    """
    if mode not in TARGET_MODES:
        raise InputError(f"unknown target mode {mode!r}; valid: {', '.join(TARGET_MODES)}")
    if mode == "minmax_all":
        d = depth.clamp(0.0, max_depth)
        lo, hi = minmax_range(d, torch.ones_like(mask, dtype=torch.bool))
        return ((d - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)
    d = depth.clamp(min_depth, max_depth)
    if mode == "metric":
        target = d / max_depth
    elif mode == "inverse":
        target = min_depth / d
    else:
        lo, hi = minmax_range(d, mask)
        target = (d - lo) / (hi - lo).clamp_min(1e-12)
    return torch.where(mask, target.clamp(0.0, 1.0), torch.zeros_like(target))


def target_to_depth(target: torch.Tensor, mode: str = "metric", max_depth: float = 10.0,
                    min_depth: float = 1e-3,
                    depth_range: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Inverse of :func:`depth_to_target`. ``minmax`` is relative: it needs ``depth_range`` = (min, max)
    per image (e.g. :func:`minmax_range` of the ground truth) to give metres back."""
    if mode not in TARGET_MODES:
        raise InputError(f"unknown target mode {mode!r}; valid: {', '.join(TARGET_MODES)}")
    if mode == "metric":
        return target * max_depth
    if mode == "inverse":
        return min_depth / target.clamp(min_depth / max_depth, 1.0)
    if depth_range is None:  # minmax and minmax_all
        raise InputError("minmax targets are relative depth: pass depth_range=(min, max) to get metres")
    lo, hi = depth_range
    return lo + target * (hi - lo)
