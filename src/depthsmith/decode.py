"""Reading image, depth and array files, written once for every entry point.

``io.load_image`` (float RGB for inference) and ``data.io.read_rgb`` (uint8 RGB for datasets)
are views over :func:`decode_rgb`; depth files go through :func:`read_depth`. So the guards are
the same everywhere: a header over ``PIL.Image.MAX_IMAGE_PIXELS`` is refused before anything is
decoded (a decompression bomb), the whole file is decoded at once so a truncated one fails here,
EXIF orientation is applied, and every unreadable file is a ``ReadError`` naming it.

Base layer: imports only ``errors`` and ``units``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import DataError, ReadError
from .units import Encoding, decode_depth, get_encoding

__all__ = [
    "Source", "ARRAY_SUFFIXES", "reading", "check_pixels", "open_image", "stored_values", "load_array",
    "rgb_layout", "decode_rgb", "float_rgb", "uint8_rgb", "read_depth_values", "decode_or_raise", "read_depth",
]

Source = str | Path | bytes | Image.Image | np.ndarray
ARRAY_SUFFIXES = (".npy", ".h5", ".hdf5")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _name(source: Source, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return {bytes: "bytes", np.ndarray: "array"}.get(type(source), "PIL image")


def _is_array_file(source: Source, name: str) -> bool:
    """Arrays are recognised by suffix: the path's, or for bytes the name they came with."""
    text = str(source) if isinstance(source, (str, Path)) else name
    return isinstance(source, (str, Path, bytes)) and text.lower().endswith(ARRAY_SUFFIXES)


@contextmanager
def reading(name: str, what: str) -> Iterator[None]:
    """Turn any failure inside the block into a ReadError naming the file ``name`` and saying what
    could not be read (h5py, numpy and scipy raise many types); DataErrors pass as they are."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as err:
        raise ReadError(f"{name}: file not found") from err
    except Exception as err:
        raise ReadError(f"{name}: cannot read {what} ({type(err).__name__}: {err})") from err


def check_pixels(size: tuple[int, int], name: object) -> None:
    """Refuse an image whose header says it has more than ``Image.MAX_IMAGE_PIXELS`` pixels,
    before anything is decoded: Pillow itself only warns below twice that limit, and a file of a
    few kilobytes can decode to gigabytes (a decompression bomb)."""
    width, height = size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ReadError(
            f"{name}: image is {width} x {height} pixels, above the {limit / 1e6:.1f} megapixel limit "
            f"({width * height / 1e6:.1f} megapixels; PIL.Image.MAX_IMAGE_PIXELS, a guard against "
            "decompression bombs; JPEGs are decoded reduced up to 8x to fit it); downscale it first, or raise "
            "the limit (predict --max-pixels) if you trust the file."
        )


# A baseline JPEG spends at least a few bits on every 8 x 8 block, even a flat one (a DC code and
# an end-of-block code; ITU-T T.81, Annex F and K): far more than one byte per 1024 pixels. A
# JPEG over the pixel limit with fewer bytes than that has a header that lies about its size.
_JPEG_MIN_BYTES_PER_PIXEL = 1 / 1024


def _file_size(source: str | Path | bytes) -> int | None:
    if isinstance(source, bytes):
        return len(source)
    try:
        return Path(source).stat().st_size
    except (OSError, TypeError):  # a file object: no size to check
        return None


def _jpeg_reduction(image: Image.Image, limit: int | None) -> int:
    """The DCT scale (1, 2, 4 or 8) a JPEG over ``limit`` pixels is decoded at: the smallest that
    brings it under the limit; 1 when it is under already, or is no JPEG (nothing to reduce)."""
    width, height = image.size
    if not limit or width * height <= limit or image.format != "JPEG":
        return 1
    for scale in (2, 4, 8):  # what libjpeg's DCT scaling offers through Pillow's draft()
        if (width // scale) * (height // scale) <= limit:
            return scale
    return 1  # even 1/8 is over: check_pixels refuses it (a header that claims more than any camera)


def open_image(source: str | Path | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """The decoded image of a file, its bytes or a PIL image, EXIF orientation applied (phone
    photos store pixels sideways plus a rotation tag).

    A JPEG over the pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``; ``predict --max-pixels``) is
    decoded reduced by 2, 4 or 8 (libjpeg's DCT scaling, ``Image.draft``): a 50-200 megapixel
    phone photo costs a few megapixels of memory, and the network works at 640 px anyway. What
    is decoded must still fit the limit, so a file whose header claims more is refused unread."""
    name = _name(source, name)
    if isinstance(source, Image.Image):
        return ImageOps.exif_transpose(source)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning and error: check_pixels decides instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # Pillow would refuse over twice the limit before draft() can reduce
            try:
                image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)  # header only
            finally:
                Image.MAX_IMAGE_PIXELS = limit
        with image:
            scale = _jpeg_reduction(image, limit)
            size = _file_size(source) if scale > 1 else None
            if size is not None and size < image.size[0] * image.size[1] * _JPEG_MIN_BYTES_PER_PIXEL:
                raise ReadError(f"{name}: the JPEG header claims {image.size[0]} x {image.size[1]} pixels but the "
                                f"file holds only {size} bytes, too few for that many (a decompression bomb or "
                                "a damaged file); refused before decoding.")
            if scale > 1:
                width, height = image.size
                image.draft(image.mode, (width // scale, height // scale))
            check_pixels(image.size, name)
            image.load()  # decode now so a truncated file fails here, naming it
            return ImageOps.exif_transpose(image)  # a copy: it outlives the closed file
    except ReadError:
        raise
    except FileNotFoundError as err:
        raise ReadError(f"{name}: file not found") from err
    except Exception as err:  # Pillow raises many types for corrupt data
        raise ReadError(f"{name}: cannot decode image ({type(err).__name__}: {err})") from err


def stored_values(image: Image.Image) -> np.ndarray:
    """The pixels as stored: uint8 (8-bit modes), uint16 (16-bit), float32 (``F``), int32 (``I``
    holding values beyond 16 bits; 16-bit PNG flavours also decode as ``I``)."""
    if image.mode in _SIXTEEN_BIT:
        return np.asarray(image).astype(np.uint16)  # native byte order, whatever the file's
    if image.mode == "I":
        array = np.asarray(image)
        if array.size == 0 or (array.min() >= 0 and array.max() <= 65535):
            return array.astype(np.uint16)
        return array
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image)


def load_array(source: str | Path | bytes, name: str | None = None, key: str | None = None) -> np.ndarray:
    """A .npy array, or the dataset ``key`` of an .h5 file."""
    name = _name(source, name)
    text = name if isinstance(source, bytes) else str(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with reading(name, "array"):
        if text.lower().endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(stream, "r") as f:
                if key is None or key not in f:
                    raise DataError(f"{name}: no dataset {key!r} (has {sorted(f.keys())})")
                return np.asarray(f[key])
        return np.load(stream, allow_pickle=False)


def rgb_layout(array: np.ndarray, name: str = "array") -> np.ndarray:
    """H x W x 3 uint8, uint16 or float from H x W, H x W x 1/3/4 or 3/4 x H x W (h5 / FastDepth)
    arrays. Alpha is dropped: the colours under it are what the camera saw."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ReadError(f"{name}: expected an RGB image (H x W, H x W x 1/3/4 or 3/4 x H x W), "
                        f"got an array of shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if a.dtype not in (np.uint8, np.uint16) and not np.issubdtype(a.dtype, np.floating):
        raise ReadError(f"{name}: unsupported image dtype {a.dtype} (use uint8, uint16 or float in [0, 1])")
    if a.dtype.kind == "f":  # NaN would be turned black and predicted without a word
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise ReadError(f"{name}: image holds {bad} NaN/inf value(s) of {a.size}; give finite colours in [0, 1]")
    return a


def _image_rgb(image: Image.Image) -> np.ndarray:
    """Colour values of a decoded image; 16-bit and float modes keep their precision."""
    if image.mode not in ("RGB", "L", "I", "F", *_SIXTEEN_BIT):
        # palette images go through RGBA: Pillow warns converting a palette with transparency to RGB
        image = image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "RGB")
    values = stored_values(image)
    if values.dtype == np.int32:  # a 32-bit grey image: its 16-bit range is all RGB can hold
        values = np.clip(values, 0, 65535).astype(np.uint16)
    return values


