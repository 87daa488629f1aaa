"""``depthsmith predict``: depth files for many images, folders, globs and videos.

Every input that cannot be read or run is named in a summary at the end (exit code 1) while
the others are still written; bad arguments raise ``InputError`` before any work starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, check_intrinsics, check_positive_int
from ..inference import DEFAULT_MAX_SIDE, Predictor, check_size
from ..io import PNG16_SCALE, ReadError, expand_inputs, is_video, load_image, write_outputs
from ..paths import unique_names
from .predict_video import describe_temporal, predict_video

__all__ = ["predict_cli", "predict_video"]

def _stems(files: Sequence[Path]) -> dict[Path, str]:
    """Output name per input: its stem, prefixed by its folder when two inputs share a stem."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.stem] = counts.get(f.stem, 0) + 1
    stems = [f.stem if counts[f.stem] == 1 else f"{f.parent.name}_{f.stem}" for f in files]
    return dict(zip(files, unique_names(stems, sep="_")))  # still clashing (same folder name too): numbered


def _progress(iterable: Iterable, total: int | None, unit: str, desc: str) -> Iterable:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, unit=unit, desc=desc, dynamic_ncols=True)


class DefaultModelUnavailableError(InputError):
    """``predict`` without ``--model`` could not get the default model (offline and not cached)."""


def default_model() -> Any:
    """The default model of ``predict`` (``models.zoo.DEFAULT_MODEL``), from the Hub cache or downloaded
    on first use; offline without a cache, an error naming the Hub id and how to pass a local folder."""
    from ..models import load_model
    from ..models.zoo import DEFAULT_MODEL

    print(f"no --model given: using {DEFAULT_MODEL} (Apache-2.0; downloaded from the Hugging Face Hub on first "
          "use, then read from its cache)")
    try:
        return load_model(DEFAULT_MODEL)
    except Exception as err:  # offline, no cache, Hub unreachable: the Hub client's many error types
        raise DefaultModelUnavailableError(
            f"predict without --model needs the default model {DEFAULT_MODEL}, which is neither in the Hugging Face "
            f"cache nor downloadable here ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). "
            f"Download it where there is internet (huggingface-cli download {DEFAULT_MODEL} --local-dir "
            "DA2-small) and pass the folder: --model DA2-small; or pass any local model folder, .pth or .onnx file "
            "with --model."
        ) from err


def predict_cli(
    inputs: Sequence[str],
    model: str | None,
    out_dir: str | Path,
    outputs: Sequence[str] = ("png16", "color"),
    cmap: str = "inferno_r",
    backend: str = "auto",
    batch_size: int = 4,
    device: str = "auto",
    intrinsics: Sequence[float] | None = None,
    precision: str = "auto",
    max_side: int = DEFAULT_MAX_SIDE,
    compile: bool = False,
    temporal: str = "auto",
    ply_every: int = 1,
    working_size: Any = None,
) -> int:
    """``depthsmith predict``: writes the chosen outputs per input into ``out_dir``.

    Inputs that cannot be read are listed by name at the end and the exit code is 1;
    the others are still processed.
    """
    check_positive_int(batch_size, "--batch-size")
    intrinsics = check_intrinsics(intrinsics)
    out = _output_folder(out_dir)
    files, problems = expand_inputs(inputs)
    failures = [f"{name}: {reason}" for name, reason in problems]
    if model is None:
        model = default_model()
    if backend == "onnx" and not str(model).endswith(".onnx"):
        model = _onnx_file_for(model, out)
    predictor = Predictor(model, device=device, precision=precision, backend=backend, max_side=max_side,
                          compile=compile, working_size=working_size)
    print(f"model {predictor.describe()}")
    if not predictor.is_metric:
        print(f"note: relative model: depth files hold unitless values (16-bit PNG: value x {round(PNG16_SCALE)}), "
              "not metres")
    if "ply" in outputs and intrinsics is None:
        print("point clouds use NYU Kinect intrinsics scaled to each image (pass --intrinsics FX FY CX CY)")
    stems = _stems(files)
    images = [f for f in files if not is_video(f)]
    done = _predict_images(predictor, images, stems, out, outputs, cmap, intrinsics, batch_size, failures)
    videos = [f for f in files if is_video(f)]
    if videos:
        print(describe_temporal(predictor, temporal))
    for f in videos:
        try:
            predict_video(predictor, f, out, stems[f], outputs, cmap, batch_size, temporal, intrinsics, ply_every)
            done += 1
        except (InputError, OSError, RuntimeError) as err:  # a tiny or corrupt video: named, the rest go on
            failures.append(str(err) if str(f) in str(err) else f"{f}: {err}")
    info = {"model": predictor.name, "units": predictor.units, "png16_scale": round(PNG16_SCALE),
            "backend": predictor.backend, "precision": predictor.precision, "max_side": max_side,
            "working_size": predictor.size_rule}
    (out / "depth_info.json").write_text(json.dumps(info, indent=2))
    print(f"{done} of {len(files) + len(problems)} inputs written to {out}")
    if failures:
        print(f"{len(failures)} input(s) failed:")
        for message in failures:
            print(f"  {message}")
        return 1
    return 0


def _output_folder(out_dir: str | Path) -> Path:
    """``--out``, created; an existing file or an uncreatable path is refused before any work."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is an existing file; give a folder (it is created if missing).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file further up the path, no permission
        raise InputError(f"--out {out}: cannot create the folder ({err.strerror or err}).") from err
    return out


def _predict_images(predictor: Predictor, images: Sequence[Path], stems: dict[Path, str], out: Path,
                    outputs: Sequence[str], cmap: str, intrinsics: Any, batch_size: int,
                    failures: list[str]) -> int:
    """Write every image's outputs; an image that cannot be read, run or written is added to
    ``failures`` by name and the others go on. Returns how many were written."""
    def readable() -> Iterator[tuple[Path, np.ndarray]]:
        for f in images:
            try:
                rgb = load_image(f)
                check_size(*rgb.shape[:2])
                yield f, rgb
            except ReadError as err:
                failures.append(str(err))
            except InputError as err:
                failures.append(f"{f}: {err}")

    def failed(f: Path, err: Exception) -> None:  # one image that cannot run: named, the rest go on
        failures.append(f"{f}: cannot predict ({type(err).__name__}: {str(err).splitlines()[0][:300]})")

    done = 0
    stream = predictor.predict_many(readable(), batch_size, on_error=failed)
    for f, rgb, depth in _progress(stream, len(images), "img", "images"):
        try:
            write_outputs(out, stems[f], rgb, depth, outputs, cmap, intrinsics, predictor.units)
            done += 1
        except (OSError, ValueError) as err:
            failures.append(f"{f}: cannot write outputs ({err})")
    return done


def _onnx_file_for(model: Any, out: Path) -> Path:
    """The ONNX file for ``predict --backend onnx``: <model dir>/model.onnx if it exists, else an
    export written to <out>/model.onnx (checked against PyTorch)."""
    folder_file = Path(model) / "model.onnx" if isinstance(model, (str, Path)) else None
    if folder_file is not None and folder_file.is_file():
        return folder_file
    from ..runtime.export_onnx import export_onnx
    from ..models import load_model

    print(f"exporting {getattr(model, 'name', model)} to {out / 'model.onnx'} for ONNX Runtime ...")
    result = export_onnx(load_model(model) if isinstance(model, (str, Path)) else model, out / "model.onnx")
    print(result.summary())
    return result.path
