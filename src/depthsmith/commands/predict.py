"""``depthsmith predict``: depth files for many images, folders, globs and videos.

Every input that cannot be read or run is named in a summary at the end (exit code 1) while
the others are still written; bad arguments raise ``InputError`` before any work starts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, check_intrinsics, check_positive_int
from ..inference import DEFAULT_MAX_SIDE, Predictor, check_size
from ..io import OUTPUT_SUFFIXES, PNG16_SCALE, ReadError, expand_inputs, is_video, load_image, write_outputs
from ..paths import atomic_write_text, check_output_dir, remove_own_temp_files, unique_names
from ..viz import check_cmap
from .predict_video import describe_temporal, predict_video
from .signals import stop_on_signals

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


def default_model() -> str:
    """The default model of ``predict`` (``models.zoo.DEFAULT_MODEL``), its files fetched from the Hub on
    first use (then read from the cache); offline without a cache, an error naming the Hub id and how
    to pass a local folder."""
    from ..models.hub import resolve_folder
    from ..models.zoo import DEFAULT_MODEL

    print(f"no --model given: using {DEFAULT_MODEL} (Apache-2.0; downloaded from the Hugging Face Hub on first "
          "use, then read from its cache)")
    try:
        resolve_folder(DEFAULT_MODEL)
    except Exception as err:  # offline, no cache, Hub unreachable: the Hub client's many error types
        raise DefaultModelUnavailableError(
            f"predict without --model needs the default model {DEFAULT_MODEL}, which is neither in the Hugging Face "
            f"cache nor downloadable here ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). "
            f"Download it where there is internet (huggingface-cli download {DEFAULT_MODEL} --local-dir "
            "DA2-small) and pass the folder: --model DA2-small; or pass any local model folder, .pth or .onnx file "
            "with --model."
        ) from err
    return DEFAULT_MODEL


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
    skip_existing: bool = False,
    max_pixels: int | None = None,
    working_size: Any = None,
) -> int:
    """``depthsmith predict``: writes the chosen outputs per input into ``out_dir``.

    Inputs that cannot be read, or whose prediction is not finite, are listed by name at the end
    and the exit code is 1; the others are still processed. Ctrl-C / SIGTERM stop after whole
    files (exit 130 / 143); ``skip_existing`` then skips the inputs whose outputs are all there.
    ``max_pixels``: the largest image decoded (JPEGs above it are decoded reduced; see decode.open_image).
    """
    check_positive_int(batch_size, "--batch-size")
    intrinsics = check_intrinsics(intrinsics)
    check_cmap(cmap)
    out = check_output_dir(out_dir)
    if max_pixels is not None:  # the decoder's bomb guard (decode.check_pixels), for this process
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = check_positive_int(max_pixels, "--max-pixels")
    files, problems = expand_inputs(inputs)
    failures = [f"{name}: {reason}" for name, reason in problems]
    if model is None:
        model = default_model()
    stems = _stems(files)
    todo = [f for f in files if not (skip_existing and _finished(out, stems[f], outputs, is_video(f)))]
    if skip_existing:
        _check_same_model(out, model)
    total, skipped, count = len(files) + len(problems), len(files) - len(todo), [0]
    with stop_on_signals() as stopped:  # from here on: a stop between whole files, one line, exit 130 / 143
        try:
            predictor = Predictor(model, device=device, precision=precision, backend=backend, max_side=max_side,
                                  compile=compile, working_size=working_size, intrinsics=intrinsics)
            print(f"model {predictor.describe()}")
            if predictor.focal_normalised:
                print("note: focal-normalised model (Depth Anything 3 Metric): " + (
                      f"metres = focal x output / 300 with --intrinsics' fx {intrinsics[0]:g}, fy {intrinsics[1]:g} "
                      "scaled to the network's input size" if predictor.is_metric else
                      "without --intrinsics FX FY CX CY its depth files hold unitless values "
                      f"(16-bit PNG: value x {round(PNG16_SCALE)}), not metres"))
            elif not predictor.is_metric:
                print("note: relative model: depth files hold unitless values "
                      f"(16-bit PNG: value x {round(PNG16_SCALE)}), not metres")
            if "ply" in outputs and intrinsics is None:
                print("point clouds use the model's own focal length estimate, principal point at the image centre "
                      "(pass --intrinsics FX FY CX CY to override)" if predictor.estimates_focal else
                      "point clouds use NYU Kinect intrinsics scaled to each image (pass --intrinsics FX FY CX CY)")
            info = _write_info(out, predictor, max_side, model)  # first: every output beside it has its units
            if skipped:
                print(f"skipping {skipped} input(s) whose outputs are already in {out} (--skip-existing)")
            images = [f for f in todo if not is_video(f)]
            _predict_images(predictor, images, stems, out, outputs, cmap, intrinsics, batch_size, failures, count)
            videos = [f for f in todo if is_video(f)]
            if videos:
                print(describe_temporal(predictor, temporal))
            for f in videos:
                try:
                    predict_video(predictor, f, out, stems[f], outputs, cmap, batch_size, temporal, intrinsics,
                                  ply_every)
                    count[0] += 1
                except (InputError, OSError, RuntimeError) as err:  # a tiny or corrupt video: named, the rest go on
                    failures.append(str(err) if str(f) in str(err) else f"{f}: {err}")
            if (predictor.backend, predictor.precision) != (info["backend"], info["precision"]):
                _write_info(out, predictor, max_side, model)  # backend "auto" chose on the first batch
        except BaseException as err:
            if not (isinstance(err, KeyboardInterrupt) or stopped.fired):
                raise
            remove_own_temp_files(out)
            print(f"interrupted after {count[0] + skipped} of {total} inputs; outputs so far are complete "
                  "(rerun with --skip-existing to finish the rest)", file=sys.stderr)
            return 128 + stopped.signum
    print(f"{count[0]} of {total} inputs written to {out}" + (f" ({skipped} already there)" if skipped else ""))
    if failures:
        print(f"{len(failures)} input(s) failed:")
        for message in failures:
            print(f"  {message}")
        return 1
    return 0


def _write_info(out: Path, predictor: Predictor, max_side: int, model: Any) -> dict:
    info = {"model": predictor.name, "source": str(model), "units": predictor.units,
            "png16_scale": round(PNG16_SCALE), "backend": predictor.backend, "precision": predictor.precision,
            "max_side": max_side, "working_size": predictor.size_rule}
    if predictor.metric_camera is not None:  # DA3-Metric: which focal made its metres (inference.Predictor)
        info["metres_from_intrinsics"] = list(predictor.metric_camera)
    atomic_write_text(out / "depth_info.json", json.dumps(info, indent=2) + "\n")
    return info


def _finished(out: Path, stem: str, outputs: Sequence[str], video: bool) -> bool:
    """Whether every output of one input is already in ``out`` (atomic writes: present = complete)."""
    if video:
        names = [f"{stem}_{'depth' if kind == 'color' else kind}.mp4" for kind in outputs if kind in ("color", "side")]
        return bool(names) and all((out / n).is_file() for n in names)
    return all((out / f"{stem}{OUTPUT_SUFFIXES[kind]}").is_file() for kind in outputs)


def _check_same_model(out: Path, model: Any) -> None:
    """--skip-existing must not mix two models' outputs in one folder."""
    info_path = out / "depth_info.json"
    if not info_path.is_file():
        return
    try:
        before = json.loads(info_path.read_text()).get("source")
    except (ValueError, OSError, AttributeError) as err:
        raise InputError(f"{info_path}: unreadable ({err}); remove it or choose another --out") from err
    if before is not None and before != str(model):
        raise InputError(f"--skip-existing: the outputs in {out} came from --model {before}, not {model}; "
                         "use another --out, or leave out --skip-existing to overwrite them.")


