"""The readers' view of :mod:`depthsmith.decode`: RGB as uint8 for datasets, depth in metres.

Decoding itself (bomb check, EXIF, 16-bit / palette / alpha, arrays, bytes, truncated files) is
written once in ``decode``; every unreadable file is a ``ReadError``, a kind of ``DataError``.
"""

from __future__ import annotations

import numpy as np

from ..decode import (Source, decode_or_raise, decode_rgb, load_array, read_depth, reading, rgb_layout,
                      uint8_rgb)
from ..decode import read_depth_values as read_depth_array
from ..errors import DataError, ReadError

__all__ = ["DataError", "ReadError", "reading", "read_rgb", "read_depth", "read_depth_array", "decode_or_raise",
           "rgb_from_array", "load_array"]


def rgb_from_array(array: np.ndarray, name: str) -> np.ndarray:
    """An RGB array (HWC, CHW or grey) as H x W x 3 uint8, or float32 in [0, 1] for float arrays."""
    return uint8_rgb(rgb_layout(array, name))


def read_rgb(source: Source, name: str) -> np.ndarray:
    """An image file (or its bytes, or a .npy) as H x W x 3 uint8 RGB; float arrays stay float32."""
    return uint8_rgb(decode_rgb(source, name))
