"""Builders of bad (and awkward but valid) inputs for tests/test_faults.py, made in tmp dirs.

Written with plain PIL / numpy / struct calls, not with depthsmith's writers, so that a
reader bug cannot hide in a matching writer bug. Each image builder takes a path and returns it.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (40, 52)  # (height, width) of the good images: small, and not a multiple of 32


def smooth_rgb(h: int = SIZE[0], w: int = SIZE[1]) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    a[..., 2] = 90
    return a


def good_png(path: Path, h: int = SIZE[0], w: int = SIZE[1]) -> Path:
    Image.fromarray(smooth_rgb(h, w)).save(path)
    return path


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(smooth_rgb()).save(buf, format=fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming ``width`` x ``height`` grey pixels, with a few
    bytes of image data: a few hundred bytes that would decode to gigabytes (a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


# ----------------------------------------------------------------------------- bad images


def zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated_png(path: Path) -> Path:
    data = _encoded("PNG")
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_jpeg(path: Path) -> Path:
    data = _encoded("JPEG")
    path.write_bytes(data[: len(data) // 3])
    return path


def text_as_image(path: Path) -> Path:
    path.write_text("this is not an image\n" * 20)
    return path


def tiny_1x1(path: Path) -> Path:
    return good_png(path, 1, 1)


def line_1x2000(path: Path) -> Path:
    return good_png(path, 1, 2000)


def bomb_above_twice_limit(path: Path) -> Path:  # Pillow itself refuses these at open
    return png_header_only(path, 100_000, 100_000)


def bomb_above_limit(path: Path) -> Path:  # Pillow only warns here: depthsmith must refuse it
    return png_header_only(path, 10_000, 10_000)


BAD_IMAGES = {
    "zero_byte": (zero_byte, ".png"),
    "truncated_png": (truncated_png, ".png"),
    "truncated_jpeg": (truncated_jpeg, ".jpg"),
    "text_as_image": (text_as_image, ".png"),
    "tiny_1x1": (tiny_1x1, ".png"),
    "line_1x2000": (line_1x2000, ".png"),
    "decompression_bomb_100k": (bomb_above_twice_limit, ".png"),
    "decompression_bomb_10k": (bomb_above_limit, ".png"),
}

# ----------------------------------------------------------------------------- awkward but valid images
# Each builder returns the (height, width) the depth output must have.


def cmyk_jpeg(path: Path) -> tuple[int, int]:
    Image.fromarray(smooth_rgb()).convert("CMYK").save(path, format="JPEG")
    return SIZE


def exif_rotated(path: Path) -> tuple[int, int]:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, "rotate 90" tag: the upright image is width x height
    Image.fromarray(smooth_rgb()).save(path, format="JPEG", exif=exif)
    return SIZE[::-1]


def palette_png(path: Path) -> tuple[int, int]:
    Image.fromarray(smooth_rgb()).convert("P", palette=Image.ADAPTIVE, colors=16).save(path)
    return SIZE


def png16_grey(path: Path) -> tuple[int, int]:
    Image.fromarray((smooth_rgb()[..., 0].astype(np.uint16) * 257)).save(path)
    return SIZE


def float_tiff(path: Path) -> tuple[int, int]:
    Image.fromarray(smooth_rgb()[..., 1].astype(np.float32) / 255.0, mode="F").save(path)
    return SIZE


def thin_2x40000(path: Path) -> tuple[int, int]:  # 324-byte class of file that used to run at 64 x 1,280,000
    Image.fromarray(np.full((2, 40000, 3), 128, np.uint8)).save(path)
    return (2, 40000)


VALID_IMAGES = {
    "cmyk_jpeg": (cmyk_jpeg, ".jpg"),
    "exif_rotated": (exif_rotated, ".jpg"),
    "palette_png": (palette_png, ".png"),
    "png16_grey": (png16_grey, ".png"),
    "float_tiff": (float_tiff, ".tif"),
    "thin_2x40000": (thin_2x40000, ".png"),
}
