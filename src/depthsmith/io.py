"""Image and video I/O for inference, and the files ``predict`` writes.

Reading: images and arrays through :mod:`depthsmith.decode` (the datasets' decoder too: EXIF
orientation applied; grey, RGBA, palette and 16-bit inputs turned into RGB), and videos through
the ffmpeg binary that ships inside the ``imageio-ffmpeg`` wheel (no system ffmpeg needed).

Writing: 16-bit PNG depth, ``.npy``, coloured depth, side-by-side RGB | depth, coloured
point clouds (PLY) and depth videos (mp4). Every file goes through ``paths.atomic_write``
(a temp file beside it, renamed when complete), so an interrupted ``predict`` leaves whole
files or none.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .decode import check_pixels, decode_rgb, float_rgb, read_depth, rgb_layout
from .errors import ReadError, check_intrinsics
from .paths import atomic_write, glob_files
from .units import Encoding, encode_depth, get_encoding
from .errors import InputError

__all__ = [
    "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ReadError", "load_image", "to_float_rgb", "expand_inputs",
    "is_video", "read_video", "VideoWriter", "save_png16", "save_png", "save_npy", "read_png16", "side_by_side",
    "NYU_KINECT", "scaled_intrinsics", "depth_to_points", "save_ply", "render_color", "write_outputs",
    "OUTPUT_SUFFIXES", "check_pixels", "PNG16_ENCODING", "PNG16_SCALE",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

# NYU Depth V2's Kinect RGB camera (the toolbox's camera_params.m), for 640 x 480 images.
NYU_KINECT = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362, "width": 640, "height": 480}

# 16-bit PNG depth is the units table's png_mm: millimetres for metric models (the KITTI / NYU
# toolbox convention users already read), 0 = no depth. PNG16_SCALE is its factor, for metadata.
PNG16_ENCODING = "png_mm"
PNG16_SCALE = get_encoding(PNG16_ENCODING).scale


# ----------------------------------------------------------------------------- reading


def to_float_rgb(array: np.ndarray, name: str = "array") -> np.ndarray:
    """H x W x 3 float32 in [0, 1] from uint8, uint16 or float arrays (grey, RGBA and CHW accepted).

    uint16 is divided by 65535 (the full 16-bit range), floats are assumed in [0, 1] and clipped.
    """
    return float_rgb(rgb_layout(array, name))


def load_image(source: str | Path | bytes | Image.Image | np.ndarray) -> np.ndarray:
    """Any image as H x W x 3 float32 RGB in [0, 1]: a path, its bytes, a PIL image or an array
    (decoded by :func:`depthsmith.decode.decode_rgb`, the datasets' decoder too).

    Raises ``ReadError`` naming the file when it cannot be decoded.
    """
    return float_rgb(decode_rgb(source))


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named by paths, folders (their images and videos, sorted) and glob patterns.

    Returns (files, problems); a problem is (input, reason) for an input that names nothing.
    A file given explicitly is kept whatever its suffix, so a broken file is reported, not skipped.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    wanted = IMAGE_SUFFIXES | VIDEO_SUFFIXES | {".npy"}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in wanted)
            if not found:
                problems.append((str(item), "folder holds no images or videos"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(str(item)):
            found = sorted(Path(p) for p in glob_files(str(item))  # symlink loops skipped, not followed
                           if Path(p).is_file() and Path(p).suffix.lower() in wanted)
            if not found:
                problems.append((str(item), "pattern matches no images or videos"))
            files.extend(found)
        else:
            problems.append((str(item), "file not found"))
    return list(dict.fromkeys(files)), problems  # de-duplicated, order kept


def read_video(path: str | Path) -> tuple[Iterator[np.ndarray], dict]:
    """Frames (H x W x 3 uint8 RGB) of a video and its metadata (fps, size, n_frames or None)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(gen)
    except Exception as err:  # ffmpeg's last lines say what is wrong with the file
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ReadError(f"{path}: cannot read video ({'; '.join(lines[-2:])[-300:]})") from err
    w, h = meta["size"]
    fps = float(meta.get("fps") or 25.0)
    duration = meta.get("duration") or 0.0
    info = {"fps": fps, "width": w, "height": h, "n_frames": int(round(duration * fps)) or None}

    def frames() -> Iterator[np.ndarray]:
        for buf in gen:
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)

    return frames(), info