def _predict_images(predictor: Predictor, images: Sequence[Path], stems: dict[Path, str], out: Path,
                    outputs: Sequence[str], cmap: str, intrinsics: Any, batch_size: int,
                    failures: list[str], count: list[int]) -> None:
    """Write every image's outputs; an image that cannot be read, run or written, or whose
    prediction is not finite, is added to ``failures`` by name and the others go on. ``count[0]``
    counts the images written (kept current, for an interrupt's message)."""
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

    stream = predictor.predict_many(readable(), batch_size, on_error=failed)
    for f, rgb, depth in _progress(stream, len(images), "img", "images"):
        bad = int(depth.size - np.count_nonzero(np.isfinite(depth)))
        if bad:  # NaN weights or an overflow: all-zero PNGs and "written" would hide it
            failures.append(f"{f}: the prediction holds {bad} NaN/inf value(s) of {depth.size} "
                            f"(model {predictor.name}); nothing written for it")
            continue
        try:
            k = predictor.intrinsics(rgb) if intrinsics is None and "ply" in outputs else intrinsics
            write_outputs(out, stems[f], rgb, depth, outputs, cmap, k, predictor.units)
            count[0] += 1
        except (OSError, ValueError) as err:
            failures.append(f"{f}: cannot write outputs ({err})")

