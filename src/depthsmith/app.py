"""Web page (gradio): upload an image, see its coloured depth, download the 16-bit PNG and the
point cloud.

Limits are enforced twice: gradio refuses uploads above ``max_file_mb`` before they reach
the disk (``launch(max_file_size=...)``), and the handler checks the file size and the pixel
count from the image header before decoding anything (a small PNG can decode to gigabytes).
The model is prepared once (fast path) and requests run one at a time: on a CPU parallel
requests would only split the same cores.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .errors import InputError
from .inference import Predictor
from .io import PNG16_SCALE, load_image, render_color, save_png16, save_ply, scaled_intrinsics, to_float_rgb

__all__ = ["build_app", "launch", "check_limits", "LimitError", "make_handler", "upload_callback"]

MAX_OUTPUT_AGE_S = 3600  # downloads older than this are deleted from the app's temp folder


class LimitError(InputError):
    """An upload above the app's file-size or pixel limit."""


def check_limits(path: str | Path, max_pixels: int, max_file_mb: float) -> tuple[int, int]:
    """Raise LimitError with a readable message when the file or its pixel count is too big.

    Reads only the image header. Returns (width, height).
    """
    size_mb = Path(path).stat().st_size / 1e6
    if size_mb > max_file_mb:
        raise LimitError(f"The file is {size_mb:.1f} MB; this page accepts images up to {max_file_mb:g} MB.")
    try:
        with Image.open(path) as image:  # lazy: header only, no pixel data decoded
            width, height = image.size
    except Image.DecompressionBombError as err:
        raise LimitError(f"The image has too many pixels to decode safely ({err}).") from err
    except Exception as err:
        raise LimitError(f"This file is not an image that can be read ({type(err).__name__}).") from err
    if width * height > max_pixels:
        raise LimitError(
            f"The image is {width} x {height} = {width * height / 1e6:.3g} megapixels; this page accepts "
            f"at most {max_pixels / 1e6:.3g} megapixels. Please upload a smaller image."
        )
    return width, height


def _prune(folder: Path, max_age_s: float = MAX_OUTPUT_AGE_S) -> None:
    cutoff = time.time() - max_age_s
    for f in folder.glob("*"):
        if f.is_file() and f.stat().st_mtime < cutoff:
            f.unlink(missing_ok=True)


def make_handler(
    predictor: Predictor, max_pixels: int, max_file_mb: float, cmap: str = "inferno_r", out_dir: Path | None = None
) -> Callable[[str], tuple[np.ndarray, np.ndarray, str, str, str]]:
    """The page's function: image path -> (input RGB, coloured depth, 16-bit PNG path, PLY path,
    Markdown note). Raises LimitError for oversized uploads; gradio-free so tests can call it."""
    out_dir = out_dir or Path(tempfile.mkdtemp(prefix="depthsmith-app-"))

    def handle(path: str) -> tuple[np.ndarray, np.ndarray, str, str, str]:
        try:
            return run(path)
        except InputError as err:  # the page shows the message: the user's file name, not our temp folder
            message = _public(str(err), path)
            if not isinstance(err, LimitError) and not message.startswith(Path(path).name):
                message = f"{Path(path).name}: {message}"
            raise type(err)(message) from err

    def run(path: str) -> tuple[np.ndarray, np.ndarray, str, str, str]:
        check_limits(path, max_pixels, max_file_mb)
        start = time.perf_counter()
        rgb = load_image(path)
        depth = predictor.predict(rgb)
        seconds = time.perf_counter() - start
        colored = render_color(depth, cmap)
        _prune(out_dir)
        stem = f"{Path(path).stem[:40]}-{uuid.uuid4().hex[:8]}"
        png = save_png16(out_dir / f"{stem}_depth16.png", depth)
        own = predictor.intrinsics(rgb)  # Depth Pro's focal estimate, as predict --save ply uses; else None
        camera = own or scaled_intrinsics(*depth.shape)
        ply = save_ply(out_dir / f"{stem}.ply", depth, rgb, camera, units=predictor.units)
        h, w = depth.shape
        work = predictor.working_size(h, w)
        unit = "m" if predictor.is_metric else "(relative, unitless: not metres)"
        note = (
            f"**{w} x {h}** image, depth {float(depth.min()):.2f} to {float(depth.max()):.2f} {unit} "
            f"(near = yellow, far = purple). Network input {work[1]} x {work[0]}, {seconds:.2f} s on "
            f"{predictor.device} ({predictor.backend}, {predictor.precision}). The 16-bit PNG stores depth x "
            f"{round(PNG16_SCALE)} (millimetres); the point cloud uses "
            + (f"the model's own focal length estimate ({camera[0]:.1f} px)." if own else
               "NYU Kinect intrinsics scaled to the image.")
        )
        rgb8 = (to_float_rgb(rgb) * 255.0 + 0.5).astype(np.uint8)
        return rgb8, colored, str(png), str(ply), note

    return handle