class VideoWriter:
    """H.264 mp4 writer (yuv420p, playable everywhere); odd frame sizes are padded to even.

    ffmpeg writes ``.<name>.partial<suffix>`` beside ``path`` (it picks the container from the
    suffix); ``close()`` renames it to ``path``, ``close(complete=False)`` deletes it.
    """

    def __init__(self, path: str | Path, fps: float, quality: float = 7.0) -> None:
        self.path, self.fps, self.quality = Path(path), fps, quality
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._gen = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        h, w = frame.shape[:2]
        if self._gen is None:
            self._size = (w + w % 2, h + h % 2)  # yuv420p needs even sides
            self._gen = imageio_ffmpeg.write_frames(
                str(self.partial), self._size, fps=self.fps, quality=self.quality,
                codec="libx264", macro_block_size=1,
            )
            self._gen.send(None)
        pw, ph = self._size
        if (w, h) != (pw, ph):
            frame = np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))

    def close(self, complete: bool = True) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            finally:
                self._gen = None
                if complete:
                    os.replace(self.partial, self.path)
                else:
                    self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(complete=exc_type is None)


# ----------------------------------------------------------------------------- writing


def save_png16(path: str | Path, depth: np.ndarray, encoding: str | Encoding | float = PNG16_ENCODING) -> Path:
    """Depth as a 16-bit PNG in a 16-bit encoding of ``units`` (default ``png_mm``: millimetres for
    metres; a number is a custom scale), 0 = invalid (NaN, inf, <= 0).

    Depths beyond the encoding's range (65.535 m in millimetres) are stored as its largest value,
    not as 0: far is not "no depth".
    """
    enc = get_encoding(encoding)
    if enc.dtype != "uint16":
        raise InputError(f"save_png16 needs a 16-bit PNG encoding, got {enc.name} ({enc.description})")
    top = 65535.0 / enc.scale  # the largest depth the encoding holds
    d = np.asarray(depth, dtype=np.float64)
    mm = encode_depth(np.where(np.isfinite(d) & (d > top), top, d), enc)
    return save_png(path, mm)  # Pillow writes uint16 arrays as 16-bit greyscale PNG


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """An array (uint8 RGB, uint16 grey) as a PNG, written atomically."""
    path = Path(path)
    with atomic_write(path) as handle:
        Image.fromarray(array).save(handle, format="PNG")  # the temp name has no .png to infer it from
    return path


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """An array as .npy, written atomically (the name is kept as given: np.save adds no suffix to a file)."""
    path = Path(path)
    with atomic_write(path) as handle:
        np.save(handle, array)
    return path


def read_png16(path: str | Path, encoding: str | Encoding | float = PNG16_ENCODING) -> np.ndarray:
    """Inverse of ``save_png16``: float32 metres, 0 where nothing was stored."""
    return read_depth(path, encoding, str(path))


def side_by_side(rgb: np.ndarray, colored: np.ndarray) -> np.ndarray:
    """RGB | coloured depth as one uint8 image (the depth is resized to the RGB if needed)."""
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if colored.shape[:2] != rgb.shape[:2]:
        colored = np.asarray(Image.fromarray(colored).resize(rgb.shape[1::-1], Image.NEAREST))
    return np.concatenate([rgb, colored], axis=1)


