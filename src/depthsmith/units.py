"""Depth encodings: the one place where stored values become metres, and metres stored values.

Every reader names an encoding from :data:`ENCODINGS` (or gives a custom PNG
scale) and calls :func:`decode_depth`; every writer calls :func:`encode_depth`
(``predict``'s 16-bit PNGs are ``png_mm``). No other module multiplies or divides
depth by a unit factor. This module sits in the base layer: it imports nothing
from depthsmith, so readers, writers and metadata all take their units from here.
Zero always means "no measurement" in the integer encodings; :func:`decode_depth`
keeps it as 0 and the reader masks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from .errors import InputError

__all__ = ["Encoding", "ENCODINGS", "get_encoding", "decode_depth", "encode_depth"]


@dataclass(frozen=True)
class Encoding:
    """How depth is stored: ``metres = stored_value / scale`` (after bit rotation)."""

    name: str
    dtype: str  # "uint16", "uint8" or "float" (float files hold metres already)
    scale: float  # stored units per metre
    rotate_bits: int = 0  # SUN RGB-D stores mm rotated left by 3 bits
    description: str = ""


ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in [
        Encoding("png_mm", "uint16", 1000.0, 0, "16-bit PNG, millimetres (NYU sync, Kinect)"),
        Encoding("png_kitti", "uint16", 256.0, 0, "16-bit PNG, metres * 256 (KITTI)"),
        Encoding("png_tum", "uint16", 5000.0, 0, "16-bit PNG, metres * 5000 (TUM RGB-D)"),
        Encoding("png_sun", "uint16", 1000.0, 3, "16-bit PNG, millimetres rotated left by 3 bits (SUN RGB-D)"),
        # DenseDepth's nyu_data.zip training maps: 8 bits over 0-10 m (value / 255 * 10).
        Encoding("png8_densedepth", "uint8", 25.5, 0, "8-bit PNG, value / 255 * 10 m (DenseDepth train)"),
        Encoding("png_ibims", "uint16", 65535.0 / 50.0, 0, "16-bit PNG, value / 65535 * 50 m (iBims-1)"),
        Encoding("npy_m", "float", 1.0, 0, "float .npy, metres"),
        Encoding("eth3d_f32", "float", 1.0, 0, "raw float32 metres, inf = no depth (ETH3D ground_truth_depth)"),
        Encoding("h5_m", "float", 1.0, 0, "float HDF5 dataset, metres (sparse-to-dense / FastDepth)"),
        Encoding("mat_m", "float", 1.0, 0, "float MATLAB array, metres (nyu_depth_v2_labeled.mat)"),
    ]
}


def get_encoding(encoding: str | Encoding | float | int) -> Encoding:
    """Resolve a name, an :class:`Encoding`, or a number (a custom 16-bit PNG scale)."""
    if isinstance(encoding, Encoding):
        return encoding
    if isinstance(encoding, (int, float)) and not isinstance(encoding, bool):
        if encoding <= 0:
            raise InputError(f"a depth scale must be positive, got {encoding}")
        return Encoding(f"png_scale_{encoding:g}", "uint16", float(encoding), 0, "16-bit PNG, custom scale")
    if encoding not in ENCODINGS:
        raise InputError(
            f"unknown depth encoding {encoding!r}; valid: {', '.join(ENCODINGS)} or a number (16-bit PNG scale)"
        )
    return ENCODINGS[encoding]


def _rotate_right(values: np.ndarray, bits: int) -> np.ndarray:
    v = values.astype(np.uint16)
    return ((v >> bits) | (v << (16 - bits))).astype(np.uint16)


def _rotate_left(values: np.ndarray, bits: int) -> np.ndarray:
    v = values.astype(np.uint16)
    return ((v << bits) | (v >> (16 - bits))).astype(np.uint16)


def decode_depth(array: np.ndarray, encoding: str | Encoding | float) -> np.ndarray:
    """Stored depth values -> float32 metres (0 stays 0; NaN/inf pass through for masking).

    Integer encodings check the array's dtype: reading an 8-bit file as millimetres
    (or a 16-bit one as DenseDepth's 8-bit maps) silently gives nonsense, so it is an error.
    """
    enc = get_encoding(encoding)
    array = np.asarray(array)
    if enc.dtype == "float":
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"encoding {enc.name} expects float metres, got dtype {array.dtype}")
        return array.astype(np.float32, copy=False)
    if enc.dtype == "uint16":
        if array.dtype == np.uint8 or not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"encoding {enc.name} expects 16-bit integers, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
            raise InputError(f"encoding {enc.name}: values outside the 16-bit range")
        if enc.rotate_bits:
            array = _rotate_right(array, enc.rotate_bits)
    elif enc.dtype == "uint8" and array.dtype != np.uint8:
        raise InputError(f"encoding {enc.name} expects 8-bit integers, got dtype {array.dtype}")
    return (array.astype(np.float32) / np.float32(enc.scale)).astype(np.float32)


def encode_depth(metres: np.ndarray, encoding: str | Encoding | float) -> np.ndarray:
    """Metres -> stored values (the inverse of :func:`decode_depth`), e.g. to save 16-bit PNGs.

    Invalid (NaN, inf, <= 0) and unrepresentable (too large) depths become 0 in integer encodings.
    """
    enc = get_encoding(encoding)
    metres = np.asarray(metres, dtype=np.float64)
    if enc.dtype == "float":
        return metres.astype(np.float32)
    limit = np.iinfo(np.uint16 if enc.dtype == "uint16" else np.uint8).max
    with np.errstate(invalid="ignore"):
        stored = np.rint(metres * enc.scale)
        ok = np.isfinite(stored) & (stored > 0) & (stored <= limit)
    stored = np.where(ok, stored, 0).astype(np.uint16 if enc.dtype == "uint16" else np.uint8)
    if enc.rotate_bits:
        stored = _rotate_left(stored, enc.rotate_bits)
    return stored
