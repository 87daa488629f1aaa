"""File decoding shared by the readers: every failure becomes a DataError naming the file."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError

from .encodings import Encoding, decode_depth, get_encoding

__all__ = ["DataError", "reading", "read_rgb", "read_depth", "read_depth_array", "decode_or_raise", "rgb_from_array", "load_array"]

Source = str | Path | bytes


class DataError(InputError):
    """A sample cannot be used; the message names the file(s) and the problem."""


@contextmanager
def reading(name: str, what: str) -> Iterator[None]:
    """Turn any failure inside the block into a DataError that names the file ``name`` and says
    what could not be read (h5py, numpy and scipy raise many types); DataErrors pass as they are."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"{name}: file not found") from err
    except Exception as err:
        raise DataError(f"{name}: cannot read {what} ({type(err).__name__}: {err})") from err


def _open(source: Source, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():  # Pillow only warns below twice its limit: refused below instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        width, height = image.size  # from the header: nothing decoded yet
        if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
            raise DataError(f"{name}: image is {width} x {height} pixels, above the {Image.MAX_IMAGE_PIXELS / 1e6:.1f} "
                            "megapixel limit (PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs)")
        image.load()  # decode now so a truncated file fails here, not later in numpy
    except DataError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"{name}: file not found") from err
    except Exception as err:  # PIL raises many types for corrupt data
        raise DataError(f"{name}: cannot decode image ({type(err).__name__}: {err})") from err
    return image


def rgb_from_array(array: np.ndarray, name: str) -> np.ndarray:
    """Normalise an RGB array to H x W x 3 uint8 (or float in [0, 1]), accepting HWC, CHW and grey."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = array.transpose(1, 2, 0)  # CHW (h5 / FastDepth) -> HWC
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise DataError(f"{name}: expected an RGB image, got an array of shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{name}: RGB must be uint8 or float in [0, 1], got dtype {array.dtype}")
    return array


def read_rgb(source: Source, name: str) -> np.ndarray:
    """Decode an image file (or its bytes) into H x W x 3 uint8 RGB; .npy holds HWC/CHW arrays."""
    if not isinstance(source, bytes) and str(source).endswith(".npy"):
        return rgb_from_array(load_array(source, name), name)
    image = _open(source, name)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def load_array(source: Source, name: str, key: str | None = None) -> np.ndarray:
    """Load a .npy array or one dataset of an .h5 file."""
    text = name if isinstance(source, bytes) else str(source)
    with reading(name, "array"):
        if text.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as f:
                if key is None or key not in f:
                    raise DataError(f"{name}: no dataset {key!r} (has {sorted(f.keys())})")
                return np.asarray(f[key])
        return np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)


def read_depth_array(source: Source, name: str, key: str = "depth") -> np.ndarray:
    """The stored depth values of a PNG, .npy or .h5 file as an H x W array, not yet in metres."""
    text = name if isinstance(source, bytes) else str(source)
    if text.endswith((".npy", ".h5", ".hdf5")):
        array = load_array(source, name, key)
    else:
        image = _open(source, name)
        array = np.asarray(image)
        if image.mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
            array = array.astype(np.uint16)  # some 16-bit PNG flavours decode as int32
    array = np.squeeze(array)
    if array.ndim != 2:
        raise DataError(f"{name}: depth must be a single-channel H x W map, got shape {array.shape}")
    return array


def decode_or_raise(array: np.ndarray, encoding: str | Encoding | float, name: str) -> np.ndarray:
    """:func:`decode_depth` with its errors turned into a DataError naming the file."""
    try:
        return decode_depth(array, encoding)
    except ValueError as err:
        raise DataError(f"{name}: {err}") from err


def read_depth(source: Source, encoding: str | Encoding | float, name: str, key: str = "depth") -> np.ndarray:
    """Decode a depth file into float32 metres with the named encoding (PNG, .npy or .h5)."""
    get_encoding(encoding)  # an unknown encoding is a configuration error, not a data error
    return decode_or_raise(read_depth_array(source, name, key), encoding, name)
