"""Image and video I/O for inference, and the files ``predict`` writes.

Reading: any image Pillow decodes (EXIF orientation applied; grey, RGBA, palette and
16-bit inputs turned into RGB), numpy arrays, and videos through the ffmpeg binary that
ships inside the ``imageio-ffmpeg`` wheel (no system ffmpeg needed).

Writing: 16-bit PNG depth, ``.npy``, coloured depth, side-by-side RGB | depth, coloured
point clouds (PLY) and depth videos (mp4).
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import InputError, check_intrinsics
from .paths import glob_files

__all__ = [
    "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ReadError", "load_image", "to_float_rgb", "expand_inputs",
    "is_video", "read_video", "VideoWriter", "save_png16", "read_png16", "side_by_side",
    "NYU_KINECT", "scaled_intrinsics", "depth_to_points", "save_ply", "render_color", "write_outputs",
    "OUTPUT_SUFFIXES", "check_pixels",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

# NYU Depth V2's Kinect RGB camera (the toolbox's camera_params.m), for 640 x 480 images.
NYU_KINECT = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362, "width": 640, "height": 480}

# 16-bit PNG depth stores value * 1000: millimetres for metric models (the KITTI / NYU
# toolbox convention users already read), 0 = no depth.
PNG16_SCALE = 1000.0


class ReadError(InputError):
    """An input that cannot be decoded; the message names the file and the reason."""


# ----------------------------------------------------------------------------- reading


def to_float_rgb(array: np.ndarray, name: str = "array") -> np.ndarray:
    """H x W x 3 float32 in [0, 1] from uint8, uint16 or float arrays (grey and RGBA accepted).

    uint16 is divided by 65535 (the full 16-bit range), floats are assumed in [0, 1] and clipped.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ReadError(f"{name}: expected an H x W (x 1/3/4) image, got shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]  # alpha dropped: the colours under it are what the camera saw
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    raise ReadError(f"{name}: unsupported image dtype {a.dtype} (use uint8, uint16 or float in [0, 1])")


def _pil_to_float(image: Image.Image, name: str) -> np.ndarray:
    image = ImageOps.exif_transpose(image)  # phone photos: pixels stored sideways + a rotation tag
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return to_float_rgb(np.asarray(image).astype(np.uint16), name)
    if image.mode == "I":  # 32-bit int container, in practice 16-bit grey PNGs
        return to_float_rgb(np.clip(np.asarray(image), 0, 65535).astype(np.uint16), name)
    if image.mode == "F":  # float TIFFs: taken as [0, 1] like float arrays
        return to_float_rgb(np.asarray(image, dtype=np.float32), name)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "RGB")
    return to_float_rgb(np.asarray(image), name)


def check_pixels(size: tuple[int, int], name: object) -> None:
    """Refuse an image whose header says it has more than ``Image.MAX_IMAGE_PIXELS`` pixels,
    before anything is decoded: Pillow itself only warns below twice that limit, and a file of a
    few kilobytes can decode to gigabytes (a decompression bomb)."""
    width, height = size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ReadError(
            f"{name}: image is {width} x {height} = {width * height / 1e6:.1f} megapixels, above the "
            f"{limit / 1e6:.1f} megapixel limit (PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression "
            "bombs); downscale it first, or raise the limit if you trust the file."
        )


def load_image(source: str | Path | Image.Image | np.ndarray) -> np.ndarray:
    """Any image as H x W x 3 float32 RGB in [0, 1]: a path, a PIL image or an array.

    Raises ``ReadError`` naming the file when it cannot be decoded.
    """
    if isinstance(source, np.ndarray):
        return to_float_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_float(source, "PIL image")
    path = Path(source)
    if path.suffix.lower() == ".npy":
        try:
            return to_float_rgb(np.load(path, allow_pickle=False), str(path))
        except (OSError, ValueError) as err:
            raise ReadError(f"{path}: cannot read array ({err})") from err
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: check_pixels refuses these itself
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # lazy: only the header is read here
        with image:
            check_pixels(image.size, path)
            image.load()  # decode now so a truncated file fails here, naming it
            return _pil_to_float(image, str(path))
    except FileNotFoundError as err:
        raise ReadError(f"{path}: file not found") from err
    except ReadError:
        raise
    except Exception as err:  # Pillow raises many types for corrupt data
        raise ReadError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err


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
    """H.264 mp4 writer (yuv420p, playable everywhere); odd frame sizes are padded to even."""

    def __init__(self, path: str | Path, fps: float, quality: float = 7.0) -> None:
        self.path, self.fps, self.quality = Path(path), fps, quality
        self._gen = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        h, w = frame.shape[:2]
        if self._gen is None:
            self._size = (w + w % 2, h + h % 2)  # yuv420p needs even sides
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), self._size, fps=self.fps, quality=self.quality,
                codec="libx264", macro_block_size=1,
            )
            self._gen.send(None)
        pw, ph = self._size
        if (w, h) != (pw, ph):
            frame = np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- writing


def save_png16(path: str | Path, depth: np.ndarray, scale: float = PNG16_SCALE) -> Path:
    """Depth as a 16-bit PNG of round(depth * scale): millimetres for metres, 0 = invalid.

    Values above 65.535 m (at scale 1000) are clipped to 65535.
    """
    d = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.clip(np.round(d * scale), 0, 65535).astype(np.uint16)
    path = Path(path)
    Image.fromarray(mm).save(path)  # Pillow writes uint16 arrays as 16-bit greyscale PNG
    return path


def read_png16(path: str | Path, scale: float = PNG16_SCALE) -> np.ndarray:
    """Inverse of ``save_png16``: float32 depth, 0 where nothing was stored."""
    with Image.open(path) as image:
        return np.asarray(image).astype(np.float32) / scale


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
    """Coloured point cloud (binary little-endian PLY: float x, y, z and uchar red, green, blue)."""
    points, valid = depth_to_points(depth, intrinsics)
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if rgb.shape[:2] != valid.shape:
        raise ValueError(f"RGB {rgb.shape[:2]} and depth {valid.shape} sizes differ")
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points.T
    colours = rgb[valid]
    vertex["red"], vertex["green"], vertex["blue"] = colours.T
    fx, fy, cx, cy = intrinsics
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment depthsmith point cloud, units {units}, camera axes x right y down z forward\n"
        f"comment intrinsics fx {fx:.4f} fy {fy:.4f} cx {cx:.4f} cy {cy:.4f}\n"
        f"element vertex {len(vertex)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    path = Path(path)
    with open(path, "wb") as f:
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
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {sorted(OUTPUT_SUFFIXES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"{stem}{OUTPUT_SUFFIXES[kind]}" for kind in outputs}
    if "png16" in paths:
        save_png16(paths["png16"], depth)
    if "npy" in paths:
        np.save(paths["npy"], depth.astype(np.float32))
    if "color" in paths or "side" in paths:
        colored = render_color(depth, cmap, vrange)
        if "color" in paths:
            Image.fromarray(colored).save(paths["color"])
        if "side" in paths:
            Image.fromarray(side_by_side(rgb, colored)).save(paths["side"])
    if "ply" in paths:
        k = intrinsics if intrinsics is not None else scaled_intrinsics(*depth.shape[:2])
        save_ply(paths["ply"], depth, rgb, k, units=units.split(" (")[0])
    return paths