def scaled_intrinsics(height: int, width: int, base: dict = NYU_KINECT) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of ``base`` scaled to an image of ``height`` x ``width`` (a resized photo
    of the same camera: the focal length and principal point scale with the pixel grid)."""
    sx, sy = width / base["width"], height / base["height"]
    return base["fx"] * sx, base["fy"] * sy, base["cx"] * sx, base["cy"] * sy


def depth_to_points(
    depth: np.ndarray, intrinsics: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a depth map (z along the optical axis) to camera coordinates.

    Pinhole model, OpenCV axes (x right, y down, z forward), pixel (u, v) = (column, row):
    X = (u - cx) * z / fx, Y = (v - cy) * z / fy, Z = z. Returns (N x 3 float32 points of the
    valid pixels, H x W bool mask of those pixels).
    """
    fx, fy, cx, cy = check_intrinsics(intrinsics)
    z = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(z) & (z > 0)
    v, u = np.nonzero(valid)
    zz = z[v, u]
    pts = np.stack([(u - cx) * zz / fx, (v - cy) * zz / fy, zz], axis=1).astype(np.float32)
    return pts, valid


def save_ply(
    path: str | Path, depth: np.ndarray, rgb: np.ndarray, intrinsics: Sequence[float], units: str = "metres"
) -> Path:
    """Coloured point cloud (binary little-endian PLY: float x, y, z and uchar red, green, blue). The
    header names ``units`` up to its first parenthesis (``Predictor.units`` explains itself there)."""
    points, valid = depth_to_points(depth, intrinsics)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if rgb.shape[:2] != valid.shape:
        raise InputError(f"RGB {rgb.shape[:2]} and depth {valid.shape} sizes differ")
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points.T
    colours = rgb[valid]
    vertex["red"], vertex["green"], vertex["blue"] = colours.T
    fx, fy, cx, cy = intrinsics
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment depthsmith point cloud, units {units.split(' (')[0]}, camera axes x right y down z forward\n"
        f"comment intrinsics fx {fx:.4f} fy {fy:.4f} cx {cx:.4f} cy {cy:.4f}\n"
        f"element vertex {len(vertex)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    path = Path(path)
    with atomic_write(path) as f:
        f.write(header.encode("ascii"))
        f.write(vertex.tobytes())
    return path


def render_color(depth: np.ndarray, cmap: str = "inferno_r", vrange: tuple[float, float] | None = None) -> np.ndarray:
    """Coloured depth (H x W x 3 uint8); ``vrange`` fixes the scale, default: this map's own range."""
    from .viz import colorize

    vmin, vmax = vrange if vrange is not None else (None, None)
    return colorize(depth, vmin=vmin, vmax=vmax, cmap=cmap)


# What each ``predict --save`` choice writes, as <stem><suffix>.
OUTPUT_SUFFIXES = {"png16": "_depth16.png", "npy": "_depth.npy", "color": "_color.png",
                   "side": "_side.png", "ply": ".ply"}


def write_outputs(
    out_dir: str | Path,
    stem: str,
    rgb: np.ndarray,
    depth: np.ndarray,
    outputs: Sequence[str],
    cmap: str = "inferno_r",
    intrinsics: Sequence[float] | None = None,
    units: str = "metres",
    vrange: tuple[float, float] | None = None,
) -> dict[str, Path]:
    """Write the chosen outputs of one image (see ``OUTPUT_SUFFIXES``); returns their paths.

    ``intrinsics`` (fx, fy, cx, cy) are for this image's resolution; default: NYU's Kinect
    scaled to it.
    """
    unknown = set(outputs) - set(OUTPUT_SUFFIXES)
    if unknown:
        raise InputError(f"unknown outputs {sorted(unknown)}; choose from {sorted(OUTPUT_SUFFIXES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"{stem}{OUTPUT_SUFFIXES[kind]}" for kind in outputs}
    if "png16" in paths:
        save_png16(paths["png16"], depth)
    if "npy" in paths:
        save_npy(paths["npy"], depth.astype(np.float32))
    if "color" in paths or "side" in paths:
        colored = render_color(depth, cmap, vrange)
        if "color" in paths:
            save_png(paths["color"], colored)
        if "side" in paths:
            save_png(paths["side"], side_by_side(rgb, colored))
    if "ply" in paths:
        k = intrinsics if intrinsics is not None else scaled_intrinsics(*depth.shape[:2])
        save_ply(paths["ply"], depth, rgb, k, units=units)
    return paths