def _public(message: str, path: str | Path) -> str:
    """``message`` with the upload's server-side path replaced by its file name."""
    path = Path(path)
    return message.replace(str(path), path.name).replace(str(path.parent) + "/", "")


def upload_callback(handle: Callable[[str], tuple]) -> Callable[[str | None], tuple]:
    """The page's upload event: refusals and failures become a gradio error message (no path,
    no traceback) and the server goes on serving the next request."""
    import gradio as gr

    def on_upload(path: str | None):
        if not path:
            return None, None, None, None, ""
        try:
            return handle(path)
        except LimitError as err:
            raise gr.Error(str(err), title="Upload refused") from err
        except InputError as err:
            raise gr.Error(str(err), title="Cannot read this image") from err
        except Exception as err:  # not the user's fault; say so without internals
            raise gr.Error(f"{Path(path).name}: the depth could not be computed ({type(err).__name__}).",
                           title="Server error") from err

    return on_upload


def build_app(
    model: Any,
    max_pixels: int = 4096 * 4096,
    max_file_mb: float = 20.0,
    cmap: str = "inferno_r",
    predictor: Predictor | None = None,
) -> Any:
    """The gradio Blocks of the page (not launched). ``model``: anything ``Predictor`` accepts."""
    import gradio as gr

    predictor = predictor or Predictor(model)
    on_upload = upload_callback(make_handler(predictor, max_pixels, max_file_mb, cmap))

    with gr.Blocks(title="depthsmith", delete_cache=(600, MAX_OUTPUT_AGE_S)) as demo:
        gr.Markdown(
            f"# depthsmith: monocular depth\nModel **{predictor.name}**, output in {predictor.units}. "
            f"Upload an image (up to {max_file_mb:g} MB and {max_pixels / 1e6:.3g} megapixels)."
        )
        with gr.Row():
            upload = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="upload")
            info = gr.Markdown(elem_id="depth-info")
        with gr.Row():
            shown = gr.Image(label="Input", format="png", interactive=False, elem_id="input-image")
            depth = gr.Image(label=f"Depth ({cmap})", format="png", interactive=False, elem_id="depth-image")
        with gr.Row():
            png16 = gr.File(label="Depth, 16-bit PNG (millimetres)", elem_id="png16-file")
            ply = gr.File(label="Point cloud (.ply)", elem_id="ply-file")
        upload.upload(on_upload, inputs=upload, outputs=[shown, depth, png16, ply, info])
    demo.queue(default_concurrency_limit=1)
    demo.depthsmith_predictor = predictor  # reused by tests and by launch
    return demo


def launch(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_pixels: int = 4096 * 4096,
    max_file_mb: float = 20.0,
    prevent_thread_lock: bool = False,
    backend: str = "auto",
) -> Any:
    """Serve the page. Blocks until stopped unless ``prevent_thread_lock`` (tests); returns the Blocks.
    ``backend``: any of ``depthsmith.runtime.backend_choices()`` (auto measures on the first image)."""
    demo = build_app(model, max_pixels=max_pixels, max_file_mb=max_file_mb, predictor=Predictor(model, backend=backend))
    demo.launch(server_name=host, server_port=port, max_file_size=int(max_file_mb * 1e6),
                prevent_thread_lock=prevent_thread_lock, show_error=True, quiet=prevent_thread_lock)
    return demo
