"""The one resize rule for RGB images going into a network, and the working-size rule that says
to which size (bilinear, antialiased when shrinking).

A model's ``working_size`` (its config) is the input size it was trained for; ``predict``,
``eval``, the app and ``bench`` resize each image to it, predict, and resize the depth back.
Three forms (``check_working_size``):

* ``None``: native, each image at its own size (what every model did before the field existed);
* ``{"height": H, "width": W}``: fixed, as a model trained on H x W images or a processor with a
  fixed ``size``; with ``"keep_aspect": true`` the aspect ratio is kept the way transformers'
  ``DPTImageProcessor`` / ``DepthAnythingImageProcessor`` keep it (``get_resize_output_image_size``:
  the side whose scale is closer to 1 is fitted, the other scaled alike);
* ``{"short_side": S}``: aspect kept, the short side S, as Depth Anything V2's own
  ``Resize(keep_aspect_ratio=True, resize_method="lower_bound")`` (its ``util/transform.py``);
* ``{"long_side": L}``: aspect kept, the long side L, as Depth Anything 3's ``upper_bound_resize``
  (depth_anything_3/utils/io/input_processor.py, ``process_res=504``).

``"multiple_of": M`` rounds each side to a multiple of M (``constrain_to_multiple_of``: nearest
multiple, at least M), as those processors do for a patch size.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = ["resized", "check_working_size", "parse_working_size", "working_size_for", "describe_working_size",
           "example_size", "MAX_ASPECT"]

_KEYS = ("height", "width", "short_side", "long_side", "multiple_of", "keep_aspect")
# Keep-aspect rules let the long side grow with the aspect ratio up to this many short sides; a
# 2 x 40000 strip would otherwise run the network at 518 x 10 million pixels.
MAX_ASPECT = 4
# Export and bench examples: a VGA photo (NYU's 480 x 640) at the model's working size; a native
# model gets the paper's 240 x 320, the size those commands always used.
_PHOTO, _NATIVE_EXAMPLE = (480, 640), (240, 320)


def resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1 x) 3 x H x W RGB image or batch at ``size``, bilinear, antialiased when shrinking (so a
    downscaled photo does not alias); as it is when already that size."""
    x = x[None] if x.ndim == 3 else x
    if tuple(x.shape[-2:]) == tuple(size):
        return x.contiguous()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=x.shape[-2] > size[0])


def check_working_size(spec: Any, where: str = "working_size") -> dict[str, Any] | None:
    """``spec`` checked and in canonical form (None, or a dict of the module docstring's keys)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InputError(f"{where}={spec!r} is not valid: give null (native), {{'height': H, 'width': W}} or "
                         "{'short_side': S, 'multiple_of': M}.")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(_KEYS)}.")
    for key in ("height", "width", "short_side", "long_side", "multiple_of"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{where}: {key}={value!r} is not valid: give an integer >= 1.")
    fixed, short, long = "height" in spec and "width" in spec, "short_side" in spec, "long_side" in spec
    if fixed + short + long != 1 or ("height" in spec) != ("width" in spec):
        raise InputError(f"{where}={spec!r}: give either height and width, or short_side, or long_side.")
    if "keep_aspect" in spec and not (fixed and isinstance(spec["keep_aspect"], bool)):
        raise InputError(f"{where}: keep_aspect goes with height and width and is true or false.")
    return dict(spec)


def parse_working_size(text: str) -> dict[str, Any] | str | None:
    """``--working-size``: 'native' (each image at its own size), 'model' / None (the model's own),
    or 'WxH' (fixed, e.g. 320x240: width first, as image sizes are written)."""
    if text is None or text == "model":
        return None
    if text == "native":
        return "native"
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise InputError(f"--working-size {text!r} is not valid: give native, model or WxH (e.g. 640x480).")
    return {"height": int(match.group(2)), "width": int(match.group(1))}


def _multiple(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def working_size_for(spec: dict[str, Any] | None, height: int, width: int) -> tuple[int, int]:
    """(height, width) the network sees for an image of ``height`` x ``width`` under ``spec``."""
    if spec is None:
        return height, width
    multiple = int(spec.get("multiple_of", 1))
    if "short_side" in spec:
        scale = spec["short_side"] / min(height, width)
        sizes = [_multiple(min(side * scale, spec["short_side"] * MAX_ASPECT), multiple) for side in (height, width)]
        return sizes[0], sizes[1]
    if "long_side" in spec:  # the short side only shrinks: no MAX_ASPECT limit needed
        scale = spec["long_side"] / max(height, width)
        return _multiple(height * scale, multiple), _multiple(width * scale, multiple)
    if not spec.get("keep_aspect"):
        return _multiple(spec["height"], multiple), _multiple(spec["width"], multiple)
    scale_h, scale_w = spec["height"] / height, spec["width"] / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h  # "scale as little as possible"
    limit = max(spec["height"], spec["width"]) * MAX_ASPECT
    return _multiple(min(height * scale, limit), multiple), _multiple(min(width * scale, limit), multiple)


def describe_working_size(spec: dict[str, Any] | None) -> str:
    """A short text for tables and messages: 'native', '384x512' (HxW), 'short side 518, x14'."""
    if spec is None:
        return "native"
    text = (f"short side {spec['short_side']}" if "short_side" in spec
            else f"long side {spec['long_side']}" if "long_side" in spec
            else f"{spec['height']}x{spec['width']}" + (" keep aspect" if spec.get("keep_aspect") else ""))
    return text + (f", x{spec['multiple_of']}" if spec.get("multiple_of", 1) > 1 else "")


def example_size(spec: dict[str, Any] | None, height: int | None = None, width: int | None = None) -> tuple[int, int]:
    """The example input size of export and bench: ``height`` x ``width`` when both are given, else a
    480 x 640 photo at the working size ``spec`` (240 x 320 for a native model)."""
    if height and width:
        return int(height), int(width)
    return working_size_for(spec, *_PHOTO) if spec is not None else _NATIVE_EXAMPLE