def decode_rgb(source: Source, name: str | None = None, key: str = "rgb") -> np.ndarray:
    """Any image as H x W x 3 RGB, uint8, uint16 or float (floats are meant in [0, 1]): a path or
    bytes of an image file, a .npy (or the ``key`` dataset of an .h5), a PIL image or an array."""
    name = _name(source, name)
    if isinstance(source, np.ndarray):
        return rgb_layout(source, name)
    if _is_array_file(source, name):
        return rgb_layout(load_array(source, name, key), name)
    return rgb_layout(_image_rgb(open_image(source, name)), name)


def float_rgb(rgb: np.ndarray) -> np.ndarray:
    """:func:`rgb_layout` output as float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats clipped."""
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / np.float32(255.0)
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float32) / np.float32(65535.0)
    return np.clip(np.nan_to_num(rgb.astype(np.float32)), 0.0, 1.0)


def uint8_rgb(rgb: np.ndarray) -> np.ndarray:
    """:func:`rgb_layout` output for datasets: uint8 as is, uint16 rounded to uint8, floats kept
    (as float32 in [0, 1], NaN as 0) so their precision is not cut to 8 bits."""
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257) for v >= 0
    return float_rgb(rgb)


def read_depth_values(source: str | Path | bytes, name: str | None = None, key: str = "depth") -> np.ndarray:
    """The stored depth values of a PNG, .npy or .h5 file as an H x W array, not yet in metres."""
    name = _name(source, name)
    if _is_array_file(source, name):
        array = load_array(source, name, key)
    else:
        array = stored_values(open_image(source, name))
    array = np.squeeze(array)
    if array.ndim != 2:
        raise DataError(f"{name}: depth must be a single-channel H x W map, got shape {array.shape}")
    return array


def decode_or_raise(array: np.ndarray, encoding: str | Encoding | float, name: str) -> np.ndarray:
    """:func:`units.decode_depth` with its errors turned into a DataError naming the file."""
    try:
        return decode_depth(array, encoding)
    except ValueError as err:
        raise DataError(f"{name}: {err}") from err


def read_depth(source: str | Path | bytes, encoding: str | Encoding | float, name: str | None = None,
               key: str = "depth") -> np.ndarray:
    """Decode a depth file into float32 metres with the named encoding (PNG, .npy or .h5)."""
    get_encoding(encoding)  # an unknown encoding is a configuration error, not a data error
    name = _name(source, name)
    return decode_or_raise(read_depth_values(source, name, key), encoding, name)
